/**
 * The vocabulary every part of verdict shares: a decision request and the decision
 * made of it, and the lists of effects and reasons. Types and constants, no
 * behaviour, so any folder may import them.
 */
/** A JSON value as it arrives in a request's attributes. */
export type AttributeValue =
  | null
  | boolean
  | number
  | string
  | readonly AttributeValue[]
  | { readonly [key: string]: AttributeValue };

export type Attributes = { readonly [key: string]: AttributeValue };

export interface Principal {
  readonly id: string;
  readonly roles: readonly string[];
  readonly attributes: Attributes;
}

export interface Resource {
  readonly type: string;
  readonly id: string;
  readonly attributes: Attributes;
}

export interface RequestContext {
  readonly attributes: Attributes;
}

/** "May principal P do action A on resource R, in context C?" */
export interface DecisionRequest {
  readonly principal: Principal;
  readonly action: string;
  readonly resource: Resource;
  readonly context: RequestContext;
}

export const EFFECTS = ['ALLOW', 'DENY'] as const;
export type Effect = (typeof EFFECTS)[number];

/**
 * Why a decision came out as it did: every reason there is, once. The TypeScript
 * union, the configuration and test schemas, the CLI's `--reason` and the gRPC
 * enum (through a checked table) all derive from this list.
 * - ALLOWED_BY_RULE: an allow rule matched and no deny rule did.
 * - DENIED_BY_RULE: a deny rule matched.
 * - DENIED_BY_DEFAULT: no rule matched (or, at a gateway, no route did).
 * - DENIED_BY_RATE_LIMIT: a rate limit refused what the rules allowed.
 * - DENIED_BY_ERROR: a condition could not be evaluated, and failed closed.
 * - DENIED_INVALID_REQUEST: the request was malformed; see the decision's errors.
 * - DENIED_UNAUTHENTICATED: the caller's credential was missing or not accepted (rule id `authn`).
 * - DENIED_BY_SUSPENSION: the principal is suspended after an alert, or by an operator (rule id `suspension`).
 */
export const REASONS = [
  'ALLOWED_BY_RULE',
  'DENIED_BY_RULE',
  'DENIED_BY_DEFAULT',
  'DENIED_BY_RATE_LIMIT',
  'DENIED_BY_ERROR',
  'DENIED_INVALID_REQUEST',
  'DENIED_UNAUTHENTICATED',
  'DENIED_BY_SUSPENSION',
] as const;
export type Reason = (typeof REASONS)[number];

/** The reasons the engine itself gives, so the only ones a policy test can expect. */
export const ENGINE_REASONS = ['ALLOWED_BY_RULE', 'DENIED_BY_RULE', 'DENIED_BY_DEFAULT', 'DENIED_BY_ERROR'] as const satisfies readonly Reason[];

export interface ConditionError {
  readonly ruleId: string;
  readonly message: string;
}

/**
 * The rate limit a decision reports: the one that refused it, or, for an allow,
 * the one with the least budget left among those that applied.
 */
export interface LimitState {
  readonly limitId: string;
  /** Units the limit grants per window (the rate's count), and the window in seconds: `100/minute` is 100 and 60. */
  readonly quota: number;
  readonly windowSeconds: number;
  /** Units that could still be taken now. */
  readonly remaining: number;
  /** When refused, milliseconds until the call would be allowed; 0 for an allow. */
  readonly retryAfterMs: number;
  /** Milliseconds until the key's full burst is available again. */
  readonly resetMs: number;
  /** A repeat offender's block: until when (ms since the epoch), and the offences so far. */
  readonly blockedUntil?: number;
  readonly offences?: number;
  /**
   * Which backend decided: `memory` (this process: the in-memory backend, or a repeat
   * offender's block), `redis`, `local` (Redis's fallback in this process) or `open`
   * (Redis's fallback letting calls through).
   */
  readonly backend?: 'memory' | 'redis' | 'local' | 'open';
}

/** The engine's answer. A decision id is added by whoever records it. */
export interface Decision {
  readonly effect: Effect;
  readonly reason: Reason;
  /** Ids of the rules that decided: the matching denies for a deny, the matching allows for an allow. */
  readonly ruleIds: readonly string[];
  readonly errors: readonly ConditionError[];
  readonly policyVersion: string;
  /** Set by the decide core when a rate limit applied (never by the engine). */
  readonly limit?: LimitState;
  /** Set by the decide core in shadow mode, only where the shadow set's effect differs from this one's (never by the engine). */
  readonly shadow?: ShadowDecision;
  /** Set by the decide core when the request broke the attribute schema under `enforcement: warn` (recorded as `details.schema`). */
  readonly schemaViolations?: readonly string[];
  /** Set by the decide core when the principal is suspended (never by the engine). */
  readonly suspension?: SuspensionState;
}

/** Why a principal's checks are denied for now: the alert (or operator) that suspended it, and until when. */
export interface SuspensionState {
  readonly principalId: string;
  /** When it began and when it ends by itself, ms since the epoch. */
  readonly since: number;
  readonly until: number;
  /** The alert that suspended the principal; '' for a manual suspension. */
  readonly alertId: string;
  /** The alert's type, or `manual`. */
  readonly alertType: string;
  /** The alert's summary, or the operator's note. */
  readonly note: string;
}

/** What the shadow policy set (`shadowPolicies`) decided, beside the live set's answer. */
export interface ShadowDecision {
  readonly effect: Effect;
  readonly reason: Reason;
  readonly ruleIds: readonly string[];
  readonly policyVersion: string;
}
