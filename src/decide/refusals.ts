import type { Decision, Reason, SuspensionState } from '../types.js';
import { cutText } from '../cut-text.js';

/**
 * Every refusal verdict makes without the rules deciding, built one way: a
 * Refusal says the reason, the rule id its error is recorded under and why;
 * refusalDecision makes the one Decision shape all refusals share — a DENY that
 * names no deciding rule, with the refusal as its only error.
 *
 * Refused before the engine (the request is recorded, never evaluated): an
 * invalid request, a failed authentication, a request no route maps or whose
 * path cannot be routed. Refused after the engine: a rate limit, which turns
 * an allow into DENIED_BY_RATE_LIMIT; its function belongs here, applied by
 * the pipeline's stage after the engine (pipeline.ts). Refused before the
 * engine too: a suspended principal (suspensions.ts), whatever it asks.
 */
export interface Refusal {
  readonly reason: Reason;
  /** The rule id the refusal's error is recorded under: '' (the request), `authn` or `route`. */
  readonly ruleId: string;
  /** Why, in words for whoever reads the decision log. */
  readonly message: string;
}

/** Rule id of the error recorded for a request that failed validation. */
export const REQUEST_RULE_ID = '';
/** Rule id of the error recorded for a failed authentication. */
export const AUTHN_RULE_ID = 'authn';
/** Rule id of the error recorded for a request no route maps, or one whose path cannot be routed. */
export const ROUTE_RULE_ID = 'route';

/** Rule id of the error recorded for a request whose attributes break the attribute schema. */
export { SCHEMA_RULE_ID } from '../policy/attribute-schema.js';

/** A request that is missing a field or has one that is not valid: `principal.id is required`. */
export function invalidRequest(problem: string): Refusal {
  return { reason: 'DENIED_INVALID_REQUEST', ruleId: REQUEST_RULE_ID, message: problem };
}

/**
 * A credential that was missing or not accepted, recorded as `EXPIRED: token
 * expired at 2025-01-01T00:00:00.000Z` and answered 401 at a gateway.
 */
export function unauthenticated(failure: { readonly reason: string; readonly message: string }): Refusal {
  return { reason: 'DENIED_UNAUTHENTICATED', ruleId: AUTHN_RULE_ID, message: `${failure.reason}: ${failure.message}` };
}

/**
 * An AuthZEN caller that is not one of the policy enforcement points listed in
 * `authzen.peps`, asking about a subject other than itself (or searching for
 * subjects): `NOT_A_PEP: api-key:dana may ask only about subject "dana", not "gus"; …`.
 * Refused before the engine, so it reads no one else's permissions and takes no one
 * else's rate-limit budget; answered 403.
 */
export function notAPep(caller: string, self: string, asked: string): Refusal {
  return { reason: 'DENIED_UNAUTHENTICATED', ruleId: AUTHN_RULE_ID, message: `NOT_A_PEP: ${caller} may ask only about subject ${JSON.stringify(self)}, not ${asked}; list the caller in authzen.peps to let it ask about others` };
}

/**
 * An AuthZEN caller that is not a listed policy enforcement point, asking about
 * itself with `subject.properties`: it is decided with its own credential's roles
 * and attributes, so what it says of itself is refused rather than believed (a key
 * with role viewer would otherwise send `roles: [admin]`); answered 403.
 */
export function selfStatedProperties(caller: string): Refusal {
  return {
    reason: 'DENIED_UNAUTHENTICATED',
    ruleId: AUTHN_RULE_ID,
    message: `NOT_A_PEP: ${caller} is decided with its own credential's roles and attributes and may not state subject.properties; send the subject as {type, id}, or list the caller in authzen.peps`,
  };
}

/** A gateway request that cannot be routed safely or at all: a bad method, no URI, a path with `%2F` or `..`. */
export function unroutable(problem: string): Refusal {
  return { reason: 'DENIED_INVALID_REQUEST', ruleId: ROUTE_RULE_ID, message: problem };
}

/** A gateway request that no route maps: denied by default, like a request no rule matches. */
export function noRoute(method: string, path: string): Refusal {
  return { reason: 'DENIED_BY_DEFAULT', ruleId: ROUTE_RULE_ID, message: `no route matches ${method} ${path}` };
}

/** Rule id of the error recorded for a suspended principal's check. */
export const SUSPENSION_RULE_ID = 'suspension';

/**
 * A principal suspended after an alert, or by an operator:
 * `suspended until 2026-…Z after alert a-1 (probing)`. The answer goes to the suspended
 * caller, so it carries neither the operator's note nor the alert's summary (which
 * names the detector's threshold, to stay under next time): the row's
 * `details.suspension` keeps both.
 */
export function suspended(suspension: SuspensionState): Refusal {
  const why = suspension.alertId === '' ? 'by an operator' : `after alert ${suspension.alertId} (${suspension.alertType})`;
  return { reason: 'DENIED_BY_SUSPENSION', ruleId: SUSPENSION_RULE_ID, message: `suspended until ${new Date(suspension.until).toISOString()} ${why}` };
}

/** The rule id a rate limit's refusal (or error) is recorded under: `limit:<id>`. */
export function limitRuleId(limitId: string): string {
  return `limit:${limitId}`;
}

/** A call the rules allowed that a rate limit refused: `over limit predict-per-user (100/minute, burst 20); retry after 0.6s`. */
export function rateLimited(limitId: string, rate: string, burst: number, retryAfterMs: number): Refusal {
  return {
    reason: 'DENIED_BY_RATE_LIMIT',
    ruleId: limitRuleId(limitId),
    message: `over limit ${limitId} (${rate}, burst ${burst}); retry after ${(Math.ceil(retryAfterMs) / 1000).toFixed(3)}s`,
  };
}

/** A repeat offender blocked by a limit's backoff: `blocked by limit predict-per-user until 2026-…Z (offence 2); retry after 120.000s`. */
export function blocked(limitId: string, until: number, offences: number, retryAfterMs: number): Refusal {
  return {
    reason: 'DENIED_BY_RATE_LIMIT',
    ruleId: limitRuleId(limitId),
    message: `blocked by limit ${limitId} until ${new Date(Math.ceil(until)).toISOString()} (offence ${offences}); retry after ${(Math.ceil(retryAfterMs) / 1000).toFixed(3)}s`,
  };
}

/** A limit whose condition, key or cost could not be evaluated: the call is refused (fail closed). */
export function limitError(limitId: string, message: string): Refusal {
  return { reason: 'DENIED_BY_ERROR', ruleId: limitRuleId(limitId), message };
}

const NO_RULES: readonly string[] = Object.freeze([]);

/**
 * The decision recorded, and answered, for a refusal.
 *
 * @example
 * refusalDecision(noRoute('GET', '/x'), policySet.version);
 * // { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], errors: [{ ruleId: 'route', message: 'no route matches GET /x' }], policyVersion }
 */
export function refusalDecision(refusal: Refusal, policyVersion: string): Decision {
  return { effect: 'DENY', reason: refusal.reason, ruleIds: NO_RULES, errors: [{ ruleId: refusal.ruleId, message: cutText(refusal.message, MAX_REFUSAL_MESSAGE) }], policyVersion };
}

/**
 * The longest refusal message recorded and answered. A message can quote what the
 * caller sent (a field's path, a name); cut here, a refused request cannot make its
 * row, or a batch's thousand rows, as large as itself.
 */
export const MAX_REFUSAL_MESSAGE = 1024;
