// Original file: proto/verdict/v1/authorization.proto

import type { Effect as _verdict_v1_Effect, Effect__Output as _verdict_v1_Effect__Output } from '../../verdict/v1/Effect.js';
import type { Reason as _verdict_v1_Reason, Reason__Output as _verdict_v1_Reason__Output } from '../../verdict/v1/Reason.js';
import type { ConditionError as _verdict_v1_ConditionError, ConditionError__Output as _verdict_v1_ConditionError__Output } from '../../verdict/v1/ConditionError.js';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration.js';
import type { Long } from '@grpc/proto-loader';

export interface CheckResponse {
  'effect'?: (_verdict_v1_Effect);
  'reason'?: (_verdict_v1_Reason);
  'ruleIds'?: (string)[];
  'errors'?: (_verdict_v1_ConditionError)[];
  'policyVersion'?: (string);
  'decisionId'?: (string);
  'requestId'?: (string);
  'retryAfter'?: (_google_protobuf_Duration | null);
  'remaining'?: (number | string | Long);
  'limitId'?: (string);
}

export interface CheckResponse__Output {
  'effect': (_verdict_v1_Effect__Output);
  'reason': (_verdict_v1_Reason__Output);
  'ruleIds': (string)[];
  'errors': (_verdict_v1_ConditionError__Output)[];
  'policyVersion': (string);
  'decisionId': (string);
  'requestId': (string);
  'retryAfter': (_google_protobuf_Duration__Output | null);
  'remaining': (string);
  'limitId': (string);
}
