// Original file: proto/verdict/v1/authorization.proto

import type { Principal as _verdict_v1_Principal, Principal__Output as _verdict_v1_Principal__Output } from '../../verdict/v1/Principal.js';
import type { Context as _verdict_v1_Context, Context__Output as _verdict_v1_Context__Output } from '../../verdict/v1/Context.js';
import type { BatchItem as _verdict_v1_BatchItem, BatchItem__Output as _verdict_v1_BatchItem__Output } from '../../verdict/v1/BatchItem.js';

export interface CheckBatchRequest {
  'principal'?: (_verdict_v1_Principal | null);
  'context'?: (_verdict_v1_Context | null);
  'requestId'?: (string);
  'items'?: (_verdict_v1_BatchItem)[];
}

export interface CheckBatchRequest__Output {
  'principal': (_verdict_v1_Principal__Output | null);
  'context': (_verdict_v1_Context__Output | null);
  'requestId': (string);
  'items': (_verdict_v1_BatchItem__Output)[];
}
