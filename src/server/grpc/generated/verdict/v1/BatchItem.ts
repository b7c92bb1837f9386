// Original file: proto/verdict/v1/authorization.proto

import type { Resource as _verdict_v1_Resource, Resource__Output as _verdict_v1_Resource__Output } from '../../verdict/v1/Resource.js';

export interface BatchItem {
  'action'?: (string);
  'resource'?: (_verdict_v1_Resource | null);
}

export interface BatchItem__Output {
  'action': (string);
  'resource': (_verdict_v1_Resource__Output | null);
}
