/**
 * The verdict.v1 messages as proto-loader hands them over with LOADER_OPTIONS
 * (descriptors.ts): decoded messages have every scalar and list filled in and
 * absent sub-messages as null; messages we send may leave fields out.
 */

export type NullValueName = 'NULL_VALUE';

/** google.protobuf.Value; `kind` names the member that is set, if any. */
export interface ValueMessage {
  nullValue?: NullValueName | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: StructMessage | null;
  listValue?: ListValueMessage | null;
  kind?: 'nullValue' | 'numberValue' | 'stringValue' | 'boolValue' | 'structValue' | 'listValue';
}

/** google.protobuf.Struct. */
export interface StructMessage {
  fields: Record<string, ValueMessage>;
}

/** google.protobuf.ListValue. */
export interface ListValueMessage {
  values: ValueMessage[];
}

/** google.protobuf.Timestamp; `seconds` is a decimal string when decoded (int64). */
export interface TimestampMessage {
  seconds: string | number;
  nanos: number;
}

export type EffectName = 'EFFECT_UNSPECIFIED' | 'EFFECT_ALLOW' | 'EFFECT_DENY';

export type ReasonName =
  | 'REASON_UNSPECIFIED'
  | 'REASON_ALLOWED_BY_RULE'
  | 'REASON_DENIED_BY_RULE'
  | 'REASON_DENIED_BY_DEFAULT'
  | 'REASON_DENIED_BY_RATE_LIMIT'
  | 'REASON_DENIED_BY_ERROR'
  | 'REASON_DENIED_INVALID_REQUEST'
  | 'REASON_DENIED_UNAUTHENTICATED';

export interface PrincipalMessage {
  id: string;
  roles: string[];
  attributes: StructMessage | null;
}

export interface ResourceMessage {
  type: string;
  id: string;
  attributes: StructMessage | null;
}

export interface ContextMessage {
  attributes: StructMessage | null;
}

export interface CheckRequestMessage {
  principal: PrincipalMessage | null;
  action: string;
  resource: ResourceMessage | null;
  context: ContextMessage | null;
  requestId: string;
}

export interface ConditionErrorMessage {
  readonly ruleId: string;
  readonly message: string;
}

export interface CheckResponseMessage {
  effect: EffectName;
  reason: ReasonName;
  ruleIds: readonly string[];
  errors: readonly ConditionErrorMessage[];
  policyVersion: string;
  decisionId: string;
  requestId: string;
}

export interface BatchItemMessage {
  action: string;
  resource: ResourceMessage | null;
}

export interface CheckBatchRequestMessage {
  principal: PrincipalMessage | null;
  context: ContextMessage | null;
  requestId: string;
  items: BatchItemMessage[];
}

export interface CheckBatchResponseMessage {
  results: CheckResponseMessage[];
}

export interface PolicyStatusMessage {
  version: string;
  loadedAt: TimestampMessage | null;
  ruleCount: number;
  lastReloadError: string;
  lastReloadAttemptAt: TimestampMessage | null;
  lastReloadLongestBlockMs: number;
}

export interface ReloadPoliciesResponseMessage {
  reloaded: boolean;
  error: string;
  status: PolicyStatusMessage;
}

export interface GetDecisionRequestMessage {
  decisionId: string;
}

export interface ListDecisionsRequestMessage {
  principalId: string;
  resourceType: string;
  resourceId: string;
  action: string;
  effect: EffectName;
  reason: ReasonName;
  since: TimestampMessage | null;
  until: TimestampMessage | null;
  limit: number;
}

export interface DecisionRecordMessage {
  decisionId: string;
  time: TimestampMessage;
  caller: string;
  requestId: string;
  principalId: string;
  action: string;
  resourceType: string;
  resourceId: string;
  effect: EffectName;
  reason: ReasonName;
  ruleIds: readonly string[];
  errors: readonly ConditionErrorMessage[];
  policyVersion: string;
  request: StructMessage;
  latencyUs: number | string;
}

export interface ListDecisionsResponseMessage {
  decisions: DecisionRecordMessage[];
}
