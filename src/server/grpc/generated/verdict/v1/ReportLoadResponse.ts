// Original file: proto/verdict/v1/admin.proto

import type { LoadFactor as _verdict_v1_LoadFactor, LoadFactor__Output as _verdict_v1_LoadFactor__Output } from '../../verdict/v1/LoadFactor.js';

export interface ReportLoadResponse {
  'loadFactors'?: (_verdict_v1_LoadFactor)[];
}

export interface ReportLoadResponse__Output {
  'loadFactors': (_verdict_v1_LoadFactor__Output)[];
}
