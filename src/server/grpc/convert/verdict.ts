import type { LimitsStatus } from '../handlers.js';
import type { DecisionRecord } from '../../../decisions/record.js';
import type { DecisionFilters } from '../../../decisions/query.js';
import { InvalidRequest, RequestFieldError, type CheckInput, type CheckResult } from '../../../decide/index.js';
import type { Attributes, DecisionRequest, Effect, Principal, Reason, RequestContext, Resource, SuspensionState } from '../../../types.js';
import type { PolicyStatus, ReloadOutcome } from '../../policy-store.js';
import type { Duration, Duration__Output } from '../generated/google/protobuf/Duration.js';
import type { Struct__Output } from '../generated/google/protobuf/Struct.js';
import type { Alert } from '../../../analysis/alert.js';
import type { Alert as AlertMessage } from '../generated/verdict/v1/Alert.js';
import type { Timestamp, Timestamp__Output } from '../generated/google/protobuf/Timestamp.js';
import type { BatchItem__Output } from '../generated/verdict/v1/BatchItem.js';
import type { CheckBatchRequest__Output } from '../generated/verdict/v1/CheckBatchRequest.js';
import type { CheckRequest__Output } from '../generated/verdict/v1/CheckRequest.js';
import type { CheckResponse } from '../generated/verdict/v1/CheckResponse.js';
import type { Context__Output } from '../generated/verdict/v1/Context.js';
import type { DecisionRecord as DecisionRecordMessage } from '../generated/verdict/v1/DecisionRecord.js';
import type { Effect__Output as WireEffect } from '../generated/verdict/v1/Effect.js';
import type { ListDecisionsRequest__Output } from '../generated/verdict/v1/ListDecisionsRequest.js';
import type { PolicyStatus as PolicyStatusMessage } from '../generated/verdict/v1/PolicyStatus.js';
import type { Principal__Output } from '../generated/verdict/v1/Principal.js';
import type { Reason__Output as WireReason } from '../generated/verdict/v1/Reason.js';
import type { ReloadPoliciesResponse } from '../generated/verdict/v1/ReloadPoliciesResponse.js';
import type { Resource__Output } from '../generated/verdict/v1/Resource.js';
import type { Suspension } from '../generated/verdict/v1/Suspension.js';
import { jsonToStruct, structToAttributes } from './struct.js';
import { cutsOf } from '../attribute-cuts.js';

// The verdict.v1 messages (Authorization and Admin) as domain values and back.
// It runs on every Check, so it shares empty values, copies no arrays it can
// pass through, and only builds error paths once something is wrong.

const EMPTY_ATTRIBUTES: Attributes = Object.freeze({});
const NO_ROLES: readonly string[] = Object.freeze([]);
const EMPTY_CONTEXT: RequestContext = Object.freeze({ attributes: EMPTY_ATTRIBUTES });

// ---------------------------------------------------------------- requests

/** A CheckRequest as a DecisionRequest, or an InvalidRequest naming the first bad field. */
export function toCheckInput(message: CheckRequest__Output): CheckInput {
  const cuts = cutsOf(message);
  // Attributes cut out for breaking a request limit are the first reason, whatever else is wrong.
  const first: FirstError = { error: cuts === null ? null : RequestFieldError.invalid(cuts[0]!.field, cuts[0]!.problem) };
  const principal = readPrincipal(message.principal, first);
  // Context comes last on the wire (field 4), so its problems are reported last.
  const contextError: FirstError = { error: null };
  const context = readContext(message.context, contextError);
  const request = readItem(principal, context, message.action, message.resource, '', first);
  first.error ??= contextError.error;
  return first.error ? new InvalidRequest(first.error, request) : request;
}

/**
 * The items of a CheckBatchRequest as inputs, one per item, in order. `shared`
 * is the error of the principal or context every item shares, if any: then every
 * input is invalid and the call as a whole is INVALID_ARGUMENT.
 */
