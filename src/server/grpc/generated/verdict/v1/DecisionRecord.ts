// Original file: proto/verdict/v1/admin.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp.js';
import type { Effect as _verdict_v1_Effect, Effect__Output as _verdict_v1_Effect__Output } from '../../verdict/v1/Effect.js';
import type { Reason as _verdict_v1_Reason, Reason__Output as _verdict_v1_Reason__Output } from '../../verdict/v1/Reason.js';
import type { ConditionError as _verdict_v1_ConditionError, ConditionError__Output as _verdict_v1_ConditionError__Output } from '../../verdict/v1/ConditionError.js';
import type { Struct as _google_protobuf_Struct, Struct__Output as _google_protobuf_Struct__Output } from '../../google/protobuf/Struct.js';
import type { Long } from '@grpc/proto-loader';

export interface DecisionRecord {
  'decisionId'?: (string);
  'time'?: (_google_protobuf_Timestamp | null);
  'caller'?: (string);
  'requestId'?: (string);
  'principalId'?: (string);
  'action'?: (string);
  'resourceType'?: (string);
  'resourceId'?: (string);
  'effect'?: (_verdict_v1_Effect);
  'reason'?: (_verdict_v1_Reason);
  'ruleIds'?: (string)[];
  'errors'?: (_verdict_v1_ConditionError)[];
  'policyVersion'?: (string);
  'request'?: (_google_protobuf_Struct | null);
  'latencyUs'?: (number | string | Long);
}

export interface DecisionRecord__Output {
  'decisionId': (string);
  'time': (_google_protobuf_Timestamp__Output | null);
  'caller': (string);
  'requestId': (string);
  'principalId': (string);
  'action': (string);
  'resourceType': (string);
  'resourceId': (string);
  'effect': (_verdict_v1_Effect__Output);
  'reason': (_verdict_v1_Reason__Output);
  'ruleIds': (string)[];
  'errors': (_verdict_v1_ConditionError__Output)[];
  'policyVersion': (string);
  'request': (_google_protobuf_Struct__Output | null);
  'latencyUs': (string);
}
