// Original file: proto/verdict/v1/authorization.proto

import type { Principal as _verdict_v1_Principal, Principal__Output as _verdict_v1_Principal__Output } from '../../verdict/v1/Principal.js';
import type { Resource as _verdict_v1_Resource, Resource__Output as _verdict_v1_Resource__Output } from '../../verdict/v1/Resource.js';
import type { Context as _verdict_v1_Context, Context__Output as _verdict_v1_Context__Output } from '../../verdict/v1/Context.js';

export interface CheckRequest {
  'principal'?: (_verdict_v1_Principal | null);
  'action'?: (string);
  'resource'?: (_verdict_v1_Resource | null);
  'context'?: (_verdict_v1_Context | null);
  'requestId'?: (string);
}

export interface CheckRequest__Output {
  'principal': (_verdict_v1_Principal__Output | null);
  'action': (string);
  'resource': (_verdict_v1_Resource__Output | null);
  'context': (_verdict_v1_Context__Output | null);
  'requestId': (string);
}
