import { DecisionQueryThread } from '../decisions/query-thread.js';
import { RequestFieldError } from '../decide/index.js';
import { decodePageToken, encodePageToken } from '../decisions/query.js';
import type { DecisionRecord } from '../decisions/record.js';
import type { AdminCaller, AdminGate } from './admin-auth.js';
import type { AdminHandlers, DecisionListing, LimitsStatus, ListDecisionsQuery, LoadFactorState } from './grpc/handlers.js';
import { MAX_POOLS, type LoadBoard } from '../limits/index.js';
import type { CompiledLimit } from '../policy/limits.js';
import { VerdictError } from '../errors.js';
import type { PolicyStatus, PolicyStore, ReloadOutcome } from './policy-store.js';

/** What Admin needs of the rate limits: the load board ReportLoad writes, and their status. */
export interface LimitsAdmin {
  readonly board: LoadBoard;
  status(): LimitsStatus;
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
  private readonly queries: DecisionQueryThread;

  constructor(
    private readonly store: PolicyStore,
    logPath: string,
    private readonly gate: AdminGate,
    /** Called after a reload that succeeded (cluster workers tell the others). */
    private readonly onReload?: () => void,
    /** The rate limits' load board and backend, for ReportLoad and the status. */
    private readonly limits?: LimitsAdmin,
  ) {
    this.queries = new DecisionQueryThread(logPath);
  }

  async policyStatus(caller: AdminCaller): Promise<PolicyStatus & { limits?: LimitsStatus }> {
    await this.gate.admit(caller, { method: 'GetPolicyStatus' });
    const status = this.store.status();
    return this.limits === undefined ? status : { ...status, limits: this.limits.status() };
  }

  async reportLoad(pool: string, load: number, caller: AdminCaller): Promise<readonly LoadFactorState[]> {
    await this.gate.admit(caller, { method: 'ReportLoad', target: pool.slice(0, 100), parameters: { load: Number.isFinite(load) ? load : String(load) } });
    if (this.limits === undefined) throw new VerdictError('INTERNAL', 'rate limits are not served here');
    if (!/^[A-Za-z0-9._:-]{1,100}$/.test(pool)) throw new RequestFieldError('pool', 'pool: expected the name a limit\'s loadAware.pool gives (1 to 100 letters, digits, ., _, : or -; "default" when it gives none)');
    if (!Number.isFinite(load) || load < 0 || load > 1) throw new RequestFieldError('load', 'load: expected a number from 0 (idle) to 1 (saturated)');
    if (!this.limits.board.report(pool, load)) throw new RequestFieldError('pool', `pool: ${MAX_POOLS} pools already report load; a new one is refused until a report goes stale`);
    return this.limits.status().loadFactors.filter((f) => f.pool === pool);
  }

  async reload(caller: AdminCaller): Promise<{ outcome: ReloadOutcome; status: PolicyStatus }> {
    await this.gate.admit(caller, { method: 'ReloadPolicies' });
    const outcome = await this.store.reload();
    if (outcome.ok) this.onReload?.();
    return { outcome, status: this.store.status() };
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

  /** Stops the query thread (queries in flight are answered UNAVAILABLE). */
  async close(): Promise<void> {
    await this.queries.close();
  }
}
