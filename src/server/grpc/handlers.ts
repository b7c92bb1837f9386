import type { DecisionRecord } from '../../decisions/record.js';
import type { DecisionFilters } from '../../decisions/query.js';
import type { BatchOptions, CallMeta, CheckInput, CheckResult, SettleOutcome } from '../../decide/index.js';
import type { SuspensionState } from '../../types.js';
import type { AdminCaller } from '../admin-auth.js';
import type { AlertFilter, WatchSubscriber } from '../alerts.js';
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
  /**
   * One result per input, in order. If the shared principal or context is invalid, every input is an InvalidRequest.
   * Rejects with BatchRefused (answered INVALID_ARGUMENT) for a batch refused whole, its refusal recorded.
   */
  checkBatch(inputs: readonly CheckInput[], meta: CallMeta, options?: BatchOptions): Awaitable<readonly CheckResult[]>;
  /** Corrects a decision's cost budget (recorded either way); absent: Settle is UNIMPLEMENTED. `actualUnits` undefined: not sent (refused). */
  settle?(decisionId: string, actualUnits: number | undefined, meta: CallMeta): Awaitable<SettleOutcome>;
}

/** One page of ListDecisions. */
export interface DecisionListing {
  /** Newest first. */
  readonly decisions: readonly DecisionRecord[];
  /** The token of the next page; '' when this is the last. */
  readonly nextPageToken: string;
}

/**
 * A ListDecisions request: its parameters as they arrived (what the call's record
 * shows), and how to read them, which may throw for invalid input; it is asked
 * after the caller was admitted and recorded, so an invalid call is recorded too.
 */
export interface ListDecisionsQuery {
  readonly parameters: Readonly<Record<string, unknown>>;
  /** `filters.limit` is the page size (the log clamps it); `pageToken` is '' for the first page. */
  read(): { readonly filters: DecisionFilters; readonly pageToken: string };
}

/**
 * The verdict.v1.Admin side. Each method is given the caller as the transport
 * saw it (certificate, token, address), to be admitted (admin-auth.ts) and recorded.
 */
/** The factor a pool's load puts on a load-aware limit's rate now. */
export interface LoadFactorState {
  readonly limitId: string;
  readonly pool: string;
  readonly load: number;
  readonly factor: number;
}

/** The rate limits' part of the policy status. */
export interface LimitsStatus {
  readonly loadFactors: readonly LoadFactorState[];
  readonly backend: 'memory' | 'redis';
  readonly backendHealthy: boolean;
}

export interface AdminHandlers {
  policyStatus(caller: AdminCaller): Awaitable<PolicyStatus & { readonly limits?: LimitsStatus }>;
  /** Records a pool's load (0..1); the factors of its load-aware limits after it. Absent: UNIMPLEMENTED. */
  reportLoad?(pool: string, load: number, caller: AdminCaller): Awaitable<readonly LoadFactorState[]>;
  /** Reloads now; the outcome, and the status after it. */
  reload(caller: AdminCaller): Awaitable<{ readonly outcome: ReloadOutcome; readonly status: PolicyStatus }>;
  /** Null (or a NOT_FOUND VerdictError) when there is no such decision. */
  getDecision(decisionId: string, caller: AdminCaller): Awaitable<DecisionRecord | null>;
  /** One page, newest first; see ListDecisionsQuery. */
  listDecisions(query: ListDecisionsQuery, caller: AdminCaller): Awaitable<DecisionListing>;
  /**
   * WatchAlerts: admits (and records) the caller, then streams alerts to
   * `subscriber` until the returned function is called, or until the credential
   * the caller was admitted with is withdrawn (`revoked`). Absent: UNIMPLEMENTED.
   */
  watchAlerts?(filter: AlertFilter, caller: AdminCaller, subscriber: WatchSubscriber): Promise<() => void>;
  /** Suspends a principal for `durationMs` (null when the request gave none: refuse it after admitting the caller). */
  suspendPrincipal(request: SuspendRequest, caller: AdminCaller): Awaitable<SuspensionState>;
  /** A page of the suspensions in force, soonest to end first (INVALID_ARGUMENT for a bad page_size or page_token, after admitting the caller). */
  listSuspensions(request: ListSuspensionsQuery, caller: AdminCaller): Awaitable<SuspensionPage>;
  /** The suspension lifted, or null (or a NOT_FOUND VerdictError) when the principal had none. */
  liftSuspension(principalId: string, caller: AdminCaller): Awaitable<SuspensionState | null>;
}

/** A ListSuspensions request as the transport read it (proto3 defaults: 0 and ''). */
export interface ListSuspensionsQuery {
  readonly pageSize: number;
  readonly pageToken: string;
}

/** A page of suspensions and where the next starts ('' on the last). */
export interface SuspensionPage {
  readonly suspensions: readonly SuspensionState[];
  readonly nextPageToken: string;
}

/** A SuspendPrincipal request as the transport read it. */
export interface SuspendRequest {
  readonly principalId: string;
  /** How long, in ms; null when the request gave none. May throw RequestFieldError: ask after admitting the caller. */
  durationMs(): number | null;
  readonly note: string;
}
