// Original file: proto/verdict/v1/admin.proto

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration.js';

export interface SuspendPrincipalRequest {
  'principalId'?: (string);
  'duration'?: (_google_protobuf_Duration | null);
  'note'?: (string);
}

export interface SuspendPrincipalRequest__Output {
  'principalId': (string);
  'duration': (_google_protobuf_Duration__Output | null);
  'note': (string);
}
