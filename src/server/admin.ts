import { ALERT_TYPES } from '../analysis/detectors.js';
import { VerdictError } from '../errors.js';
import type { AlertFilter, AlertHub, WatchSubscriber } from './alerts.js';
import { DecisionQueryThread } from '../decisions/query-thread.js';
import { RequestFieldError } from '../decide/index.js';
import { MAX_SUSPENSION_MS } from './alert-response-config.js';
import { decodePageToken, encodePageToken } from '../decisions/query.js';
import type { DecisionRecord } from '../decisions/record.js';
import type { AdminCaller, AdminGate } from './admin-auth.js';
import type { SuspensionState } from '../types.js';
import type { AdminHandlers, DecisionListing, LimitsStatus, ListDecisionsQuery, ListSuspensionsQuery, LoadFactorState, SuspendRequest, SuspensionPage } from './grpc/handlers.js';
import { suspensionPage } from './suspension-pages.js';
import type { SuspensionService } from './suspension.js';
import { MAX_POOLS, type LoadBoard } from '../limits/index.js';
import type { CompiledLimit } from '../policy/limits.js';
import type { PolicyStatus, PolicyStore, ReloadOutcome } from './policy-store.js';

/** What Admin needs of the rate limits: the load board ReportLoad writes, and their status. */
export interface LimitsAdmin {
  readonly board: LoadBoard;
  status(): LimitsStatus;
  /** Told of each report the board took (a `--workers` worker passes it to the others). */
  readonly onReport?: (pool: string, load: number) => void;
}

/** The status of the limits of `policySet`: each load-aware limit's factor, and the backend's state. */
export function limitsStatus(limits: readonly CompiledLimit[], board: LoadBoard, backend: LimitsStatus['backend'], backendHealthy: boolean): LimitsStatus {
  const loadFactors: LoadFactorState[] = [];
  for (const limit of limits) {
    if (limit.loadAware === null) continue;
    loadFactors.push({ limitId: limit.id, pool: limit.loadAware.pool, load: board.loadOf(limit.loadAware.pool).load, factor: board.factor(limit.loadAware) });
  }
  return { loadFactors, backend, backendHealthy };
}

/**
 * What verdict.v1.Admin does: report and reload the policies being served, and
 * read the decision log. Every call first passes the admin gate (admin-auth.ts),
 * which records it. Reads run in the decision query thread (a read-only
 * connection of its own, started on first use), so they never wait on the
 * writer nor hold up the checks this process answers; a page is bounded in rows
 * and bytes (query.ts).
 */
export class Admin implements AdminHandlers {
  /** The decision query thread every read of the log by an Admin call goes through (the console's too). */
  readonly queries: DecisionQueryThread;

  constructor(
    private readonly store: PolicyStore,
    logPath: string,
    private readonly gate: AdminGate,
    /** Called after a reload that succeeded (cluster workers tell the others). */
    private readonly onReload?: () => void,
    /** Shadow mode's set: shown in the status, reloaded with the live set. */
    private readonly shadow: PolicyStore | null = null,
    /** The WatchAlerts subscribers; null when alerts are off. */
    private readonly alerts: AlertHub | null = null,
    /** Manual suspension and lifting (server/suspension.ts). */
    private readonly suspensions?: SuspensionService,
    /** The rate limits' load board and backend, for ReportLoad and the status. */
    private readonly limits?: LimitsAdmin,
    /** The replica id, shown in the status. */
    private readonly replicaId?: string,
  ) {
    this.queries = new DecisionQueryThread(logPath);
  }

  async policyStatus(caller: AdminCaller): Promise<PolicyStatus & { limits?: LimitsStatus }> {
    await this.gate.admit(caller, { method: 'GetPolicyStatus' });
    return this.status();
  }

  /** The serving set's status, with the rate limits' and the shadow set's when there are. */
  private status(): PolicyStatus {
    const store = this.store.status();
    const served = this.replicaId === undefined ? store : { ...store, replicaId: this.replicaId };
    const status = this.limits === undefined ? served : { ...served, limits: this.limits.status() };
    if (this.shadow === null) return status;
    const shadow = this.shadow.status();
    return { ...status, shadow: { version: shadow.version, ruleCount: shadow.ruleCount, lastReloadError: shadow.lastReloadError } };
  }

  async reportLoad(pool: string, load: number, caller: AdminCaller): Promise<readonly LoadFactorState[]> {
    await this.gate.admit(caller, { method: 'ReportLoad', target: pool.slice(0, 100), parameters: { load: Number.isFinite(load) ? load : String(load) } });
    if (this.limits === undefined) throw new VerdictError('INTERNAL', 'rate limits are not served here');
    if (!/^[A-Za-z0-9._:-]{1,100}$/.test(pool)) throw new RequestFieldError('pool', 'pool: expected the name a limit\'s loadAware.pool gives (1 to 100 letters, digits, ., _, : or -; "default" when it gives none)');
    if (!Number.isFinite(load) || load < 0 || load > 1) throw new RequestFieldError('load', 'load: expected a number from 0 (idle) to 1 (saturated)');
    if (!this.limits.board.report(pool, load)) throw new RequestFieldError('pool', `pool: ${MAX_POOLS} pools already report load; a new one is refused until a report goes stale`);
    this.limits.onReport?.(pool, load);
    return this.limits.status().loadFactors.filter((f) => f.pool === pool);
  }

