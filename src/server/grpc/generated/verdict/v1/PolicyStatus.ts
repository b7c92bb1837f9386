// Original file: proto/verdict/v1/admin.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp.js';
import type { LoadFactor as _verdict_v1_LoadFactor, LoadFactor__Output as _verdict_v1_LoadFactor__Output } from '../../verdict/v1/LoadFactor.js';

export interface PolicyStatus {
  'version'?: (string);
  'loadedAt'?: (_google_protobuf_Timestamp | null);
  'ruleCount'?: (number);
  'lastReloadError'?: (string);
  'lastReloadAttemptAt'?: (_google_protobuf_Timestamp | null);
  'lastReloadLongestBlockMs'?: (number | string);
  'loadFactors'?: (_verdict_v1_LoadFactor)[];
  'limitBackend'?: (string);
  'limitBackendHealthy'?: (boolean);
  'shadowVersion'?: (string);
  'shadowRuleCount'?: (number);
  'shadowLastReloadError'?: (string);
  'replicaId'?: (string);
}

export interface PolicyStatus__Output {
  'version': (string);
  'loadedAt': (_google_protobuf_Timestamp__Output | null);
  'ruleCount': (number);
  'lastReloadError': (string);
  'lastReloadAttemptAt': (_google_protobuf_Timestamp__Output | null);
  'lastReloadLongestBlockMs': (number);
  'loadFactors': (_verdict_v1_LoadFactor__Output)[];
  'limitBackend': (string);
  'limitBackendHealthy': (boolean);
  'shadowVersion': (string);
  'shadowRuleCount': (number);
  'shadowLastReloadError': (string);
  'replicaId': (string);
}
