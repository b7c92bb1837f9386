import fs from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import { GENESIS_HASH, chainHashAt } from './chain.js';
import { Listeners } from './listeners.js';
import { signCheckpoint } from './checkpoint.js';
import type { CheckpointSigner } from './keys.js';
import type { DecisionRecord } from './record.js';
import { closedLogError, storedRow, type DecisionRow } from './row.js';
import { migrate } from './schema.js';
import type { SensitiveAttributes } from './sensitive.js';

/**
 * `durable` (the default): an append resolves only once its row is committed
 * with `synchronous=FULL`, i.e. fsynced to the write-ahead log.
 *
 * `async`: an append resolves at once and its row is written in the next batch,
 * with `synchronous=NORMAL`. A process crash loses the rows still queued (the
 * last few milliseconds of decisions), and a power cut may also lose the last
 * committed transactions; the file itself stays consistent. Those decisions
 * were already answered. If a batch fails, its acknowledged rows are kept and
 * retried, the failure is reported (`onWriteError`, `onHealthChange`,
 * `lastError`), and until the log is healthy again new appends wait for their
 * commit as in durable mode, so nothing is allowed without being recorded.
 */
export type DecisionLogMode = 'durable' | 'async';

export interface DecisionLogOptions {
  readonly mode?: DecisionLogMode;
  /**
   * How long a write waits for another connection's lock before failing.
   * Writes block the event loop, so keep this short. Default 500.
   */
  readonly busyTimeoutMs?: number;
  /** In async mode, how soon a failed batch of acknowledged rows is retried without new traffic. Default 1000. */
  readonly retryDelayMs?: number;
  /** Signed checkpoints over the chain; none when absent (tools and tests that only append). */
  readonly checkpoints?: CheckpointOptions;
  /** Attributes stored as their keyed HMAC instead of their value. */
  readonly sensitive?: SensitiveAttributes;
  /**
   * BENCHMARKING ONLY. false writes rows without prev_hash and hash and signs no
   * checkpoints, to measure what the chain costs. Such a log never verifies.
   * Default true.
   */
  readonly chain?: boolean;
}

/**
 * When the writer signs a checkpoint: at the end of the batch in which at least
 * `everyRows` rows have gone unsigned, and once rows have been unsigned for
 * `everySeconds` (then by a timer if no batch comes). Signing costs one Ed25519
 * signature (~30 µs) inside a transaction that is being fsynced anyway, so it
 * stays off the per-check path.
 */
export interface CheckpointOptions {
  readonly signer: CheckpointSigner;
  readonly everyRows: number;
  readonly everySeconds: number;
}

/** What the audit trail of a writer looks like now (for readiness and status pages). */
export interface AuditStatus {
  readonly chain: boolean;
  readonly sensitiveAttributes: readonly string[];
  readonly checkpoints: {
    readonly keyId: string;
    readonly everyRows: number;
    readonly everySeconds: number;
    /** The newest signed seq this writer knows of; 0 before the first. */
    readonly lastSeq: number;
    readonly lastTimeMs: number | null;
    /** Committed rows after lastSeq. */
    readonly unsignedRows: number;
  } | null;
}

/** One committed transaction. */
export interface CommitStats {
  readonly rows: number;
  readonly durationMs: number;
}

export interface HealthState {
  readonly healthy: boolean;
  readonly lastError: string | null;
}

/** A batch that could not be written, or rows the database refused. */
export interface WriteFailure {
  readonly error: VerdictError;
  /** Rows in the failed batch (or refused rows). */
  readonly rows: number;
  /**
   * Of those, rows whose append had already resolved (async mode). After a batch
   * failure they are kept and retried; rows the database refused (a duplicate
   * decision id) are not, and this is the only report of them.
   */
  readonly acknowledgedRows: number;
}

interface Waiter {
  resolve(): void;
  reject(error: VerdictError): void;
}

interface Entry {
  readonly row: DecisionRow;
  /** null once the append has resolved (async mode). */
  readonly waiter: Waiter | null;
}

type InsertParams = [
  number, string, number, string, string | null, string, string, string, string,
  string, string, string, string, string, string, number, Buffer | null, Buffer | null,
];

type CheckpointParams = [kind: string, seq: number, hash: Buffer, timeMs: number, keyId: string, signature: Buffer];

