// The OpenID AuthZEN Authorization API 1.0 (evaluation and evaluations) as
// questions for the decide core, and its decisions as AuthZEN responses.

import { CONSTRUCTOR_KEY_PROBLEM, InvalidRequest, PROTO_KEY_PROBLEM, RequestFieldError, type CheckInput, type CheckResult } from '../decide/index.js';
import type { Attributes, Decision, DecisionRequest } from '../types.js';
import { memberSegment } from '../json-members.js';

/**
 * How verdict reads an AuthZEN request:
 * - `subject.id` → principal id; `subject.properties.roles` (an array of role
 *   names) → principal roles; the other subject properties → principal attributes,
 *   and `subject.type` → the principal attribute `type` (so a property may not be called `type`).
 *   That is how a listed PEP's subject is read; a caller asking about itself is
 *   decided with its credential's facts instead (authzen-http.ts, `confined`).
 * - `action.name` → action (`action.properties` play no part).
 * - `resource.type`, `resource.id`, `resource.properties` → resource type, id, attributes.
 * - `context` → context attributes.
 */

/** The three `options.evaluations_semantic` values of the specification; `execute_all` is the default. */
export const EVALUATIONS_SEMANTICS = ['execute_all', 'deny_on_first_deny', 'permit_on_first_permit'] as const;
export type EvaluationsSemantic = (typeof EVALUATIONS_SEMANTICS)[number];

/** The most evaluations one `/access/v1/evaluations` call may carry (as many as a gRPC CheckBatch). */
export const MAX_EVALUATIONS = 1000;
/** Deep enough for any sane attribute document, shallow enough to never threaten the stack (as for gRPC Structs). */
export const MAX_PROPERTY_DEPTH = 32;

const EMPTY: Attributes = Object.freeze({});
const NO_ROLES: readonly string[] = Object.freeze([]);
const TOP_LEVEL_KEYS = new Set(['subject', 'action', 'resource', 'context']);
const EVALUATIONS_KEYS = new Set(['subject', 'action', 'resource', 'context', 'evaluations', 'options']);

/** A question read from an AuthZEN request: a request to decide, or an InvalidRequest naming the bad field. */
export type AuthZenQuestion = CheckInput;

/** A `/access/v1/evaluations` body, read: its questions and how to run them; or one question when it has no `evaluations`. */
export type EvaluationsRequest =
  | { readonly kind: 'single'; readonly question: AuthZenQuestion }
  | { readonly kind: 'many'; readonly questions: readonly AuthZenQuestion[]; readonly semantic: EvaluationsSemantic };

/** The request that is recorded for a body that could not be read at all: no principal, action or resource. */
export const UNREADABLE_REQUEST: DecisionRequest = Object.freeze({
  principal: Object.freeze({ id: '', roles: NO_ROLES, attributes: EMPTY }),
  action: '',
  resource: Object.freeze({ type: '', id: '', attributes: EMPTY }),
  context: Object.freeze({ attributes: EMPTY }),
});

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A JSON object as attributes, checked to be no deeper than MAX_PROPERTY_DEPTH and to hold only finite numbers. */
function attributesOf(value: unknown, field: string): Attributes {
  if (value === undefined) return EMPTY;
  if (!isObject(value)) throw RequestFieldError.invalid(field, 'must be a JSON object');
  const unfit = unfitValue(value, 0);
  if (unfit !== null) throw RequestFieldError.invalid(field + unfit.at, unfit.problem);
  return value as Attributes;
}

/**
 * The first value inside `value` that attributes may not hold, with its path below
 * `value` (`.a[2]`); null when there is none. The path is built only for the value
 * found, so a list of half a million numbers costs no string per element.
 */
function unfitValue(value: unknown, depth: number): { readonly at: string; readonly problem: string } | null {
  // JSON.parse reads 1e999 as Infinity, which the decision log would record as null: refused, as gRPC refuses it.
  if (typeof value === 'number') return Number.isFinite(value) ? null : { at: '', problem: 'number must be finite (1e999 and the like overflow a double)' };
  if (typeof value !== 'object' || value === null) return null;
  if (depth >= MAX_PROPERTY_DEPTH) return { at: '', problem: `nested deeper than ${MAX_PROPERTY_DEPTH} levels` };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const unfit = unfitValue(value[i], depth + 1);
      if (unfit !== null) return { at: `[${i}]${unfit.at}`, problem: unfit.problem };
    }
    return null;
  }
  for (const key of Object.keys(value)) {
    // JSON.parse keeps it as data, but the first copy made by assignment would turn it into a prototype: refused, as gRPC refuses it.
    if (key === '__proto__') return { at: memberSegment(key), problem: PROTO_KEY_PROBLEM };
    if (key === 'constructor') return { at: memberSegment(key), problem: CONSTRUCTOR_KEY_PROBLEM };
    const unfit = unfitValue((value as Json)[key], depth + 1);
    if (unfit !== null) return { at: memberSegment(key) + unfit.at, problem: unfit.problem };
  }
  return null;
}

