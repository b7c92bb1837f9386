import { DecisionQueryThread } from '../decisions/query-thread.js';
import { RequestFieldError } from '../decide/index.js';
import { VerdictError } from '../errors.js';
import { MAX_SUSPENSION_MS } from './alert-response-config.js';
import { decodePageToken, encodePageToken } from '../decisions/query.js';
import type { DecisionRecord } from '../decisions/record.js';
import type { AdminCaller, AdminGate } from './admin-auth.js';
import type { SuspensionState } from '../types.js';
import type { AdminHandlers, DecisionListing, ListDecisionsQuery, SuspendRequest } from './grpc/handlers.js';
import type { SuspensionService } from './suspension.js';
import type { PolicyStatus, PolicyStore, ReloadOutcome } from './policy-store.js';

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
    /** Manual suspension and lifting (server/suspension.ts). */
    private readonly suspensions?: SuspensionService,
  ) {
    this.queries = new DecisionQueryThread(logPath);
  }

  async policyStatus(caller: AdminCaller): Promise<PolicyStatus> {
    await this.gate.admit(caller, { method: 'GetPolicyStatus' });
    return this.store.status();
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

  async suspendPrincipal(request: SuspendRequest, caller: AdminCaller): Promise<SuspensionState> {
    await this.gate.admit(caller, { method: 'SuspendPrincipal', target: request.principalId, parameters: { note: request.note } });
    if (request.principalId === '') throw RequestFieldError.required('principal_id');
    const ms = request.durationMs();
    if (ms === null) throw RequestFieldError.required('duration');
    if (!(ms >= 1000 && ms <= MAX_SUSPENSION_MS)) throw RequestFieldError.invalid('duration', 'must be between 1s and 30d');
    return this.suspensionService().suspendManually(request.principalId, ms, request.note);
  }

  async listSuspensions(caller: AdminCaller): Promise<readonly SuspensionState[]> {
    await this.gate.admit(caller, { method: 'ListSuspensions' });
    return this.suspensionService().list();
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
