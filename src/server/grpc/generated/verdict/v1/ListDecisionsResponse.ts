// Original file: proto/verdict/v1/admin.proto

import type { DecisionRecord as _verdict_v1_DecisionRecord, DecisionRecord__Output as _verdict_v1_DecisionRecord__Output } from '../../verdict/v1/DecisionRecord.js';

export interface ListDecisionsResponse {
  'decisions'?: (_verdict_v1_DecisionRecord)[];
  'nextPageToken'?: (string);
}

export interface ListDecisionsResponse__Output {
  'decisions': (_verdict_v1_DecisionRecord__Output)[];
  'nextPageToken': (string);
}
