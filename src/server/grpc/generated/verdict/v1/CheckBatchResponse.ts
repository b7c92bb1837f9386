// Original file: proto/verdict/v1/authorization.proto

import type { CheckResponse as _verdict_v1_CheckResponse, CheckResponse__Output as _verdict_v1_CheckResponse__Output } from '../../verdict/v1/CheckResponse.js';

export interface CheckBatchResponse {
  'results'?: (_verdict_v1_CheckResponse)[];
}

export interface CheckBatchResponse__Output {
  'results': (_verdict_v1_CheckResponse__Output)[];
}
