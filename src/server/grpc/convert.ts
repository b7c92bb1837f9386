import type { DecisionRecord } from '../../decisions/record.js';
import type {
  AttributeValue,
  Attributes,
  DecisionRequest,
  Effect,
  Principal,
  Reason,
  RequestContext,
  Resource,
} from '../../types.js';
import type { CheckResult, DecisionQuery, PolicyStatus, ReloadOutcome } from './handlers.js';
import { InvalidRequest, RequestFieldError, type CheckInput } from './invalid-request.js';
import type {
  BatchItemMessage,
  CheckBatchRequestMessage,
  CheckRequestMessage,
  CheckResponseMessage,
  ContextMessage,
  DecisionRecordMessage,
  EffectName,
  ListDecisionsRequestMessage,
  ListValueMessage,
  PolicyStatusMessage,
  PrincipalMessage,
  ReasonName,
  ReloadPoliciesResponseMessage,
  ResourceMessage,
  StructMessage,
  TimestampMessage,
  ValueMessage,
} from './messages.js';

// The one place protobuf messages become domain values and back. It runs on
// every Check, so it shares empty values, copies no arrays it can pass through,
// and only builds error paths once something is wrong.

const EMPTY_ATTRIBUTES: Attributes = Object.freeze({});
const NO_ROLES: readonly string[] = Object.freeze([]);
const EMPTY_CONTEXT: RequestContext = Object.freeze({ attributes: EMPTY_ATTRIBUTES });

/** Deep enough for any sane attribute document, shallow enough to never threaten the stack. */
export const MAX_ATTRIBUTE_DEPTH = 32;

// ---------------------------------------------------------------- Struct → JSON

class AttributeProblem extends Error {
  readonly path: (string | number)[] = [];
}

/**
 * A google.protobuf.Struct as plain JSON attributes. Throws RequestFieldError
 * naming the offending attribute under `field` (e.g. `principal.attributes.tier`).
 */
export function structToAttributes(struct: StructMessage | null | undefined, field: string): Attributes {
  if (!struct) return EMPTY_ATTRIBUTES;
  try {
    return structToJson(struct, 0);
  } catch (error) {
    if (!(error instanceof AttributeProblem)) throw error;
    throw RequestFieldError.invalid(field + error.path.map(pathSegment).join(''), error.message);
  }
}

function structToJson(struct: StructMessage, depth: number): Attributes {
  if (depth > MAX_ATTRIBUTE_DEPTH) throw new AttributeProblem(`nested deeper than ${MAX_ATTRIBUTE_DEPTH} levels`);
  const fields = struct.fields;
  const keys = Object.keys(fields);
  if (keys.length === 0) return EMPTY_ATTRIBUTES;
  const out: Record<string, AttributeValue> = {};
  let key = '';
  try {
    for (key of keys) out[key] = valueToJson(fields[key]!, depth);
  } catch (error) {
    if (error instanceof AttributeProblem) error.path.unshift(key);
    throw error;
  }
  return out;
}

function listToJson(list: ListValueMessage, depth: number): AttributeValue[] {
  if (depth > MAX_ATTRIBUTE_DEPTH) throw new AttributeProblem(`nested deeper than ${MAX_ATTRIBUTE_DEPTH} levels`);
  const values = list.values;
  const out = new Array<AttributeValue>(values.length);
  let i = 0;
  try {
    for (; i < values.length; i++) out[i] = valueToJson(values[i]!, depth);
  } catch (error) {
    if (error instanceof AttributeProblem) error.path.unshift(i);
    throw error;
  }
  return out;
}