  async reload(caller: AdminCaller): Promise<{ outcome: ReloadOutcome; status: PolicyStatus }> {
    await this.gate.admit(caller, { method: 'ReloadPolicies' });
    // The shadow set is reloaded too; its outcome shows in the status (shadow_last_reload_error), never in the live set's.
    const [outcome] = await Promise.all([this.store.reload(), this.shadow?.reload()]);
    if (outcome.ok) this.onReload?.();
    return { outcome, status: this.status() };
  }

  async getDecision(decisionId: string, caller: AdminCaller): Promise<DecisionRecord | null> {
    await this.gate.admit(caller, { method: 'GetDecision', target: decisionId });
    if (decisionId === '') throw RequestFieldError.required('decision_id');
    return this.queries.get(decisionId);
  }

  async listDecisions(query: ListDecisionsQuery, caller: AdminCaller): Promise<DecisionListing> {
    await this.gate.admit(caller, { method: 'ListDecisions', parameters: query.parameters });
    const { filters, pageToken } = query.read();
    // A token that is not ours is refused before any query runs.
    const after = pageToken === '' ? null : decodePageToken(pageToken, filters);
    const page = await this.queries.page(filters, { limit: filters.limit, after });
    return { decisions: page.decisions, nextPageToken: page.next ? encodePageToken(page.next, filters) : '' };
  }

  async watchAlerts(filter: AlertFilter, caller: AdminCaller, subscriber: WatchSubscriber): Promise<() => void> {
    const identity = await this.gate.admit(caller, { method: 'WatchAlerts', parameters: { ...(filter.types.length > 0 ? { types: filter.types } : {}), ...(filter.subjectId !== '' ? { subjectId: filter.subjectId } : {}) } });
    if (this.alerts === null) throw new VerdictError('CONFIG_INVALID', 'alerts are off on this server (alerts.enabled: false in its configuration)');
    for (const type of filter.types) {
      if (!(ALERT_TYPES as readonly string[]).includes(type)) throw RequestFieldError.invalid('types', `unknown alert type ${JSON.stringify(type.slice(0, 40))} (expected one of ${ALERT_TYPES.join(', ')})`);
    }
    // A stream ends when what admitted it no longer does (a rotated token, a revoked certificate): the client's next call meets the gate again.
    const unsubscribe = this.alerts.subscribe(filter, subscriber);
    const stopListening = this.gate.whileAdmissionHolds(identity, () => {
      unsubscribe();
      subscriber.revoked();
    });
    return () => {
      stopListening();
      unsubscribe();
    };
  }

  async suspendPrincipal(request: SuspendRequest, caller: AdminCaller): Promise<SuspensionState> {
    await this.gate.admit(caller, { method: 'SuspendPrincipal', target: request.principalId, parameters: { note: request.note } });
    if (request.principalId === '') throw RequestFieldError.required('principal_id');
    const ms = request.durationMs();
    if (ms === null) throw RequestFieldError.required('duration');
    if (!(ms >= 1000 && ms <= MAX_SUSPENSION_MS)) throw RequestFieldError.invalid('duration', 'must be between 1s and 30d');
    return this.suspensionService().suspendManually(request.principalId, ms, request.note);
  }

  async listSuspensions(request: ListSuspensionsQuery, caller: AdminCaller): Promise<SuspensionPage> {
    const parameters = { ...(request.pageSize !== 0 ? { pageSize: request.pageSize } : {}), ...(request.pageToken !== '' ? { pageToken: request.pageToken } : {}) };
    await this.gate.admit(caller, { method: 'ListSuspensions', parameters });
    return suspensionPage(this.suspensionService().list(), request.pageSize, request.pageToken);
  }

  async liftSuspension(principalId: string, caller: AdminCaller): Promise<SuspensionState | null> {
    await this.gate.admit(caller, { method: 'LiftSuspension', target: principalId });
    if (principalId === '') throw RequestFieldError.required('principal_id');
    return this.suspensionService().lift(principalId) ?? null;
  }

  private suspensionService(): SuspensionService {
    if (this.suspensions === undefined) throw new VerdictError('INTERNAL', 'this server keeps no suspensions');
    return this.suspensions;
  }

  /** Stops the query thread (queries in flight are answered UNAVAILABLE). */
  async close(): Promise<void> {
    await this.queries.close();
  }
}
