// Original file: proto/envoy/service/auth/v3/external_auth.proto

import type { HeaderValueOption as _envoy_config_core_v3_HeaderValueOption, HeaderValueOption__Output as _envoy_config_core_v3_HeaderValueOption__Output } from '../../../../envoy/config/core/v3/HeaderValueOption.js';
import type { Struct as _google_protobuf_Struct, Struct__Output as _google_protobuf_Struct__Output } from '../../../../google/protobuf/Struct.js';

export interface OkHttpResponse {
  'headers'?: (_envoy_config_core_v3_HeaderValueOption)[];
  'dynamicMetadata'?: (_google_protobuf_Struct | null);
  'headersToRemove'?: (string)[];
  'responseHeadersToAdd'?: (_envoy_config_core_v3_HeaderValueOption)[];
}

export interface OkHttpResponse__Output {
  'headers': (_envoy_config_core_v3_HeaderValueOption__Output)[];
  'dynamicMetadata': (_google_protobuf_Struct__Output | null);
  'headersToRemove': (string)[];
  'responseHeadersToAdd': (_envoy_config_core_v3_HeaderValueOption__Output)[];
}