export function toBatchInputs(message: CheckBatchRequest__Output): { inputs: CheckInput[]; shared: RequestFieldError | null } {
  const cuts = cutsOf(message);
  // Attributes cut out for breaking a request limit: the principal's or context's refuse every item, an item's that item.
  const sharedCut = cuts?.find((cut) => cut.item < 0);
  const itemCuts = cuts === null ? null : new Map(cuts.map((cut) => [cut.item, cut]));
  const shared: FirstError = { error: sharedCut === undefined ? null : RequestFieldError.invalid(sharedCut.field, sharedCut.problem) };
  const principal = readPrincipal(message.principal, shared);
  const context = readContext(message.context, shared);
  const items = message.items;
  const inputs = new Array<CheckInput>(items.length);
  for (let i = 0; i < items.length; i++) {
    const item: BatchItem__Output = items[i]!;
    const itemCut = shared.error === null ? itemCuts?.get(i) : undefined;
    const first: FirstError = { error: itemCut === undefined ? shared.error : RequestFieldError.invalid(itemCut.field, itemCut.problem) };
    const request = readItem(principal, context, item.action, item.resource, `items[${i}].`, first);
    inputs[i] = first.error ? new InvalidRequest(first.error, request) : request;
  }
  return { inputs, shared: shared.error };
}

interface FirstError {
  error: RequestFieldError | null;
}

function attributesOf(struct: Struct__Output | null | undefined, field: string, first: FirstError): Attributes {
  if (!struct) return EMPTY_ATTRIBUTES;
  try {
    return structToAttributes(struct, field);
  } catch (error) {
    if (!(error instanceof RequestFieldError)) throw error;
    first.error ??= error;
    return EMPTY_ATTRIBUTES;
  }
}

function readPrincipal(message: Principal__Output | null, first: FirstError): Principal {
  if (!message) {
    first.error ??= RequestFieldError.required('principal.id');
    return { id: '', roles: NO_ROLES, attributes: EMPTY_ATTRIBUTES };
  }
  if (message.id === '') first.error ??= RequestFieldError.required('principal.id');
  const roles = message.roles;
  for (let i = 0; i < roles.length; i++) {
    if (roles[i] === '') first.error ??= RequestFieldError.invalid(`principal.roles[${i}]`, 'must not be empty');
  }
  return { id: message.id, roles, attributes: attributesOf(message.attributes, 'principal.attributes', first) };
}

function readContext(message: Context__Output | null, first: FirstError): RequestContext {
  if (!message?.attributes) return EMPTY_CONTEXT;
  return { attributes: attributesOf(message.attributes, 'context.attributes', first) };
}

function readItem(
  principal: Principal,
  context: RequestContext,
  action: string,
  resourceMessage: Resource__Output | null,
  prefix: string,
  first: FirstError,
): DecisionRequest {
  if (action === '') first.error ??= RequestFieldError.required(`${prefix}action`);
  let resource: Resource;
  if (!resourceMessage) {
    first.error ??= RequestFieldError.required(`${prefix}resource.type`);
    resource = { type: '', id: '', attributes: EMPTY_ATTRIBUTES };
  } else {
    if (resourceMessage.type === '') first.error ??= RequestFieldError.required(`${prefix}resource.type`);
    const attributes = attributesOf(resourceMessage.attributes, `${prefix}resource.attributes`, first);
    resource = { type: resourceMessage.type, id: resourceMessage.id, attributes };
  }
  return { principal, action, resource, context };
}

// ---------------------------------------------------------------- decisions

const EFFECT_NAMES = { ALLOW: 'EFFECT_ALLOW', DENY: 'EFFECT_DENY' } as const satisfies Record<Effect, WireEffect>;

/** verdict.v1.Reason for each reason of src/types.ts: the compiler checks it covers both lists. */
const REASON_NAMES = {
  ALLOWED_BY_RULE: 'REASON_ALLOWED_BY_RULE',
  DENIED_BY_RULE: 'REASON_DENIED_BY_RULE',
  DENIED_BY_DEFAULT: 'REASON_DENIED_BY_DEFAULT',
  DENIED_BY_RATE_LIMIT: 'REASON_DENIED_BY_RATE_LIMIT',
  DENIED_BY_ERROR: 'REASON_DENIED_BY_ERROR',
  DENIED_INVALID_REQUEST: 'REASON_DENIED_INVALID_REQUEST',
  DENIED_UNAUTHENTICATED: 'REASON_DENIED_UNAUTHENTICATED',
  DENIED_BY_SUSPENSION: 'REASON_DENIED_BY_SUSPENSION',
} as const satisfies Record<Reason, WireReason>;