interface Connection {
  readonly db: Database.Database;
  readonly insert: Database.Statement<InsertParams>;
  readonly tip: Database.Statement<[], { seq: number; hash: Buffer | null }>;
  /** The prune anchor: where the chain continues when every row has been pruned. */
  readonly anchor: Database.Statement<[], { seq: number; hash: Buffer }>;
  readonly lastCheckpoint: Database.Statement<[], { seq: number; time_ms: number }>;
  readonly insertCheckpoint: Database.Statement<CheckpointParams>;
  readonly probe: Database.Statement<[number]>;
  readonly dev: bigint;
  readonly ino: bigint;
}

class FileMovedError extends Error {}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * The durable decision log: every decision gets a row, hash-chained, before its
 * answer leaves the server. Concurrent appends share one transaction (group
 * commit), so durability costs one fsync per batch rather than per decision.
 *
 * The writes are synchronous (better-sqlite3) and run in a setImmediate after
 * the appends of one event-loop turn; the event loop waits for that fsync.
 * One process owns a log file; readers use their own read-only connection
 * (see query.ts) and never block the writer.
 *
 * @example
 * const log = DecisionLog.open('data/decisions.db', { mode: 'durable' });
 * log.onHealthChange(({ healthy, lastError }) => logger.warn({ healthy, lastError }, 'decision log'));
 * await log.append(record); // rejects with VerdictError('DECISION_LOG_UNAVAILABLE') => deny
 * await log.close();
 */
export class DecisionLog {
  readonly path: string;
  readonly mode: DecisionLogMode;
  private readonly busyTimeoutMs: number;
  private readonly retryDelayMs: number;
  private conn: Connection | null;
  private queue: Entry[] = [];
  /** Acknowledged rows of failed batches, oldest first. */
  private retry: Entry[] = [];
  private flushWaiters: Waiter[] = [];
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private closing = false;
  private closed = false;
  private closePromise: Promise<void> | null = null;
  private isHealthy = true;
  private error: string | null = null;
  private readonly healthListeners = new Listeners<HealthState>();
  private readonly commitListeners = new Listeners<CommitStats>();
  private readonly errorListeners = new Listeners<WriteFailure>();
  private readonly chain: boolean;
  private readonly checkpoints: CheckpointOptions | null;
  private readonly sensitive: SensitiveAttributes | null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  /** Set by the timer: the next transaction signs whatever is unsigned. */
  private checkpointDue = false;
  /** Committed tip and newest signed seq, as of the last commit (hints; the database is the truth). */
  private tipSeq = 0;
  private signedSeq = 0;
  private signedAtMs: number | null = null;
  private readonly openedAtMs = Date.now();

  private constructor(path: string, mode: DecisionLogMode, options: DecisionLogOptions, conn: Connection) {
    this.path = path;
    this.mode = mode;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 500;
    this.retryDelayMs = options.retryDelayMs ?? 1000;
    this.conn = conn;
    this.chain = options.chain ?? true;
    this.checkpoints = this.chain ? (options.checkpoints ?? null) : null;
    this.sensitive = options.sensitive ?? null;
    this.readSigned(conn);
    if (this.checkpoints !== null) {
      this.checkpointTimer = setInterval(() => {
        if (this.tipSeq > this.signedSeq && !this.closing) {
          this.checkpointDue = true;
          this.schedule();
        }
      }, this.checkpoints.everySeconds * 1000);
      // A checkpoint timer must not keep a finished process alive; close() signs the tail.
      this.checkpointTimer.unref();
    }
  }