function requiredString(entity: Json, key: string, field: string, allowEmpty = false): string {
  const value = entity[key];
  if (value === undefined || value === null) throw RequestFieldError.required(`${field}.${key}`);
  if (typeof value !== 'string') throw RequestFieldError.invalid(`${field}.${key}`, 'must be a string');
  if (!allowEmpty && value === '') throw RequestFieldError.required(`${field}.${key}`);
  return value;
}

function requiredObject(value: unknown, field: string): Json {
  if (value === undefined || value === null) throw RequestFieldError.required(field);
  if (!isObject(value)) throw RequestFieldError.invalid(field, 'must be a JSON object');
  return value;
}

/** What could be read of a request so far, recorded with an invalid one. */
interface ReadSoFar {
  principalId: string;
  action: string;
  resourceType: string;
  resourceId: string;
}

function readSubject(value: unknown, field: string): DecisionRequest['principal'] {
  const subject = requiredObject(value, field);
  const type = requiredString(subject, 'type', field);
  const id = requiredString(subject, 'id', field);
  const properties = attributesOf(subject.properties, `${field}.properties`);
  if (properties.type !== undefined) throw RequestFieldError.invalid(`${field}.properties.type`, 'reserved: the principal attribute `type` is subject.type');
  let roles = NO_ROLES;
  let attributes: Attributes = properties;
  if (properties.roles !== undefined) {
    const list = properties.roles;
    if (!Array.isArray(list)) throw RequestFieldError.invalid(`${field}.properties.roles`, 'must be an array of role names');
    for (let i = 0; i < list.length; i++) {
      const role: unknown = list[i];
      if (typeof role !== 'string' || role === '') throw RequestFieldError.invalid(`${field}.properties.roles[${i}]`, 'must be a non-empty string');
    }
    roles = list as string[];
    const { roles: _roles, ...rest } = properties;
    attributes = rest;
  }
  // Object.assign, not `{ ...attributes, type }`: a member added to a spread copy takes V8's slow path (decision-with.ts).
  return { id, roles, attributes: Object.assign({}, attributes, { type }) };
}

function readAction(value: unknown, field: string): string {
  const action = requiredObject(value, field);
  const name = requiredString(action, 'name', field);
  if (action.properties !== undefined && !isObject(action.properties)) throw RequestFieldError.invalid(`${field}.properties`, 'must be a JSON object');
  return name;
}

function readResource(value: unknown, field: string): DecisionRequest['resource'] {
  const resource = requiredObject(value, field);
  const type = requiredString(resource, 'type', field);
  const id = requiredString(resource, 'id', field, true);
  return { type, id, attributes: attributesOf(resource.properties, `${field}.properties`) };
}

/** A member read once: its value, or why it cannot be read. */
type MemberRead = { readonly value: unknown } | { readonly error: RequestFieldError };

/**
 * Reads the members of an evaluations request's items. An item takes the top-level
 * subject, action, resource and context it does not give itself, so a thousand items
 * share them: each object is read and checked once, however many items it stands in.
 * Without this, one megabyte of top-level context was walked a thousand times.
 */
class MemberReads {
  private readonly reads = new Map<object, MemberRead>();

  read<T>(value: unknown, reader: () => T): T {
    if (typeof value !== 'object' || value === null) return reader();
    let read = this.reads.get(value);
    if (read === undefined) {
      try {
        read = { value: reader() };
      } catch (error) {
        if (!(error instanceof RequestFieldError)) throw error;
        read = { error };
      }
      this.reads.set(value, read);
    }
    if ('error' in read) throw read.error;
    return read.value as T;
  }
}

/** A string member of a member that may not be an object, for what is recorded of an invalid request. */
function stringMember(value: unknown, key: string): string | null {
  if (!isObject(value)) return null;
  const member = value[key];
  return typeof member === 'string' ? member : null;
}

/**
 * One evaluation's 4-tuple as a question. `fields` names where each member came
 * from (`subject` or `evaluations[2].subject`), so a bad field is named as sent;
 * `reads` shares the reading of members several items take from the top level.
 */
