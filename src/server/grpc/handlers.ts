import type { DecisionRecord } from '../../decisions/record.js';
import type { Decision, Effect, Reason } from '../../types.js';
import type { CheckInput } from './invalid-request.js';

type Awaitable<T> = T | PromiseLike<T>;

/** What the transport knows about a call, beyond its message. */
export interface CallMeta {
  /** Who asked, for the decision log: the peer address unless an identity was established. */
  readonly caller: string;
  /** The caller's request id: the message's `request_id`, else the `x-request-id` header. */
  readonly requestId: string | null;
}

/** A recorded decision: what the engine said and where the log keeps it. */
export interface CheckResult {
  readonly decision: Decision;
  readonly decisionId: string;
}

/**
 * The decision side of the gRPC API. Every input, valid or not, must be
 * recorded before the returned promise resolves; throw a VerdictError with code
 * DECISION_LOG_UNAVAILABLE when it cannot be (the caller gets UNAVAILABLE).
 *
 * For an InvalidRequest, record `input.decision(version)`. A single Check is
 * then answered INVALID_ARGUMENT whatever the result; a batch item is answered
 * with the returned decision, which must not be an ALLOW.
 */
export interface AuthorizationHandlers {
  check(input: CheckInput, meta: CallMeta): Awaitable<CheckResult>;
  /** One result per input, in order. If the shared principal or context is invalid, every input is an InvalidRequest. */
  checkBatch(inputs: readonly CheckInput[], meta: CallMeta): Awaitable<readonly CheckResult[]>;
}

export interface PolicyStatus {
  readonly version: string;
  /** Ms since the epoch; null before any policy set has loaded. */
  readonly loadedAt: number | null;
  readonly ruleCount: number;
  /** Null when the last reload succeeded (or none was tried). */
  readonly lastReloadError: string | null;
  readonly lastReloadAttemptAt: number | null;
  /** The longest the event loop was held at once during the last reload, in ms; null before any reload. */
  readonly lastReloadLongestBlockMs: number | null;
}

export interface ReloadOutcome {
  readonly reloaded: boolean;
  readonly error: string | null;
  readonly status: PolicyStatus;
}

/** Filters of Admin/ListDecisions; an absent field does not filter. Times in ms since the epoch. */
export interface DecisionQuery {
  readonly principalId?: string;
  readonly resourceType?: string;
  readonly resourceId?: string;
  readonly action?: string;
  readonly effect?: Effect;
  readonly reason?: Reason;
  /** Inclusive. */
  readonly since?: number;
  /** Exclusive. */
  readonly until?: number;
  readonly limit?: number;
}

/** The verdict.v1.Admin side. */
export interface AdminHandlers {
  policyStatus(meta: CallMeta): Awaitable<PolicyStatus>;
  reload(meta: CallMeta): Awaitable<ReloadOutcome>;
  /** Null (or a NOT_FOUND VerdictError) when there is no such decision. */
  getDecision(decisionId: string, meta: CallMeta): Awaitable<DecisionRecord | null>;
  /** Newest first. */
  listDecisions(query: DecisionQuery, meta: CallMeta): Awaitable<readonly DecisionRecord[]>;
}

export interface GrpcHandlers extends AuthorizationHandlers, AdminHandlers {}
