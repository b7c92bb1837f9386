import { DecisionReader, type DecisionFilters } from '../decisions/query.js';
import type { DecisionRecord } from '../decisions/record.js';
import { VerdictError } from '../errors.js';
import type { AdminHandlers } from './grpc/handlers.js';
import type { PolicyStatus, PolicyStore, ReloadOutcome } from './policy-store.js';

/**
 * What verdict.v1.Admin does: report and reload the policies being served, and
 * read the decision log. Reads go through a read-only connection of their own,
 * opened on first use, so they never wait on the writer.
 */
export class Admin implements AdminHandlers {
  private reader: DecisionReader | null = null;

  constructor(
    private readonly store: PolicyStore,
    private readonly logPath: string,
    /** Called after a reload that succeeded (cluster workers tell the others). */
    private readonly onReload?: () => void,
  ) {}

  policyStatus(): PolicyStatus {
    return this.store.status();
  }

  async reload(): Promise<{ outcome: ReloadOutcome; status: PolicyStatus }> {
    const outcome = await this.store.reload();
    if (outcome.ok) this.onReload?.();
    return { outcome, status: this.store.status() };
  }

  getDecision(decisionId: string): DecisionRecord | null {
    return this.readLog().get(decisionId);
  }

  listDecisions(filters: DecisionFilters): readonly DecisionRecord[] {
    return this.readLog().query(filters);
  }

  private readLog(): DecisionReader {
    if (!this.reader) {
      try {
        this.reader = DecisionReader.open(this.logPath);
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