// A value added to a proto enum and never sent fails to compile here, naming the value.
type Unsent<Wire extends string, Sent extends string> = Exclude<Wire, Sent | `${string}_UNSPECIFIED`>;
type NoneUnsent<Missing> = [Missing] extends [never] ? true : Missing;
type Assert<T extends true> = T;
export type EveryReasonValueIsSent = Assert<NoneUnsent<Unsent<WireReason, (typeof REASON_NAMES)[Reason]>>>;
export type EveryEffectValueIsSent = Assert<NoneUnsent<Unsent<WireEffect, (typeof EFFECT_NAMES)[Effect]>>>;

const EFFECTS_BY_NAME = invert(EFFECT_NAMES);
const REASONS_BY_NAME = invert(REASON_NAMES);

/** Wire name → domain value; UNSPECIFIED (and any name not in the table) is absent. */
function invert<K extends string>(record: Readonly<Record<K, string>>): ReadonlyMap<string, K> {
  return new Map(Object.entries<string>(record).map(([key, value]) => [value, key as K]));
}

/** A domain list as a message's repeated field. The serializer only reads it, so it is passed, not copied. */
function wireList<T>(list: readonly T[]): T[] {
  return list as T[];
}

/** A recorded decision as the CheckResponse the caller gets. */
export function toCheckResponse(result: Pick<CheckResult, 'decision' | 'decisionId'>, requestId: string | null): CheckResponse {
  const decision = result.decision;
  const response: CheckResponse = {
    effect: EFFECT_NAMES[decision.effect],
    reason: REASON_NAMES[decision.reason],
    // Domain arrays have the wire shape already ({ ruleId, message }): passed as they are.
    ruleIds: wireList(decision.ruleIds),
    errors: wireList(decision.errors),
    policyVersion: decision.policyVersion,
    decisionId: result.decisionId,
    requestId: requestId ?? '',
  };
  const limit = decision.limit;
  if (limit !== undefined) {
    response.limitId = limit.limitId;
    response.remaining = limit.remaining;
    if (decision.reason === 'DENIED_BY_RATE_LIMIT') response.retryAfter = toDuration(limit.retryAfterMs);
  }
  return response;
}

/** Milliseconds as a google.protobuf.Duration, rounded up to the millisecond (a retry never comes too early). */
export function toDuration(ms: number): Duration {
  // A cost of 1e20 against a small rate waits longer than a Duration may say (about
  // 10,000 years, protobuf's bound); strict clients refuse such a message, so it is capped.
  const whole = Math.min(MAX_DURATION_MS, Math.max(0, Math.ceil(ms)));
  return { seconds: Math.floor(whole / 1000), nanos: (whole % 1000) * 1_000_000 };
}

/** google.protobuf.Duration's range: ±315,576,000,000 seconds. */
const MAX_DURATION_MS = 315_576_000_000 * 1000;

// ---------------------------------------------------------------- admin

/** Ms since the epoch as a google.protobuf.Timestamp. */
export function toTimestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6)) };
}

/** A google.protobuf.Timestamp as ms since the epoch; throws RequestFieldError when it is not valid. */
export function fromTimestamp(timestamp: Timestamp__Output, field: string): number {
  const seconds = Number(timestamp.seconds);
  const nanos = timestamp.nanos;
  if (!Number.isSafeInteger(seconds)) throw RequestFieldError.invalid(`${field}.seconds`, 'out of range');
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    throw RequestFieldError.invalid(`${field}.nanos`, 'must be between 0 and 999999999');
  }
  return seconds * 1000 + nanos / 1e6;
}

/** The policy store's status as the admin PolicyStatus message. */
export function toPolicyStatusMessage(status: PolicyStatus & { readonly limits?: LimitsStatus }): PolicyStatusMessage {
  return {
    ...(status.limits === undefined ? {} : { loadFactors: status.limits.loadFactors.map((f) => ({ ...f })), limitBackend: status.limits.backend, limitBackendHealthy: status.limits.backendHealthy }),
    version: status.version,
    loadedAt: toTimestamp(status.loadedAt.getTime()),
    ruleCount: status.ruleCount,
    lastReloadError: status.lastReloadError ?? '',
    lastReloadAttemptAt: status.lastReloadAttemptAt === null ? null : toTimestamp(status.lastReloadAttemptAt.getTime()),
    // 0 before any reload: proto3 has no null for a double.
    lastReloadLongestBlockMs: status.lastReloadLongestBlockMs ?? 0,
    shadowVersion: status.shadow?.version ?? '',
    shadowRuleCount: status.shadow?.ruleCount ?? 0,
    shadowLastReloadError: status.shadow?.lastReloadError ?? '',
    replicaId: status.replicaId ?? '',
  };
}