function readTuple(
  tuple: { subject: unknown; action: unknown; resource: unknown; context: unknown },
  fields: { subject: string; action: string; resource: string; context: string },
  reads: MemberReads = new MemberReads(),
): AuthZenQuestion {
  const partial: ReadSoFar = { principalId: '', action: '', resourceType: '', resourceId: '' };
  try {
    // Read in the order the specification lists them, so the first missing one is named; what
    // is recorded of an invalid request is what was reached before it.
    partial.principalId = stringMember(tuple.subject, 'id') ?? '';
    const principal = reads.read(tuple.subject, () => readSubject(tuple.subject, fields.subject));
    partial.action = stringMember(tuple.action, 'name') ?? '';
    const action = reads.read(tuple.action, () => readAction(tuple.action, fields.action));
    partial.resourceType = stringMember(tuple.resource, 'type') ?? '';
    partial.resourceId = stringMember(tuple.resource, 'id') ?? '';
    const resource = reads.read(tuple.resource, () => readResource(tuple.resource, fields.resource));
    const contextValue = tuple.context === null ? undefined : tuple.context;
    const context = { attributes: reads.read(contextValue, () => attributesOf(contextValue, fields.context)) };
    return { principal, action, resource, context };
  } catch (error) {
    if (!(error instanceof RequestFieldError)) throw error;
    const request: DecisionRequest = {
      principal: { id: partial.principalId, roles: NO_ROLES, attributes: EMPTY },
      action: partial.action,
      resource: { type: partial.resourceType, id: partial.resourceId, attributes: EMPTY },
      context: { attributes: EMPTY },
    };
    return new InvalidRequest(error, request);
  }
}

function unknownKey(body: Json, allowed: ReadonlySet<string>): RequestFieldError | null {
  for (const key of Object.keys(body)) {
    if (!allowed.has(key)) return RequestFieldError.invalid(key, `not a member of this request (expected ${[...allowed].join(', ')})`);
  }
  return null;
}

/** A body that is not a request at all (not an object, an unknown member) as the one question recorded for it. */
function refused(error: RequestFieldError): AuthZenQuestion {
  return new InvalidRequest(error, UNREADABLE_REQUEST);
}

/**
 * The parsed body of `POST /access/v1/evaluation` as one question; an invalid one
 * (an InvalidRequest naming the field) is recorded and answered 400.
 */
export function readEvaluation(body: unknown): AuthZenQuestion {
  if (!isObject(body)) return refused(RequestFieldError.invalid('(body)', 'must be a JSON object with subject, action and resource'));
  const unknown = unknownKey(body, TOP_LEVEL_KEYS);
  if (unknown) return refused(unknown);
  return readTuple(body as { subject: unknown; action: unknown; resource: unknown; context: unknown }, { subject: 'subject', action: 'action', resource: 'resource', context: 'context' });
}

/**
 * The parsed body of `POST /access/v1/evaluations`. Without an `evaluations`
 * array it is one evaluation, as the specification says. With one, each item's
 * subject, action, resource and context default to the top-level ones; an item's
 * own member replaces the default whole. A body that cannot be read as a whole
 * (bad `evaluations` or `options`, too many items) is one InvalidRequest, answered
 * 400; an item that cannot be read is that item's InvalidRequest, answered in its
 * place with `decision: false`.
 */
export function readEvaluations(body: unknown): EvaluationsRequest | { readonly kind: 'invalid'; readonly question: AuthZenQuestion } {
  if (!isObject(body)) return { kind: 'invalid', question: refused(RequestFieldError.invalid('(body)', 'must be a JSON object with an evaluations array')) };
  const unknown = unknownKey(body, EVALUATIONS_KEYS);
  if (unknown) return { kind: 'invalid', question: refused(unknown) };
  let semantic: EvaluationsSemantic = 'execute_all';
  if (body.options !== undefined) {
    if (!isObject(body.options)) return { kind: 'invalid', question: refused(RequestFieldError.invalid('options', 'must be a JSON object')) };
    const given = body.options.evaluations_semantic;
    if (given !== undefined) {
      if (typeof given !== 'string' || !(EVALUATIONS_SEMANTICS as readonly string[]).includes(given)) {
        return { kind: 'invalid', question: refused(RequestFieldError.invalid('options.evaluations_semantic', `must be one of ${EVALUATIONS_SEMANTICS.join(', ')}`)) };
      }
      semantic = given as EvaluationsSemantic;
    }
  }
  const evaluations = body.evaluations;
  if (evaluations === undefined) {
    return { kind: 'single', question: readTuple(body as { subject: unknown; action: unknown; resource: unknown; context: unknown }, { subject: 'subject', action: 'action', resource: 'resource', context: 'context' }) };
  }
  if (!Array.isArray(evaluations)) return { kind: 'invalid', question: refused(RequestFieldError.invalid('evaluations', 'must be an array of evaluations')) };
  if (evaluations.length > MAX_EVALUATIONS) {
    return { kind: 'invalid', question: refused(RequestFieldError.invalid('evaluations', `${evaluations.length} evaluations exceed the limit of ${MAX_EVALUATIONS} per call`)) };
  }
  const questions = new Array<AuthZenQuestion>(evaluations.length);
  const reads = new MemberReads();
  for (let i = 0; i < evaluations.length; i++) {
    const item: unknown = evaluations[i];
    const at = `evaluations[${i}]`;
    if (!isObject(item)) {
      questions[i] = refused(RequestFieldError.invalid(at, 'must be a JSON object'));
      continue;
    }
    const itemUnknown = unknownKey(item, TOP_LEVEL_KEYS);
    if (itemUnknown) {
      questions[i] = refused(RequestFieldError.invalid(`${at}.${itemUnknown.field}`, 'not a member of an evaluation (expected subject, action, resource, context)'));
      continue;
    }
    const pick = (key: 'subject' | 'action' | 'resource' | 'context'): { value: unknown; field: string } =>
      item[key] !== undefined ? { value: item[key], field: `${at}.${key}` } : { value: body[key], field: key };
    const subject = pick('subject');
    const action = pick('action');
    const resource = pick('resource');
    const context = pick('context');
    questions[i] = readTuple(
      { subject: subject.value, action: action.value, resource: resource.value, context: context.value },
      { subject: subject.field, action: action.field, resource: resource.field, context: context.field },
      reads,
    );
  }
  return { kind: 'many', questions, semantic };
}

