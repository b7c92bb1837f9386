// Original file: proto/verdict/v1/admin.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp.js';

export interface Suspension {
  'principalId'?: (string);
  'since'?: (_google_protobuf_Timestamp | null);
  'until'?: (_google_protobuf_Timestamp | null);
  'alertId'?: (string);
  'alertType'?: (string);
  'note'?: (string);
}

export interface Suspension__Output {
  'principalId': (string);
  'since': (_google_protobuf_Timestamp__Output | null);
  'until': (_google_protobuf_Timestamp__Output | null);
  'alertId': (string);
  'alertType': (string);
  'note': (string);
}