function valueToJson(value: ValueMessage, depth: number): AttributeValue {
  switch (value.kind) {
    case 'stringValue':
      return value.stringValue ?? '';
    case 'numberValue': {
      const n = value.numberValue ?? 0;
      if (!Number.isFinite(n)) throw new AttributeProblem('number must be finite (NaN and Infinity are not JSON)');
      return n;
    }
    case 'boolValue':
      return value.boolValue ?? false;
    case 'nullValue':
      return null;
    case 'structValue':
      return value.structValue ? structToJson(value.structValue, depth + 1) : EMPTY_ATTRIBUTES;
    case 'listValue':
      return value.listValue ? listToJson(value.listValue, depth + 1) : [];
    default:
      throw new AttributeProblem('no value set (send null_value for null)');
  }
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function pathSegment(segment: string | number): string {
  if (typeof segment === 'number') return `[${segment}]`;
  return IDENTIFIER.test(segment) ? `.${segment}` : `[${JSON.stringify(segment)}]`;
}

// ---------------------------------------------------------------- JSON → Struct

/** JSON-ready data as a google.protobuf.Struct (a non-object becomes an empty Struct). */
export function jsonToStruct(data: unknown): StructMessage {
  const fields: Record<string, ValueMessage> = {};
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return { fields };
  for (const [key, value] of Object.entries(data)) {
    // Assigning `__proto__` would replace the prototype instead of adding a field.
    Object.defineProperty(fields, key, { value: jsonToValue(value), enumerable: true, writable: true, configurable: true });
  }
  return { fields };
}

function jsonToValue(value: unknown): ValueMessage {
  switch (typeof value) {
    case 'string':
      return { stringValue: value };
    case 'number':
      return Number.isFinite(value) ? { numberValue: value } : { nullValue: 'NULL_VALUE' };
    case 'boolean':
      return { boolValue: value };
    case 'bigint':
      return { stringValue: value.toString() };
    case 'object':
      if (value === null) return { nullValue: 'NULL_VALUE' };
      if (Array.isArray(value)) return { listValue: { values: value.map(jsonToValue) } };
      return { structValue: jsonToStruct(value) };
    default:
      // undefined, functions and symbols have no JSON form; JSON.stringify drops them too.
      return { nullValue: 'NULL_VALUE' };
  }
}

// ---------------------------------------------------------------- requests

/** A CheckRequest as a DecisionRequest, or an InvalidRequest naming the first bad field. */
export function toCheckInput(message: CheckRequestMessage): CheckInput {
  const first: FirstError = { error: null };
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
export function toBatchInputs(message: CheckBatchRequestMessage): { inputs: CheckInput[]; shared: RequestFieldError | null } {
  const shared: FirstError = { error: null };
  const principal = readPrincipal(message.principal, shared);
  const context = readContext(message.context, shared);
  const items = message.items;
  const inputs = new Array<CheckInput>(items.length);
  for (let i = 0; i < items.length; i++) {
    const item: BatchItemMessage = items[i]!;
    const first: FirstError = { error: shared.error };
    const request = readItem(principal, context, item.action, item.resource, `items[${i}].`, first);
    inputs[i] = first.error ? new InvalidRequest(first.error, request) : request;
  }
  return { inputs, shared: shared.error };
}

interface FirstError {
  error: RequestFieldError | null;
}

function attributesOf(struct: StructMessage | null | undefined, field: string, first: FirstError): Attributes {
  if (!struct) return EMPTY_ATTRIBUTES;
  try {
    return structToAttributes(struct, field);
  } catch (error) {
    if (!(error instanceof RequestFieldError)) throw error;
    first.error ??= error;
    return EMPTY_ATTRIBUTES;
  }
}

function readPrincipal(message: PrincipalMessage | null, first: FirstError): Principal {
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

function readContext(message: ContextMessage | null, first: FirstError): RequestContext {
  if (!message?.attributes) return EMPTY_CONTEXT;
  return { attributes: attributesOf(message.attributes, 'context.attributes', first) };
}

function readItem(
  principal: Principal,
  context: RequestContext,
  action: string,
  resourceMessage: ResourceMessage | null,
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

const EFFECT_NAMES: Readonly<Record<Effect, EffectName>> = { ALLOW: 'EFFECT_ALLOW', DENY: 'EFFECT_DENY' };

const REASON_NAMES: Readonly<Record<Reason, ReasonName>> = {
  ALLOWED_BY_RULE: 'REASON_ALLOWED_BY_RULE',
  DENIED_BY_RULE: 'REASON_DENIED_BY_RULE',
  DENIED_BY_DEFAULT: 'REASON_DENIED_BY_DEFAULT',
  DENIED_BY_RATE_LIMIT: 'REASON_DENIED_BY_RATE_LIMIT',
  DENIED_BY_ERROR: 'REASON_DENIED_BY_ERROR',
  DENIED_INVALID_REQUEST: 'REASON_DENIED_INVALID_REQUEST',
  DENIED_UNAUTHENTICATED: 'REASON_DENIED_UNAUTHENTICATED',
};

const EFFECTS_BY_NAME = invert(EFFECT_NAMES);
const REASONS_BY_NAME = invert(REASON_NAMES);

function invert<K extends string, V extends string>(record: Readonly<Record<K, V>>): ReadonlyMap<V, K> {
  return new Map(Object.entries(record).map(([key, value]) => [value as V, key as K]));
}

/** A recorded decision as the CheckResponse the caller gets. */
export function toCheckResponse(result: CheckResult, requestId: string | null): CheckResponseMessage {
  const decision = result.decision;
  return {
    effect: EFFECT_NAMES[decision.effect],
    reason: REASON_NAMES[decision.reason],
    // Domain arrays have the wire shape already ({ ruleId, message }): passed as they are.
    ruleIds: decision.ruleIds,
    errors: decision.errors,
    policyVersion: decision.policyVersion,
    decisionId: result.decisionId,
    requestId: requestId ?? '',
  };
}

// ---------------------------------------------------------------- admin

/** Ms since the epoch as a google.protobuf.Timestamp. */
export function toTimestamp(ms: number): TimestampMessage {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6)) };
}

/** A google.protobuf.Timestamp as ms since the epoch; throws RequestFieldError when it is not valid. */
export function fromTimestamp(timestamp: TimestampMessage, field: string): number {
  const seconds = Number(timestamp.seconds);
  const nanos = timestamp.nanos;
  if (!Number.isSafeInteger(seconds)) throw RequestFieldError.invalid(`${field}.seconds`, 'out of range');
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    throw RequestFieldError.invalid(`${field}.nanos`, 'must be between 0 and 999999999');
  }
  return seconds * 1000 + nanos / 1e6;
}