/** A reload's outcome, and the status after it, as the ReloadPoliciesResponse. */
export function toReloadMessage(outcome: ReloadOutcome, status: PolicyStatus): ReloadPoliciesResponse {
  return { reloaded: outcome.ok, error: outcome.ok ? '' : outcome.error, status: toPolicyStatusMessage(status) };
}

/** A ListDecisionsRequest as decision log filters; unset fields (empty, UNSPECIFIED, 0) are left out. */
export function toDecisionFilters(message: ListDecisionsRequest__Output): DecisionFilters {
  const query: { -readonly [K in keyof DecisionFilters]: DecisionFilters[K] } = {};
  if (message.principalId !== '') query.principalId = message.principalId;
  if (message.resourceType !== '') query.resourceType = message.resourceType;
  if (message.resourceId !== '') query.resourceId = message.resourceId;
  if (message.action !== '') query.action = message.action;
  const effect = EFFECTS_BY_NAME.get(message.effect);
  if (effect) query.effect = effect;
  const reason = REASONS_BY_NAME.get(message.reason);
  if (reason) query.reason = reason;
  if (message.since) query.since = fromTimestamp(message.since, 'since');
  if (message.until) query.until = fromTimestamp(message.until, 'until');
  if (message.limit > 0) query.limit = message.limit;
  return query;
}

/** A decision log row as the admin DecisionRecord message. */
export function toDecisionRecordMessage(record: DecisionRecord): DecisionRecordMessage {
  return {
    decisionId: record.decisionId,
    time: toTimestamp(record.time),
    caller: record.caller,
    requestId: record.requestId ?? '',
    principalId: record.principalId,
    action: record.action,
    resourceType: record.resourceType,
    resourceId: record.resourceId,
    effect: EFFECT_NAMES[record.effect],
    reason: REASON_NAMES[record.reason],
    ruleIds: wireList(record.ruleIds),
    errors: wireList(record.errors),
    policyVersion: record.policyVersion,
    request: jsonToStruct(record.request),
    latencyUs: Math.max(0, Math.round(record.latencyUs)),
  };
}

/** An alert as the Admin API sends it. */
export function toAlertMessage(alert: Alert): AlertMessage {
  return {
    id: alert.id,
    type: alert.type,
    subjectKind: alert.subject.kind,
    subjectId: alert.subject.id,
    windowStart: toTimestamp(alert.windowStart),
    windowEnd: toTimestamp(alert.windowEnd),
    observed: alert.observed,
    threshold: alert.threshold,
    ...(alert.baseline === undefined ? {} : { baseline: alert.baseline }),
    resourceType: alert.resource?.type ?? '',
    resourceId: alert.resource?.id ?? '',
    decisionIds: [...alert.decisionIds],
    raisedAt: toTimestamp(alert.raisedAt),
    summary: alert.summary,
  };
}

/** A suspension as a verdict.v1.Suspension. */
export function toSuspensionMessage(s: SuspensionState): Suspension {
  return { principalId: s.principalId, since: toTimestamp(s.since), until: toTimestamp(s.until), alertId: s.alertId, alertType: s.alertType, note: s.note };
}

/** A google.protobuf.Duration as milliseconds, or null when unset; throws RequestFieldError when it is not valid. */
export function fromDuration(duration: Duration__Output | null, field: string): number | null {
  if (duration === null) return null;
  const seconds = Number(duration.seconds);
  if (!Number.isSafeInteger(seconds) || seconds < 0) throw RequestFieldError.invalid(`${field}.seconds`, 'out of range');
  if (!Number.isInteger(duration.nanos) || duration.nanos < 0 || duration.nanos > 999_999_999) throw RequestFieldError.invalid(`${field}.nanos`, 'must be between 0 and 999999999');
  return seconds * 1000 + duration.nanos / 1e6;
}
