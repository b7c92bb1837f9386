import type { Worker } from 'node:worker_threads';
import { VerdictError, messageOf, type ErrorCode } from '../errors.js';
import { startThread } from '../threads.js';
import type { DecisionCount, DecisionFilters, DecisionPage, PageOptions, RowExclusion, StoredDecision, TailDecision } from './query.js';

export type QueryRequest =
  | { readonly id: number; readonly kind: 'get'; readonly decisionId: string }
  | { readonly id: number; readonly kind: 'page'; readonly filters: DecisionFilters; readonly options: PageOptions }
  | { readonly id: number; readonly kind: 'counts'; readonly filters: DecisionFilters; readonly bucketMs: number; readonly exclude: RowExclusion | null }
  | { readonly id: number; readonly kind: 'tail'; readonly afterSeq: number | null; readonly limit: number; readonly exclude: RowExclusion | null };

type Ask = QueryRequest extends infer R ? (R extends { readonly id: number } ? Omit<R, 'id'> : never) : never;

export type QueryResponse =
  | { readonly id: number; readonly decision: StoredDecision | null }
  | { readonly id: number; readonly page: DecisionPage }
  | { readonly id: number; readonly counts: DecisionCount[] }
  | { readonly id: number; readonly tail: { decisions: TailDecision[]; cursor: number } }
  | { readonly id: number; readonly error: string; readonly code: ErrorCode };

type Answer = { readonly decision: StoredDecision | null } | { readonly page: DecisionPage } | { readonly counts: DecisionCount[] } | { readonly tail: { decisions: TailDecision[]; cursor: number } };

/**
 * Queries over the decision log, run in a thread of their own with a read-only
 * connection (DecisionReader), so a long query (a large log, a filter no index
 * serves) never holds up the event loop that answers checks; queries run one at
 * a time, in order. The thread starts on first use and again after it fails;
 * tests run it too (see threads.ts).
 *
 * @example
 * const queries = new DecisionQueryThread('data/decisions.db');
 * const { decisions, next } = await queries.page({ effect: 'DENY' }, { limit: 50 });
 * await queries.close();
 */
export class DecisionQueryThread {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (answer: Answer) => void; reject: (error: Error) => void }>();
  private closed = false;

  constructor(readonly path: string) {}

  /** One page of matching decisions (DecisionReader.page). */
  async page(filters: DecisionFilters, options: PageOptions = {}): Promise<DecisionPage> {
    const answer = await this.ask({ kind: 'page', filters, options });
    if (!('page' in answer)) throw new VerdictError('INTERNAL', 'the decision query thread answered a page with something else');
    return answer.page;
  }

  /** One decision by id, or null. */
  async get(decisionId: string): Promise<StoredDecision | null> {
    const answer = await this.ask({ kind: 'get', decisionId });
    if (!('decision' in answer)) throw new VerdictError('INTERNAL', 'the decision query thread answered a lookup with something else');
    return answer.decision;
  }

  /** Matching decisions counted per time bucket, effect and reason (DecisionReader.counts). */
  async counts(filters: DecisionFilters, bucketMs: number, exclude: RowExclusion | null = null): Promise<DecisionCount[]> {
    const answer = await this.ask({ kind: 'counts', filters, bucketMs, exclude });
    if (!('counts' in answer)) throw new VerdictError('INTERNAL', 'the decision query thread answered counts with something else');
    return answer.counts;
  }

  /** The rows recorded after `afterSeq`, oldest first, as the live tail shows them (DecisionReader.tail). */
  async tail(afterSeq: number | null, limit: number, exclude: RowExclusion | null = null): Promise<{ decisions: TailDecision[]; cursor: number }> {
    const answer = await this.ask({ kind: 'tail', afterSeq, limit, exclude });
    if (!('tail' in answer)) throw new VerdictError('INTERNAL', 'the decision query thread answered a tail with something else');
    return answer.tail;
  }

  /** Queries asked and not answered yet. */
  get inFlight(): number {
    return this.pending.size;
  }

  private ask(request: Ask): Promise<Answer> {
    if (this.closed) return Promise.reject(new VerdictError('DECISION_LOG_UNAVAILABLE', 'the decision query thread is closed (the server is stopping)'));
    const worker = this.thread();
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, ...request } as QueryRequest);
    });
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = startThread(import.meta.url, './query-thread-entry', { workerData: { path: this.path } });
    const fail = (reason: string): void => {
      if (this.worker === worker) this.worker = null;
      for (const [id, { reject }] of this.pending) {
        reject(new VerdictError('DECISION_LOG_UNAVAILABLE', `the decision query thread ${reason}; ask again`));
        this.pending.delete(id);
      }
    };
    worker.on('message', (response: QueryResponse) => {
      const waiting = this.pending.get(response.id);
      if (!waiting) return;
      this.pending.delete(response.id);
      if (this.pending.size === 0) worker.unref();
      if ('error' in response) waiting.reject(new VerdictError(response.code, response.error));
      else waiting.resolve(response);
    });
    worker.on('error', (error) => fail(`failed: ${messageOf(error)}`));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
    worker.unref();
    this.worker = worker;
    return worker;
  }

  /** Stops the thread; queries still running are answered DECISION_LOG_UNAVAILABLE. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    if (worker) {
      await worker.terminate();
      for (const [id, { reject }] of this.pending) {
        reject(new VerdictError('DECISION_LOG_UNAVAILABLE', 'the decision query thread was stopped (the server is stopping)'));
        this.pending.delete(id);
      }
    }
  }
}
