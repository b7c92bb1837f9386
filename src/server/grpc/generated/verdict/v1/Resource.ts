// Original file: proto/verdict/v1/authorization.proto

import type { Struct as _google_protobuf_Struct, Struct__Output as _google_protobuf_Struct__Output } from '../../google/protobuf/Struct.js';

export interface Resource {
  'type'?: (string);
  'id'?: (string);
  'attributes'?: (_google_protobuf_Struct | null);
}

export interface Resource__Output {
  'type': (string);
  'id': (string);
  'attributes': (_google_protobuf_Struct__Output | null);
}
