import type { Worker } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import type { VerifyBreak } from '../audit/report.js';
import { startThread } from '../threads.js';

/** What the console shows of the audit trail: how far the chain is verified intact, and the last signed checkpoint. */
export interface AuditState {
  /** When this state was computed, epoch ms. */
  readonly checkedAt: number;
  /** Whether the whole log was verified, or only the rows since the previous pass. */
  readonly pass: 'full' | 'incremental';
  readonly ok: boolean;
  /** The chain is intact from its start up to this seq (null: no rows yet, or broken before any). */
  readonly verifiedThrough: number | null;
  readonly rows: number;
  readonly start: { readonly seq: number; readonly from: 'genesis' | 'anchor' | 'checkpoint' | 'unanchored' };
  /** The last checkpoint whose signature and hash were verified. */
  readonly lastCheckpoint: { readonly seq: number; readonly timeMs: number; readonly keyId: string } | null;
  readonly checkpoints: { readonly total: number; readonly verified: number };
  /** Rows after the last verified checkpoint, chained but not yet signed. */
  readonly unsignedRows: number;
  readonly break: VerifyBreak | null;
  /** When the last full pass ran, epoch ms. */
  readonly lastFullAt: number | null;
  /** Why the log could not be verified at all (no log yet, not readable). */
  readonly error: string | null;
}

/** workerData of console-audit-entry.ts. */
export interface AuditThreadData {
  readonly path: string;
  readonly publicKeyPath: string | null;
  readonly fullEveryMs: number;
}

export interface AuditWatchOptions {
  /** A state younger than this is served as it is. Default 5 s. */
  readonly maxAgeMs?: number;
  /** A full pass (every row again) at least this often; in between, only new rows and checkpoints. Default 10 min. */
  readonly fullEveryMs?: number;
}

/**
 * The audit trail's state for the console, verified in a thread of its own
 * (the code of `verdict audit verify`, src/audit) so that a large log never
 * stalls the checks: the first pass is full, later ones verify only the rows
 * and checkpoints recorded since, and every `fullEveryMs` the whole log again
 * (so a change to old rows shows within that period). Concurrent askers share
 * one pass; a state younger than `maxAgeMs` is served from the cache.
 */
export class AuditWatch {
  private worker: Worker | null = null;
  private state: AuditState | null = null;
  private running: Promise<AuditState> | null = null;
  private closed = false;
  private readonly maxAgeMs: number;
  private readonly fullEveryMs: number;

  constructor(
    private readonly path: string,
    private readonly publicKeyPath: string | null,
    options: AuditWatchOptions = {},
  ) {
    this.maxAgeMs = options.maxAgeMs ?? 5_000;
    this.fullEveryMs = options.fullEveryMs ?? 600_000;
  }

  /** The latest state: cached when fresh, else the result of a pass (shared by everyone asking meanwhile). */
  current(): Promise<AuditState> {
    if (this.state !== null && Date.now() - this.state.checkedAt < this.maxAgeMs) return Promise.resolve(this.state);
    this.running ??= this.pass().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private pass(): Promise<AuditState> {
    if (this.closed) return Promise.resolve(this.failed('the server is stopping'));
    const worker = this.thread();
    return new Promise((resolve) => {
      const done = (state: AuditState): void => {
        worker.off('message', done);
        worker.off('exit', exited);
        worker.unref();
        this.state = state;
        resolve(state);
      };
      const exited = (code: number): void => {
        worker.off('message', done);
        resolve(this.failed(`the audit thread exited with code ${code}`));
      };
      worker.on('message', done);
      worker.once('exit', exited);
      worker.ref();
      worker.postMessage('refresh');
    });
  }

  private failed(error: string): AuditState {
    return { checkedAt: Date.now(), pass: 'full', ok: false, verifiedThrough: null, rows: 0, start: { seq: 0, from: 'genesis' }, lastCheckpoint: null, checkpoints: { total: 0, verified: 0 }, unsignedRows: 0, break: null, lastFullAt: null, error };
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const data: AuditThreadData = { path: this.path, publicKeyPath: this.publicKeyPath, fullEveryMs: this.fullEveryMs };
    const worker = startThread(import.meta.url, './console-audit-entry', { workerData: data });
    worker.on('error', (error) => {
      this.state = this.failed(`the audit thread failed: ${messageOf(error)}`);
    });
    worker.on('exit', () => {
      if (this.worker === worker) this.worker = null;
    });
    worker.unref();
    this.worker = worker;
    return worker;
  }

  /** Stops the thread. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.terminate();
  }
}
