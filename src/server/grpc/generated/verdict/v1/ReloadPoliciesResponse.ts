// Original file: proto/verdict/v1/admin.proto

import type { PolicyStatus as _verdict_v1_PolicyStatus, PolicyStatus__Output as _verdict_v1_PolicyStatus__Output } from '../../verdict/v1/PolicyStatus.js';

export interface ReloadPoliciesResponse {
  'reloaded'?: (boolean);
  'error'?: (string);
  'status'?: (_verdict_v1_PolicyStatus | null);
}

export interface ReloadPoliciesResponse__Output {
  'reloaded': (boolean);
  'error': (string);
  'status': (_verdict_v1_PolicyStatus__Output | null);
}
