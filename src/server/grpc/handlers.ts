import type { DecisionRecord } from '../../decisions/record.js';
import type { DecisionFilters } from '../../decisions/query.js';
import type { CallMeta, CheckInput, CheckResult } from '../../decide/index.js';
import type { PolicyStatus, ReloadOutcome } from '../policy-store.js';

// What the gRPC services call: the decide core for Authorization (DecisionPipeline
// is one), the server's Admin for Admin. Tests implement them to drive the
// transport alone.

type Awaitable<T> = T | PromiseLike<T>;

/**
 * The decision side of the gRPC API. Every input, valid or not, must be
 * recorded before the returned promise resolves; reject with a VerdictError
 * DECISION_LOG_UNAVAILABLE when it cannot be (the caller gets UNAVAILABLE).
 * A single invalid Check is then answered INVALID_ARGUMENT whatever the result;
 * an invalid batch item is answered with its decision, which must not be an ALLOW.
 */
export interface AuthorizationHandlers {
  check(input: CheckInput, meta: CallMeta): Awaitable<CheckResult>;
  /** One result per input, in order. If the shared principal or context is invalid, every input is an InvalidRequest. */
  checkBatch(inputs: readonly CheckInput[], meta: CallMeta): Awaitable<readonly CheckResult[]>;
}

/** The verdict.v1.Admin side. */
export interface AdminHandlers {
  policyStatus(): Awaitable<PolicyStatus>;
  /** Reloads now; the outcome, and the status after it. */
  reload(): Awaitable<{ readonly outcome: ReloadOutcome; readonly status: PolicyStatus }>;
  /** Null (or a NOT_FOUND VerdictError) when there is no such decision. */
  getDecision(decisionId: string): Awaitable<DecisionRecord | null>;
  /** Newest first. */
  listDecisions(filters: DecisionFilters): Awaitable<readonly DecisionRecord[]>;
}