export function toPolicyStatusMessage(status: PolicyStatus): PolicyStatusMessage {
  return {
    version: status.version,
    loadedAt: status.loadedAt === null ? null : toTimestamp(status.loadedAt),
    ruleCount: status.ruleCount,
    lastReloadError: status.lastReloadError ?? '',
    lastReloadAttemptAt: status.lastReloadAttemptAt === null ? null : toTimestamp(status.lastReloadAttemptAt),
    lastReloadLongestBlockMs: status.lastReloadLongestBlockMs ?? 0,
  };
}

export function toReloadMessage(outcome: ReloadOutcome): ReloadPoliciesResponseMessage {
  return { reloaded: outcome.reloaded, error: outcome.error ?? '', status: toPolicyStatusMessage(outcome.status) };
}

/** A ListDecisionsRequest as a query; unset fields (empty, UNSPECIFIED, 0) are left out. */
export function toDecisionQuery(message: ListDecisionsRequestMessage): DecisionQuery {
  const query: { -readonly [K in keyof DecisionQuery]: DecisionQuery[K] } = {};
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
    ruleIds: record.ruleIds,
    errors: record.errors,
    policyVersion: record.policyVersion,
    request: jsonToStruct(record.request),
    latencyUs: Math.max(0, Math.round(record.latencyUs)),
  };
}