  /**
   * Open (creating it and its directory if needed) and migrate the log. Sets
   * WAL and the mode's `synchronous` level and reads both back.
   * @throws VerdictError DECISION_LOG_UNAVAILABLE, or DECISION_LOG_CORRUPT for a file that is not a decision log
   */
  static open(path: string, options: DecisionLogOptions = {}): DecisionLog {
    const mode = options.mode ?? 'durable';
    if (mode !== 'durable' && mode !== 'async') {
      throw new VerdictError('CONFIG_INVALID', `decision log mode must be "durable" or "async", not ${JSON.stringify(mode)}`);
    }
    const busyTimeoutMs = options.busyTimeoutMs ?? 500;
    const cp = options.checkpoints;
    if (cp !== undefined && !(Number.isSafeInteger(cp.everyRows) && cp.everyRows >= 1 && Number.isFinite(cp.everySeconds) && cp.everySeconds > 0)) {
      throw new VerdictError('CONFIG_INVALID', `checkpoints need everyRows >= 1 and everySeconds > 0, not ${cp.everyRows} and ${cp.everySeconds}`);
    }
    try {
      fs.mkdirSync(dirname(path), { recursive: true });
    } catch (error) {
      throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot create the directory of the decision log ${path}: ${messageOf(error)}`, { cause: error });
    }
    const conn = openConnection(path, mode, busyTimeoutMs);
    return new DecisionLog(path, mode, options, conn);
  }

  /** False from a failed write until a write (or probe) succeeds again. */
  get healthy(): boolean {
    return this.isHealthy;
  }

  /** Why the last write failed, with what to do; null while healthy. */
  get lastError(): string | null {
    return this.error;
  }

  /** Rows appended but not yet committed (queued, or waiting for a retry). */
  get pendingRows(): number {
    return this.queue.length + this.retry.length;
  }

  /**
   * The writer connection's settings as SQLite reports them (for status pages
   * and tests); null while the file is closed after a failure.
   */
  pragmas(): { journalMode: string; synchronous: number; busyTimeoutMs: number } | null {
    const db = this.conn?.db;
    if (db === undefined) return null;
    return {
      journalMode: String(db.pragma('journal_mode', { simple: true })),
      synchronous: Number(db.pragma('synchronous', { simple: true })),
      busyTimeoutMs: Number(db.pragma('busy_timeout', { simple: true })),
    };
  }

  /** The chain, checkpoint and sensitive-attribute settings, and how far the log is signed. */
  auditStatus(): AuditStatus {
    const cp = this.checkpoints;
    return {
      chain: this.chain,
      sensitiveAttributes: this.sensitive?.paths.map((p) => p.text) ?? [],
      checkpoints:
        cp === null
          ? null
          : {
              keyId: cp.signer.keyId,
              everyRows: cp.everyRows,
              everySeconds: cp.everySeconds,
              lastSeq: this.signedSeq,
              lastTimeMs: this.signedAtMs,
              unsignedRows: Math.max(0, this.tipSeq - this.signedSeq),
            },
    };
  }

  /** Called when `healthy` or `lastError` changes. Returns an unsubscribe function. */
  onHealthChange(listener: (state: HealthState) => void): () => void {
    return this.healthListeners.add(listener);
  }

  /** Called after every committed batch, e.g. to feed batch-size and commit-time metrics. */
  onCommit(listener: (stats: CommitStats) => void): () => void {
    return this.commitListeners.add(listener);
  }

  /** Called for every failed batch and for rows the database refused. */
  onWriteError(listener: (failure: WriteFailure) => void): () => void {
    return this.errorListeners.add(listener);
  }

  /**
   * Queue a decision for the next batch. Durable mode: resolves once committed.
   * Async mode while healthy: resolves at once.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE when the row could not be
   *   written (the decision must then be denied), INTERNAL when the record cannot be
   *   serialised or the database refused it (duplicate decision id)
   */
  append(record: DecisionRecord): Promise<void> {
    if (this.closing) return Promise.reject(closedLogError(this.path));
    let row: DecisionRow;
    try {
      row = storedRow(record, this.sensitive);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.appendRow(row, this.mode === 'async' && this.isHealthy);
  }

  /**
   * Queue a row that is already serialised (see toRow), for a writer serving
   * another thread or process. `acknowledged`: its decision was already
   * answered (async mode), so the promise resolves at once and a failed batch
   * keeps the row for a retry instead of rejecting it.
   */
  appendRow(row: DecisionRow, acknowledged: boolean): Promise<void> {
    if (this.closing) return Promise.reject(closedLogError(this.path));
    if (acknowledged) {
      this.queue.push({ row, waiter: null });
      this.schedule();
      return RESOLVED;
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ row, waiter: { resolve, reject } });
      this.schedule();
    });
  }

  /**
   * Write everything queued so far (async rows waiting for a retry included).
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE if that batch failed
   */
  flush(): Promise<void> {
    if (this.queue.length === 0 && this.retry.length === 0) return RESOLVED;
    return new Promise<void>((resolve, reject) => {
      this.flushWaiters.push({ resolve, reject });
      this.schedule();
    });
  }

  /**
   * Try a tiny write transaction now, reopening the file if it had failed. For
   * health checks: notices a failure before a decision does, and recovery
   * without waiting for traffic.
   */
  probe(): boolean {
    if (this.closing) return false;
    try {
      const conn = this.connection();
      conn.db
        .transaction(() => {
          conn.probe.run(Date.now());
          this.checkIdentity(conn);
        })
        .immediate();
    } catch (error) {
      this.markUnhealthy(this.failure(error).message);
      return false;
    }
    this.markHealthy();
    if (this.retry.length > 0) this.schedule();
    return true;
  }

  /**
   * Flush, then close the database. Later appends reject.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE if rows already acknowledged in async mode could not be written
   */
  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    let failure: unknown = null;
    try {
      await this.flush();
    } catch (error) {
      failure = error;
    }
    if (this.checkpointTimer !== null) clearInterval(this.checkpointTimer);
    this.checkpointTimer = null;
    if (failure === null && this.checkpoints !== null && this.tipSeq > this.signedSeq) {
      // Sign the tail on a clean stop, so a log at rest is covered up to its last row.
      try {
        this.checkpointDue = true;
        this.writeBatch([]);
      } catch (error) {
        // The rows are committed and chained; the next start signs them.
        this.errorListeners.emit({ error: this.failure(error), rows: 0, acknowledgedRows: 0 });
      }
    }
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const lost = this.retry.length;
    this.retry = [];
    this.closed = true;
    this.dropConnection();
    if (lost > 0) {
      throw new VerdictError(
        'DECISION_LOG_UNAVAILABLE',
        `${lost} decision(s) acknowledged in async mode were never written to ${this.path}: ${messageOf(failure)}`,
        { cause: failure },
      );
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // setImmediate, not a microtask: every append made in this turn of the
    // event loop (all the requests that arrived together) joins the batch.
    setImmediate(() => this.runBatch());
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null || this.closing) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.retry.length > 0) this.schedule();
    }, this.retryDelayMs);
    // A pending retry must not keep a finished process alive; close() reports what it could not write.
    this.retryTimer.unref();
  }

  private runBatch(): void {
    this.scheduled = false;
    const entries = this.retry.length > 0 ? this.retry.concat(this.queue) : this.queue;
    this.retry = [];
    this.queue = [];
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    if (entries.length === 0 && !(this.checkpointDue && !this.closed)) {
      for (const waiter of waiters) waiter.resolve();
      return;
    }

    const started = performance.now();
    let refused: Array<{ entry: Entry; error: VerdictError }>;
    try {
      refused = this.writeBatch(entries);
    } catch (error) {
      this.failBatch(entries, waiters, error);
      return;
    }
    const durationMs = performance.now() - started;

    this.markHealthy();
    const refusedSet = new Set(refused.map((r) => r.entry));
    for (const entry of entries) {
      if (!refusedSet.has(entry)) entry.waiter?.resolve();
    }
    for (const { entry, error } of refused) {
      entry.waiter?.reject(error);
      // For an already acknowledged row this report is all that is left of it.
      this.errorListeners.emit({ error, rows: 1, acknowledgedRows: entry.waiter === null ? 1 : 0 });
    }
    if (entries.length > 0) this.commitListeners.emit({ rows: entries.length - refused.length, durationMs });
    for (const waiter of waiters) waiter.resolve();
  }

  /** One transaction for the whole batch. Returns the rows the database refused one by one. */
  private writeBatch(entries: readonly Entry[]): Array<{ entry: Entry; error: VerdictError }> {
    const conn = this.connection();
    const refused: Array<{ entry: Entry; error: VerdictError }> = [];
    // Assigned inside the transaction callback; `as` keeps TypeScript from narrowing it to null.
    let signed = null as { seq: number; timeMs: number } | null;
    let tipSeq = this.tipSeq;
    conn.db
      .transaction(() => {
        refused.length = 0;
        // The tip is re-read in every transaction rather than cached, so a reopened
        // file or a rolled-back batch can never leave the chain pointing at a row
        // that is not there. With every row pruned, the chain continues from the anchor.
        const tip = conn.tip.get() ?? conn.anchor.get();
        let seq = tip?.seq ?? 0;
        let prev: Buffer = tip?.hash ?? GENESIS_HASH;
        for (const entry of entries) {
          const row = entry.row;
          const next = seq + 1;
          const hash = this.chain ? chainHashAt(prev, row, next) : null;
          try {
            conn.insert.run(
              next, row.decisionId, row.timeMs, row.caller, row.requestId, row.principalId, row.action,
              row.resourceType, row.resourceId, row.effect, row.reason, row.ruleIds, row.errors,
              row.policyVersion, row.request, row.latencyUs, this.chain ? prev : null, hash,
            );
          } catch (error) {
            // A constraint failure aborts only this statement; the rest of the batch
            // must not be denied for one caller's duplicate decision id.
            if (sqliteCode(error)?.startsWith('SQLITE_CONSTRAINT')) {
              refused.push({
                entry,
                error: new VerdictError('INTERNAL', `decision ${row.decisionId} was not recorded: ${messageOf(error)} (decision ids must be unique)`, {
                  cause: error,
                }),
              });
              continue;
            }
            throw error;
          }
          seq = next;
          if (hash !== null) prev = hash;
        }
        signed = this.maybeCheckpoint(conn, seq, prev);
        this.checkIdentity(conn);
        tipSeq = seq;
      })
      .immediate();
    // Only now, after COMMIT: a rolled-back transaction must not move these.
    this.tipSeq = tipSeq;
    this.checkpointDue = false;
    if (signed !== null) {
      this.signedSeq = signed.seq;
      this.signedAtMs = signed.timeMs;
    }
    return refused;
  }

  /**
   * Where the tip and the newest signature are, from the database: on open and
   * whenever the file is reopened (it may be a different file by then). Between
   * those, commits keep them current in memory, so a batch costs no extra query.
   */
  private readSigned(conn: Connection): void {
    const tip = conn.tip.get() ?? conn.anchor.get();
    this.tipSeq = tip?.seq ?? 0;
    const last = conn.lastCheckpoint.get();
    this.signedSeq = Math.max(last?.seq ?? 0, conn.anchor.get()?.seq ?? 0);
    this.signedAtMs = last?.time_ms ?? null;
  }

  /** Inside the batch's transaction: sign the tip if enough rows or time have gone unsigned. */
  private maybeCheckpoint(conn: Connection, seq: number, hash: Buffer): { seq: number; timeMs: number } | null {
    const cp = this.checkpoints;
    if (cp === null) return null;
    // A tip behind the last signature means another process changed the file (a prune of
    // everything, a replaced file): ask the database rather than trust memory.
    if (seq < this.signedSeq) this.readSigned(conn);
    const unsigned = seq - this.signedSeq;
    if (unsigned <= 0) return null;
    const now = Date.now();
    // Before the first checkpoint of this log, the clock starts when the writer opened it.
    const stale = now - (this.signedAtMs ?? this.openedAtMs) >= cp.everySeconds * 1000;
    if (unsigned < cp.everyRows && !stale && !this.checkpointDue) return null;
    const checkpoint = signCheckpoint({ kind: 'checkpoint', seq, hash, timeMs: now }, cp.signer);
    conn.insertCheckpoint.run('checkpoint', seq, hash, now, checkpoint.keyId, Buffer.from(checkpoint.signature));
    return { seq, timeMs: now };
  }

  private failBatch(entries: readonly Entry[], waiters: readonly Waiter[], cause: unknown): void {
    const error = this.failure(cause);
    this.markUnhealthy(error.message);
    let acknowledged = 0;
    for (const entry of entries) {
      if (entry.waiter === null) {
        this.retry.push(entry);
        acknowledged += 1;
      } else {
        entry.waiter.reject(error);
      }
    }
    this.errorListeners.emit({ error, rows: entries.length, acknowledgedRows: acknowledged });
    for (const waiter of waiters) waiter.reject(error);
    if (this.retry.length > 0) this.scheduleRetry();
  }

  /** Turn a write failure into the error callers see, dropping the connection when reopening may cure it. */
  private failure(cause: unknown): VerdictError {
    const { message, reopen } = describeWriteFailure(cause, this.path, this.busyTimeoutMs);
    if (reopen) this.dropConnection();
    return new VerdictError('DECISION_LOG_UNAVAILABLE', message, { cause });
  }

  private connection(): Connection {
    if (this.closed) {
      throw new VerdictError('DECISION_LOG_UNAVAILABLE', `the decision log ${this.path} is closed`);
    }
    if (this.conn === null) {
      // Not creating the directory again: if it vanished (an unmounted volume),
      // quietly writing the audit log somewhere else would be worse than failing.
      this.conn = openConnection(this.path, this.mode, this.busyTimeoutMs);
      this.readSigned(this.conn);
    }
    if (this.conn.db.inTransaction) {
      // A failed COMMIT or ROLLBACK can leave a transaction open; every later
      // BEGIN would then fail and the log would never recover.
      this.conn.db.exec('ROLLBACK');
    }
    return this.conn;
  }

  private dropConnection(): void {
    const conn = this.conn;
    this.conn = null;
    if (conn === null) return;
    try {
      conn.db.close();
    } catch {
      // The connection is being abandoned because it failed; its close may fail too.
    }
  }

  /**
   * SQLite keeps writing to a file that was deleted or renamed under it, and
   * reports success: every batch checks, inside its transaction, that the path
   * still names the file it opened, so such rows are rolled back and reported.
   */
  private checkIdentity(conn: Connection): void {
    const stat = fs.statSync(this.path, { bigint: true, throwIfNoEntry: false });
    if (stat === undefined || stat.ino !== conn.ino || stat.dev !== conn.dev) {
      throw new FileMovedError();
    }
  }

  private markHealthy(): void {
    if (this.isHealthy && this.error === null) return;
    this.isHealthy = true;
    this.error = null;
    this.healthListeners.emit({ healthy: true, lastError: null });
  }

  private markUnhealthy(message: string): void {
    if (!this.isHealthy && this.error === message) return;
    this.isHealthy = false;
    this.error = message;
    this.healthListeners.emit({ healthy: false, lastError: message });
  }

}

function sqliteCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string' && code.startsWith('SQLITE_')) return code;
  }
  return undefined;
}

/** Why a write failed and what to do, in one sentence an operator can act on. */
function describeWriteFailure(cause: unknown, path: string, busyTimeoutMs: number): { message: string; reopen: boolean } {
  const denied = 'New decisions are denied until it can be written again.';
  if (cause instanceof FileMovedError) {
    return {
      message: `the decision log ${path} was removed or replaced while in use, so the last batch was not recorded. verdict reopens it (creating a new log if the path is free) on the next write. ${denied}`,
      reopen: true,
    };
  }
  if (cause instanceof VerdictError) {
    // Reopening failed; the message already says why.
    return { message: `${cause.message}. ${denied}`, reopen: true };
  }
  const code = sqliteCode(cause);
  const detail = messageOf(cause);
  const prefix = `cannot write the decision log ${path}`;
  if (code === undefined) {
    return { message: `${prefix}: ${detail}. ${denied}`, reopen: false };
  }
  if (code.startsWith('SQLITE_FULL')) {
    return { message: `${prefix}: the disk is full (${code}). Free space on the volume holding ${dirname(path)}. ${denied}`, reopen: false };
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return {
      message: `${prefix}: another connection held its write lock for more than ${busyTimeoutMs} ms (${code}). Only one verdict server may write a log; find and stop the other writer. ${denied}`,
      reopen: false,
    };
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return { message: `${prefix}: it is read-only (${code}: ${detail}). Make the file, its -wal and -shm files and its directory writable by this process. ${denied}`, reopen: true };
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return { message: `${prefix}: it cannot be opened (${code}). Check that the path is a regular file in an existing, writable directory. ${denied}`, reopen: true };
  }
  if (code.startsWith('SQLITE_IOERR')) {
    return { message: `${prefix}: I/O error (${code}: ${detail}). Check the disk and file system holding it. ${denied}`, reopen: true };
  }
  if (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB')) {
    return { message: `${prefix}: the file is damaged or not a database (${code}). Move it aside (keep it for investigation); verdict then starts a new log. ${denied}`, reopen: true };
  }
  return { message: `${prefix}: ${detail} (${code}). ${denied}`, reopen: true };
}

/** Open, configure and migrate one write connection, checking that the settings took. */
function openConnection(path: string, mode: DecisionLogMode, busyTimeoutMs: number): Connection {
  setAsideOrphanedWal(path);
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: busyTimeoutMs });
  } catch (error) {
    throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot open the decision log ${path}: ${messageOf(error)} (${sqliteCode(error) ?? 'error'}); check that it is a writable file in a writable directory`, {
      cause: error,
    });
  }
  try {
    db.pragma('journal_mode = WAL');
    const journal = String(db.pragma('journal_mode', { simple: true })).toLowerCase();
    if (journal !== 'wal') {
      throw new VerdictError('DECISION_LOG_UNAVAILABLE', `the decision log ${path} could not be switched to WAL (journal_mode is ${journal}); it must be a file on a local file system, not :memory: or a network share`);
    }
    const wanted = mode === 'durable' ? 2 : 1;
    db.pragma(`synchronous = ${mode === 'durable' ? 'FULL' : 'NORMAL'}`);
    const synchronous = Number(db.pragma('synchronous', { simple: true }));
    if (synchronous !== wanted) {
      throw new VerdictError('DECISION_LOG_UNAVAILABLE', `the decision log ${path} did not accept synchronous=${wanted} for ${mode} mode (it reads back ${synchronous})`);
    }
    migrate(db, path);
    const stat = fs.statSync(path, { bigint: true });
    return {
      db,
      insert: db.prepare<InsertParams>(
        `INSERT INTO decisions (seq, decision_id, time_ms, caller, request_id, principal_id, action, resource_type,
           resource_id, effect, reason, rule_ids, errors, policy_version, request, latency_us, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      tip: db.prepare<[], { seq: number; hash: Buffer | null }>('SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1'),
      anchor: db.prepare<[], { seq: number; hash: Buffer }>("SELECT seq, hash FROM checkpoints WHERE kind = 'anchor' ORDER BY seq DESC LIMIT 1"),
      lastCheckpoint: db.prepare<[], { seq: number; time_ms: number }>("SELECT seq, time_ms FROM checkpoints WHERE kind = 'checkpoint' ORDER BY seq DESC LIMIT 1"),
      insertCheckpoint: db.prepare<CheckpointParams>('INSERT INTO checkpoints (kind, seq, hash, time_ms, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)'),
      probe: db.prepare<[number]>(
        "INSERT INTO log_meta (key, value) VALUES ('probe_ms', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ),
      dev: stat.dev,
      ino: stat.ino,
    };
  } catch (error) {
    try {
      db.close();
    } catch {
      // Reporting the first failure matters more than a failed close.
    }
    if (error instanceof VerdictError) throw error;
    const code = sqliteCode(error);
    const corrupt = code?.startsWith('SQLITE_NOTADB') || code?.startsWith('SQLITE_CORRUPT');
    throw new VerdictError(
      corrupt ? 'DECISION_LOG_CORRUPT' : 'DECISION_LOG_UNAVAILABLE',
      corrupt
        ? `${path} is damaged or not a SQLite database (${code}); move it aside or point the decision log at another file`
        : `cannot open the decision log ${path}: ${messageOf(error)}${code ? ` (${code})` : ''}`,
      { cause: error },
    );
  }
}

/**
 * A -wal file without its database belongs to a log that was deleted or moved
 * away. SQLite would replay it into the new, empty file and mix two logs, so it
 * is renamed aside (kept, never deleted: it may hold the last decisions).
 */
function setAsideOrphanedWal(path: string): void {
  if (fs.existsSync(path) || !fs.existsSync(`${path}-wal`)) return;
  try {
    fs.renameSync(`${path}-wal`, `${path}-wal.orphaned-${Date.now()}`);
    fs.rmSync(`${path}-shm`, { force: true });
  } catch (error) {
    throw new VerdictError(
      'DECISION_LOG_UNAVAILABLE',
      `${path} is missing but its write-ahead log ${path}-wal is still there and could not be moved aside (${messageOf(error)}); move it away by hand`,
      { cause: error },
    );
  }
}
