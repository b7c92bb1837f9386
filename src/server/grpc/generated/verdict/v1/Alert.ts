// Original file: proto/verdict/v1/admin.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp.js';

export interface Alert {
  'id'?: (string);
  'type'?: (string);
  'subjectKind'?: (string);
  'subjectId'?: (string);
  'windowStart'?: (_google_protobuf_Timestamp | null);
  'windowEnd'?: (_google_protobuf_Timestamp | null);
  'observed'?: (number | string);
  'threshold'?: (number | string);
  'baseline'?: (number | string);
  'resourceType'?: (string);
  'resourceId'?: (string);
  'decisionIds'?: (string)[];
  'raisedAt'?: (_google_protobuf_Timestamp | null);
  'summary'?: (string);
  '_baseline'?: "baseline";
}

export interface Alert__Output {
  'id': (string);
  'type': (string);
  'subjectKind': (string);
  'subjectId': (string);
  'windowStart': (_google_protobuf_Timestamp__Output | null);
  'windowEnd': (_google_protobuf_Timestamp__Output | null);
  'observed': (number);
  'threshold': (number);
  'baseline'?: (number);
  'resourceType': (string);
  'resourceId': (string);
  'decisionIds': (string)[];
  'raisedAt': (_google_protobuf_Timestamp__Output | null);
  'summary': (string);
  '_baseline'?: "baseline";
}
