// Original file: proto/verdict/v1/admin.proto

import type { Effect as _verdict_v1_Effect, Effect__Output as _verdict_v1_Effect__Output } from '../../verdict/v1/Effect.js';
import type { Reason as _verdict_v1_Reason, Reason__Output as _verdict_v1_Reason__Output } from '../../verdict/v1/Reason.js';
import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp.js';

export interface ListDecisionsRequest {
  'principalId'?: (string);
  'resourceType'?: (string);
  'resourceId'?: (string);
  'action'?: (string);
  'effect'?: (_verdict_v1_Effect);
  'reason'?: (_verdict_v1_Reason);
  'since'?: (_google_protobuf_Timestamp | null);
  'until'?: (_google_protobuf_Timestamp | null);
  'limit'?: (number);
  'pageToken'?: (string);
}

export interface ListDecisionsRequest__Output {
  'principalId': (string);
  'resourceType': (string);
  'resourceId': (string);
  'action': (string);
  'effect': (_verdict_v1_Effect__Output);
  'reason': (_verdict_v1_Reason__Output);
  'since': (_google_protobuf_Timestamp__Output | null);
  'until': (_google_protobuf_Timestamp__Output | null);
  'limit': (number);
  'pageToken': (string);
}