/** Whether a semantic stops after this decision: deny_on_first_deny after a deny, permit_on_first_permit after a permit. */
export function stopsAfter(semantic: EvaluationsSemantic): ((decision: Decision) => boolean) | null {
  switch (semantic) {
    case 'execute_all':
      return null;
    case 'deny_on_first_deny':
      return (decision) => decision.effect === 'DENY';
    case 'permit_on_first_permit':
      return (decision) => decision.effect === 'ALLOW';
  }
}

/** An AuthZEN decision: `decision`, and a `context` with verdict's account of it. */
export interface AuthZenDecision {
  readonly decision: boolean;
  readonly context: {
    /** The decision id: the spec's reason object's `id`, and where the decision log keeps it. */
    readonly id: string;
    readonly reason_admin: { readonly en: string };
    readonly reason: Decision['reason'];
    readonly rule_ids: readonly string[];
    readonly errors: readonly { readonly rule_id: string; readonly message: string }[];
    readonly policy_version: string;
    readonly decision_id: string;
    /** For an evaluation that could not be read: what was wrong with it (status 400). */
    readonly error?: { readonly status: number; readonly message: string };
  };
}

const REASON_TEXT: Readonly<Record<Decision['reason'], string>> = {
  ALLOWED_BY_RULE: 'allowed by',
  DENIED_BY_RULE: 'denied by',
  DENIED_BY_DEFAULT: 'no rule allows this request',
  DENIED_BY_RATE_LIMIT: 'rate limited',
  DENIED_BY_ERROR: 'a condition could not be evaluated',
  DENIED_INVALID_REQUEST: 'invalid request',
  DENIED_UNAUTHENTICATED: 'unauthenticated',
  DENIED_BY_SUSPENSION: 'the principal is suspended',
};

/** One recorded decision as the AuthZEN response to its evaluation. */
export function toAuthZenDecision(result: Pick<CheckResult, 'decision' | 'decisionId'>): AuthZenDecision {
  const { decision, decisionId } = result;
  const errors = decision.errors.map((e) => ({ rule_id: e.ruleId, message: e.message }));
  let text = `${decision.reason}: ${REASON_TEXT[decision.reason]}`;
  if (decision.ruleIds.length > 0) text += ` ${decision.ruleIds.join(', ')}`;
  if (decision.errors.length > 0) text += ` (${decision.errors.map((e) => (e.ruleId ? `${e.ruleId}: ${e.message}` : e.message)).join('; ')})`;
  const invalid = decision.reason === 'DENIED_INVALID_REQUEST' && decision.ruleIds.length === 0 ? decision.errors[0] : undefined;
  // Only a caller that is not a listed PEP, asking about someone else, is refused per item as unauthenticated (NOT_A_PEP).
  const forbidden = decision.reason === 'DENIED_UNAUTHENTICATED' ? decision.errors[0] : undefined;
  return {
    decision: decision.effect === 'ALLOW',
    context: {
      id: decisionId,
      reason_admin: { en: text },
      reason: decision.reason,
      rule_ids: decision.ruleIds,
      errors,
      policy_version: decision.policyVersion,
      decision_id: decisionId,
      ...(invalid ? { error: { status: 400, message: invalid.message } } : {}),
      ...(forbidden ? { error: { status: 403, message: forbidden.message } } : {}),
    },
  };
}
