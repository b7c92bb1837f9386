import type { ConditionError, Effect, Reason } from '../types.js';

/**
 * Structured extras of a decision that only some decisions have: a JSON
 * object, stored in the `details` column, chained with the row and exported
 * with it. Its shape is open: a member may be added for any kind of decision
 * without a schema change, so readers must ignore members they do not know.
 * Members so far:
 * - `http`: the method and path of the gateway request that was decided
 *   (forward-auth, Envoy ext_authz).
 * - `limit`: the rate limit that refused the decision, or the tightest that
 *   applied to an allow: `{id, remaining, retryAfterMs, backend}`; `backend` says
 *   which one decided: `memory`, `redis`, `local` or `open`.
 * - `directory`: which facts the principal and resource directories supplied
 *   (`{principal: {roles, ignoredRoles?, attributes, overridden?}, resource: {attributes, overridden?}}`);
 *   the request columns hold the facts decided with.
 * - `authn`: of a refused bearer token, `{tokenSubject}`: its `sub` claim as
 *   written in the token, NOT verified (the token failed verification), kept
 *   only so failures can be counted per token subject (alerts).
 *
 * @example
 * { http: { method: 'POST', path: '/v1/models/fraud-v3/predict' } }
 */
export interface DecisionDetails {
  readonly http?: { readonly method: string; readonly path: string };
  readonly [member: string]: unknown;
}

/** One row of the decision log, as the server hands it to the writer. */
export interface DecisionRecord {
  /** Unique, sortable by time (UUIDv7). */
  readonly decisionId: string;
  /** Milliseconds since the Unix epoch, when the decision was made. */
  readonly time: number;
  /** Who asked: a gateway or service identity, or the peer address. */
  readonly caller: string;
  /** The caller's own id for the request, when it sent one. */
  readonly requestId: string | null;
  readonly principalId: string;
  readonly action: string;
  readonly resourceType: string;
  readonly resourceId: string;
  readonly effect: Effect;
  readonly reason: Reason;
  readonly ruleIds: readonly string[];
  readonly errors: readonly ConditionError[];
  readonly policyVersion: string;
  /** The request's roles and attributes, as JSON-ready data. */
  readonly request: {
    readonly principal: { readonly roles: readonly string[]; readonly attributes: unknown };
    readonly resource: { readonly attributes: unknown };
    readonly context: { readonly attributes: unknown };
  };
  /** Time spent deciding, in microseconds (engine plus limits, not the disk). */
  readonly latencyUs: number;
  /** Extras only some decisions have; absent (or null) for none. */
  readonly details?: DecisionDetails | null;
}
