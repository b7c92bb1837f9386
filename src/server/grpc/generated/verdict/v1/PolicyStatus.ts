// Original file: proto/verdict/v1/admin.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp.js';

export interface PolicyStatus {
  'version'?: (string);
  'loadedAt'?: (_google_protobuf_Timestamp | null);
  'ruleCount'?: (number);
  'lastReloadError'?: (string);
  'lastReloadAttemptAt'?: (_google_protobuf_Timestamp | null);
  'lastReloadLongestBlockMs'?: (number | string);
  'shadowVersion'?: (string);
  'shadowRuleCount'?: (number);
  'shadowLastReloadError'?: (string);
}

export interface PolicyStatus__Output {
  'version': (string);
  'loadedAt': (_google_protobuf_Timestamp__Output | null);
  'ruleCount': (number);
  'lastReloadError': (string);
  'lastReloadAttemptAt': (_google_protobuf_Timestamp__Output | null);
  'lastReloadLongestBlockMs': (number);
  'shadowVersion': (string);
  'shadowRuleCount': (number);
  'shadowLastReloadError': (string);
}
