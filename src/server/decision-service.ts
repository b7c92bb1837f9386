import type { DecisionSink } from '../decisions/log-client.js';
import { DecisionReader } from '../decisions/query.js';
import type { DecisionRecord } from '../decisions/record.js';
import { evaluate } from '../engine/evaluate.js';
import type { Decision, DecisionRequest, Reason } from '../types.js';
import type { PolicySet } from '../policy/policy-set.js';
import { VerdictError } from '../errors.js';
import { newDecisionId } from './decision-id.js';
import type { CallMeta, CheckResult, DecisionQuery, GrpcHandlers, PolicyStatus, ReloadOutcome } from './grpc/handlers.js';
import { InvalidRequest, type CheckInput } from './grpc/invalid-request.js';
import type { ServerMetrics } from './metrics.js';
import type { PolicyStore, PolicyStatus as StoreStatus } from './policy-store.js';

/**
 * The decision path shared by every transport: decide with the current policy set,
 * record the decision, and only then answer. A decision that cannot be recorded
 * is never answered as an allow: the append rejects and the caller gets UNAVAILABLE.
 */
export class DecisionService implements GrpcHandlers {
  private reader: DecisionReader | null = null;

  constructor(
    private readonly store: PolicyStore,
    private readonly log: DecisionSink,
    private readonly metrics: ServerMetrics,
    /** Called after an Admin Reload that succeeded (cluster workers tell the others). */
    private readonly onAdminReload?: () => void,
  ) {}

  check(input: CheckInput, meta: CallMeta): Promise<CheckResult> {
    const started = performance.now();
    return this.commit(this.decide(input, meta, started), started);
  }

  checkBatch(inputs: readonly CheckInput[], meta: CallMeta): Promise<readonly CheckResult[]> {
    const started = performance.now();
    // Every item is timed from its own start; all are appended in this turn, so they share one transaction.
    return Promise.all(inputs.map((input) => this.commit(this.decide(input, meta, performance.now()), started)));
  }

  /** Records a decision, then hands it back to be answered; a decision that cannot be recorded is refused. */
  private async commit(made: { decision: Decision; record: DecisionRecord }, started: number): Promise<CheckResult> {
    try {
      await this.log.append(made.record);
    } catch (error) {
      this.metrics.observeLogFailure();
      throw error;
    }
    this.metrics.observeDecision(made.decision, (performance.now() - started) / 1000);
    return { decision: made.decision, decisionId: made.record.decisionId };
  }

  /**
   * The gateways' way in (Envoy ext_authz, forward-auth). `prepare` turns the HTTP
   * request into a decision request with the same policy set the decision then uses
   * (its routes), or refuses it before the engine (failed authentication, no route);
   * a refusal is recorded as a deny like any other decision.
   */
  decideHttp(prepare: (policySet: PolicySet) => PreparedRequest, meta: CallMeta): Promise<CheckResult> {
    const started = performance.now();
    const policySet = this.store.current;
    const { request, refusal } = prepare(policySet);
    const decision: Decision = refusal
      ? { effect: 'DENY', reason: refusal.reason, ruleIds: [], errors: [{ ruleId: refusal.ruleId, message: refusal.message }], policyVersion: policySet.version }
      : evaluate(policySet, request);
    return this.commit({ decision, record: this.toRecord(request, decision, meta, started) }, started);
  }

  private decide(input: CheckInput, meta: CallMeta, started: number): { decision: Decision; record: DecisionRecord } {
    const policySet = this.store.current;
    const invalid = input instanceof InvalidRequest;
    const request: DecisionRequest = invalid ? input.request : input;
    const decision = invalid ? input.decision(policySet.version) : evaluate(policySet, request);
    return { decision, record: this.toRecord(request, decision, meta, started) };
  }

  private toRecord(request: DecisionRequest, decision: Decision, meta: CallMeta, started: number): DecisionRecord {
    const now = Date.now();
    return {
      decisionId: newDecisionId(now),
      time: now,
      caller: meta.caller,
      requestId: meta.requestId,
      principalId: request.principal.id,
      action: request.action,
      resourceType: request.resource.type,
      resourceId: request.resource.id,
      effect: decision.effect,
      reason: decision.reason,
      ruleIds: decision.ruleIds,
      errors: decision.errors,
      policyVersion: decision.policyVersion,
      request: {
        principal: { roles: request.principal.roles, attributes: request.principal.attributes },
        resource: { attributes: request.resource.attributes },
        context: { attributes: request.context.attributes },
      },
      latencyUs: Math.round((performance.now() - started) * 1000),
    };
  }

  policyStatus(): PolicyStatus {
    return toStatus(this.store.status());
  }

  async reload(): Promise<ReloadOutcome> {
    const outcome = await this.store.reload();
    if (outcome.ok) this.onAdminReload?.();
    return { reloaded: outcome.ok, error: outcome.ok ? null : outcome.error, status: toStatus(this.store.status()) };
  }

  getDecision(decisionId: string): DecisionRecord | null {
    return this.readLog().get(decisionId);
  }

  listDecisions(query: DecisionQuery): readonly DecisionRecord[] {
    return this.readLog().query(query);
  }

  /** A read-only connection of its own, opened on first use, so queries never wait on the writer. */
  private readLog(): DecisionReader {
    if (!this.reader) {
      try {
        this.reader = DecisionReader.open(this.log.path);
      } catch (error) {
        throw error instanceof VerdictError ? error : new VerdictError('DECISION_LOG_UNAVAILABLE', String(error));
      }
    }
    return this.reader;
  }

  close(): void {
    this.reader?.close();
    this.reader = null;
  }
}

/** What a gateway adapter hands the decision path for one HTTP request. */
export interface PreparedRequest {
  /** What is recorded, and evaluated unless refused. A refused request carries what could be read (principal id '' when unauthenticated). */
  readonly request: DecisionRequest;
  /** Set when the request is denied before the engine; recorded as the decision's reason and error. */
  readonly refusal: {
    readonly reason: Reason;
    /** Rule id of the recorded error: `authn` for a failed authentication, `route` for a request no route maps. */
    readonly ruleId: string;
    readonly message: string;
  } | null;
}

function toStatus(status: StoreStatus): PolicyStatus {
  return {
    version: status.version,
    loadedAt: status.loadedAt.getTime(),
    ruleCount: status.ruleCount,
    lastReloadError: status.lastReloadError,
    lastReloadAttemptAt: status.lastReloadAttemptAt?.getTime() ?? null,
    lastReloadLongestBlockMs: status.lastReloadLongestBlockMs,
  };
}
