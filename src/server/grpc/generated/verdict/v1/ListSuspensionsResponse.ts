// Original file: proto/verdict/v1/admin.proto

import type { Suspension as _verdict_v1_Suspension, Suspension__Output as _verdict_v1_Suspension__Output } from '../../verdict/v1/Suspension.js';

export interface ListSuspensionsResponse {
  'suspensions'?: (_verdict_v1_Suspension)[];
  'nextPageToken'?: (string);
}

export interface ListSuspensionsResponse__Output {
  'suspensions': (_verdict_v1_Suspension__Output)[];
  'nextPageToken': (string);
}
