import { performance } from 'node:perf_hooks';
import type Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import { CURRENT_FORMAT, GENESIS_HASH, chainHash } from './chain.js';
import { signCheckpoint } from './checkpoint.js';
import { systemClock, type Clock } from './clock.js';
import { COLUMNS, type RowValue } from './columns.js';
import { INSERT_ALERT_SQL, insertAlerts, type AlertRow } from './alerts-table.js';
import { checkIdentity, checkWal, closeQuietly, describeWriteFailure, hasMoved, isConstraintError, openConnection, rescueWal, type Connection, type DecisionLogMode } from './connection.js';
import { LogEvents, RESOLVED, type Waiter } from './events.js';
import type { CheckpointSigner } from './keys.js';
import { ROW_WIDTH, closedLogError } from './row.js';

/**
 * When the writer signs a checkpoint: at the end of the transaction in which at
 * least `everyRows` rows have gone unsigned, and once rows have been unsigned
 * for `everySeconds` (then by a timer if no rows come). Signing costs one
 * Ed25519 signature (~30 µs) inside a transaction that is being fsynced anyway.
 */
export interface CheckpointOptions {
  readonly signer: CheckpointSigner;
  readonly everyRows: number;
  readonly everySeconds: number;
}

export interface WriterOptions {
  readonly mode?: DecisionLogMode;
  /** How long a write waits for another connection's lock before failing. Default 500. */
  readonly busyTimeoutMs?: number;
  /** In async mode, how soon a failed batch of acknowledged rows is retried without new traffic. Default 1000. */
  readonly retryDelayMs?: number;
  /** Signed checkpoints over the chain; none when absent (tools and tests that only append). */
  readonly checkpoints?: CheckpointOptions | null;
  readonly clock?: Clock;
  /** The replica this log belongs to (replica.ts): another's log is refused, an unnamed one named. None: the log's name is left as it is (tools and tests). */
  readonly replicaId?: string | null;
}

/** What the audit trail of a log looks like now (for readiness and status pages). */
export interface AuditStatus {
  /** Attribute paths stored as HMAC; the deciding thread hashes them, so the writer reports none. */
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

/** Rows of a batch the database refused (a duplicate decision id), by their index in the batch. */
export type Refusals = ReadonlyArray<readonly [index: number, error: VerdictError]>;

/** How a batch ended: committed (but for the rows refused), or not written at all. */
export type BatchOutcome = { readonly refused: Refusals; readonly failed: null } | { readonly refused: null; readonly failed: VerdictError };

/** One message's rows: ROW_WIDTH values per row, as encodeRecord (row.ts) lays them out. */
interface Batch {
  readonly values: readonly RowValue[];
  readonly rows: number;
  /** Its decisions were already answered (async mode): kept for a retry when a transaction fails. */
  readonly acknowledged: boolean;
  readonly answer: (outcome: BatchOutcome) => void;
}

/** How often an idle writer checks that its file and write-ahead log are still where it opened them. */
const IDENTITY_CHECK_MS = 1_000;

const NONE_REFUSED: BatchOutcome = { refused: [], failed: null };
const DECISION_ID = COLUMNS.findIndex((c) => c.key === 'decisionId');

/**
 * The decision log's one writer, in its own thread (writer-thread.ts) or in the
 * cluster primary: it appends batches of rows to the hash chain, signs
 * checkpoints, keeps acknowledged rows of a failed transaction for a retry,
 * and reports its health to whoever listens.
 *
 * Each batch is one message from a deciding thread (the rows of one event-loop
 * turn there). Batches that arrive together — while a transaction is being
 * fsynced, or from several cluster workers — share one transaction (group
 * commit), and each is answered once: after COMMIT with the rows the database
 * refused, or with the failure. An acknowledged batch (async mode) that fails
 * is kept and retried, and answered once it is written (or lost at close).
 * Listeners hear of a transaction before its batches are answered: health
 * first, then each refused row, then the commit (or the failure).
 * Writes are synchronous (better-sqlite3): in the writer thread nothing else
 * waits for them; in the cluster primary, only the cluster's own bookkeeping.
 *
 * @example
 * const writer = LogWriter.open('data/decisions.db', { mode: 'durable' });
 * writer.write(values, rows, false, ({ refused, failed }) => reply(refused, failed)); // after COMMIT
 * await writer.close();
 */
export class LogWriter extends LogEvents {
  readonly path: string;
  readonly mode: DecisionLogMode;
  private readonly busyTimeoutMs: number;
  private readonly retryDelayMs: number;
  private readonly checkpoints: CheckpointOptions | null;
  private readonly clock: Clock;
  private readonly replicaId: string | null;
  private conn: Connection | null;
  /**
   * A dropped connection whose write-ahead log was removed or replaced and
   * still holds commits only it can read: kept open until rescueWal has copied
   * them into the main file (no new connection is opened before).
   */
  private orphan: Connection | null = null;
  private stopIdentityCheck: (() => void) | null = null;
  /** Set when the last transaction committed before its write-ahead log was found moved. */
  private committedToMovedWal = false;
  private inbox: Batch[] = [];
  /** Acknowledged batches of failed transactions, oldest first. */
  private retry: Batch[] = [];
  private flushes: Waiter[] = [];
  private scheduled = false;
  private cancelRetry: (() => void) | null = null;
  private stopCheckpointTimer: (() => void) | null = null;
  /** Set by the checkpoint timer: the next transaction signs whatever is unsigned. */
  private checkpointDue = false;
  private closing = false;
  private closed = false;
  private closePromise: Promise<void> | null = null;
  /** Committed tip and newest signed seq, as of the last commit (hints; the database is the truth). */
  private tipSeq = 0;
  private signedSeq = 0;
  private signedAtMs: number | null = null;
  private readonly openedAtMs: number;

  private constructor(path: string, options: WriterOptions, conn: Connection) {
    super();
    this.path = path;
    this.mode = options.mode ?? 'durable';
    this.busyTimeoutMs = options.busyTimeoutMs ?? 500;
    this.retryDelayMs = options.retryDelayMs ?? 1000;
    this.checkpoints = options.checkpoints ?? null;
    this.clock = options.clock ?? systemClock;
    this.replicaId = options.replicaId ?? null;
    this.conn = conn;
    this.openedAtMs = this.clock.now();
    this.readSigned(conn);
    // Between writes too: a removed write-ahead log holds the last commits only in this
    // process, so it is noticed (and its content saved) without waiting for traffic.
    this.stopIdentityCheck = this.clock.every(IDENTITY_CHECK_MS, () => {
      if (!this.closing && this.conn !== null && hasMoved(this.conn, this.path)) this.probe();
    });
    const cp = this.checkpoints;
    if (cp !== null) {
      this.stopCheckpointTimer = this.clock.every(cp.everySeconds * 1000, () => {
        if (this.tipSeq > this.signedSeq && !this.closing) {
          this.checkpointDue = true;
          this.schedule();
        }
      });
    }
  }

  /**
   * Open (creating it and its directory if needed) and migrate the log.
   * @throws VerdictError DECISION_LOG_UNAVAILABLE, DECISION_LOG_CORRUPT for a file that is not a decision log,
   *   CONFIG_INVALID for bad options
   */
  static open(path: string, options: WriterOptions = {}): LogWriter {
    const mode = options.mode ?? 'durable';
    if (mode !== 'durable' && mode !== 'async') {
      throw new VerdictError('CONFIG_INVALID', `decision log mode must be "durable" or "async", not ${JSON.stringify(mode)}`);
    }
    const cp = options.checkpoints;
    if (cp && !(Number.isSafeInteger(cp.everyRows) && cp.everyRows >= 1 && Number.isFinite(cp.everySeconds) && cp.everySeconds > 0)) {
      throw new VerdictError('CONFIG_INVALID', `checkpoints need everyRows >= 1 and everySeconds > 0, not ${cp.everyRows} and ${cp.everySeconds}`);
    }
    return new LogWriter(path, options, openConnection(path, mode, options.busyTimeoutMs ?? 500, true, options.replicaId ?? null));
  }

  /**
   * Append one batch: `rows` rows of ROW_WIDTH values each, `answer`ed once:
   * after COMMIT with the rows the database refused, or with
   * DECISION_LOG_UNAVAILABLE when the transaction failed. An `acknowledged`
   * batch (its decisions were answered already, async mode) is kept through
   * failures and answered once written; what it costs is reported through
   * onWriteError meanwhile.
   */
  write(values: readonly RowValue[], rows: number, acknowledged: boolean, answer: (outcome: BatchOutcome) => void): void {
    if (this.closing) {
      answer({ refused: null, failed: closedLogError(this.path) });
      return;
    }
    this.inbox.push({ values, rows, acknowledged, answer });
    this.schedule();
  }

  /**
   * Store alerts (alerts-table.ts) in a small transaction of their own, after
   * the decisions already queued; an alert id already stored is left as it is.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE when they could not be written
   */
  writeAlerts(rows: readonly AlertRow[]): Promise<void> {
    if (this.closing) return Promise.reject(closedLogError(this.path));
    return new Promise<void>((resolve, reject) => {
      setImmediate(() => {
        try {
          const conn = this.connection();
          const statement = conn.db.prepare(INSERT_ALERT_SQL);
          conn.db.transaction(() => insertAlerts(statement, rows)).immediate();
          resolve();
        } catch (error) {
          reject(this.failure(error));
        }
      });
    });
  }

  /**
   * Write everything received so far (acknowledged rows waiting for a retry,
   * and a checkpoint the timer asked for, included).
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE if that transaction failed
   */
  flush(): Promise<void> {
    if (!this.scheduled && this.inbox.length === 0 && this.retry.length === 0) return RESOLVED;
    return new Promise<void>((resolve, reject) => {
      this.flushes.push({ resolve, reject });
      this.schedule();
    });
  }

  /**
   * Try a tiny write transaction now, reopening the file if it had failed: a
   * failure is noticed before a decision meets it, and recovery without
   * waiting for traffic.
   */
  probe(): boolean {
    if (this.closing) return false;
    try {
      const conn = this.connection();
      conn.db
        .transaction(() => {
          conn.probe.run(this.clock.now());
          checkIdentity(conn, this.path);
        })
        .immediate();
    } catch (error) {
      this.setHealth(false, this.failure(error).message);
      return false;
    }
    this.setHealth(true, null);
    if (this.retry.length > 0) this.schedule();
    return true;
  }

  /** How far the log is signed. */
  auditStatus(): AuditStatus {
    const cp = this.checkpoints;
    return {
      sensitiveAttributes: [],
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

  /**
   * Write what was received, sign the tail, close the file. Later writes reject.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE if rows acknowledged in async mode could not be written
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
    this.stopCheckpointTimer?.();
    this.stopIdentityCheck?.();
    if (failure === null && this.checkpoints !== null && this.tipSeq > this.signedSeq) {
      // Sign the tail on a clean stop, so a log at rest is covered up to its last row.
      try {
        this.checkpointDue = true;
        this.transaction([]);
      } catch (error) {
        // The rows are committed and chained; the next start signs them.
        this.writeErrors.emit({ error: this.failure(error), rows: 0, acknowledgedRows: 0 });
      }
    }
    this.cancelRetry?.();
    const unwritten = this.retry;
    this.retry = [];
    this.closed = true;
    this.dropConnection();
    if (this.orphan !== null) {
      // A last try: what it cannot copy now is lost with the connection.
      const unsaved = rescueWal(this.orphan, this.path);
      if (unsaved !== null) this.writeErrors.emit({ error: new VerdictError('DECISION_LOG_UNAVAILABLE', `the decision log ${this.path}: ${unsaved}`), rows: 0, acknowledgedRows: 0 });
      closeQuietly(this.orphan.db);
      this.orphan = null;
    }
    const lost = unwritten.reduce((sum, batch) => sum + batch.rows, 0);
    if (lost > 0) {
      const error = new VerdictError('DECISION_LOG_UNAVAILABLE', `${lost} decision(s) acknowledged in async mode were never written to ${this.path}: ${messageOf(failure)}`, {
        cause: failure,
      });
      for (const batch of unwritten) batch.answer({ refused: null, failed: error });
      throw error;
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // setImmediate: every batch that has arrived by then (all that queued up during the last fsync) joins one transaction.
    setImmediate(() => this.drain());
  }

  private scheduleRetry(): void {
    if (this.cancelRetry !== null || this.closing) return;
    this.cancelRetry = this.clock.after(this.retryDelayMs, () => {
      this.cancelRetry = null;
      if (this.retry.length > 0) this.schedule();
    });
  }

  private drain(): void {
    this.scheduled = false;
    const batches = this.retry.length > 0 ? this.retry.concat(this.inbox) : this.inbox;
    this.retry = [];
    this.inbox = [];
    const flushes = this.flushes;
    this.flushes = [];
    if (batches.length === 0 && !(this.checkpointDue && !this.closed)) {
      for (const waiter of flushes) waiter.resolve();
      return;
    }

    const started = performance.now();
    let refused: Map<Batch, Array<readonly [number, VerdictError]>>;
    try {
      refused = this.transaction(batches);
    } catch (error) {
      this.fail(batches, flushes, error);
      return;
    }
    const durationMs = performance.now() - started;

    this.setHealth(true, null);
    let rows = 0;
    for (const batch of batches) {
      const mine = refused.get(batch);
      rows += batch.rows - (mine?.length ?? 0);
      // For an already acknowledged row this report is all that is left of it.
      for (const [, error] of mine ?? []) this.writeErrors.emit({ error, rows: 1, acknowledgedRows: batch.acknowledged ? 1 : 0 });
    }
    if (batches.length > 0) this.commits.emit({ rows, durationMs });
    for (const batch of batches) {
      const mine = refused.get(batch);
      batch.answer(mine === undefined ? NONE_REFUSED : { refused: mine, failed: null });
    }
    for (const waiter of flushes) waiter.resolve();
  }

  private fail(batches: readonly Batch[], flushes: readonly Waiter[], cause: unknown): void {
    const committed = this.committedToMovedWal;
    this.committedToMovedWal = false;
    const error = this.failure(cause);
    // Committed into a removed -wal whose content failure() has just copied into the main
    // file: acknowledged rows are written, and a retry would only duplicate them.
    const saved = committed && this.orphan === null;
    this.setHealth(false, error.message);
    let rows = 0;
    let acknowledged = 0;
    for (const batch of batches) {
      rows += batch.rows;
      if (batch.acknowledged && saved) {
        batch.answer(NONE_REFUSED);
      } else if (batch.acknowledged) {
        this.retry.push(batch);
        acknowledged += batch.rows;
      }
    }
    this.writeErrors.emit({ error, rows, acknowledgedRows: acknowledged });
    for (const batch of batches) if (!batch.acknowledged) batch.answer({ refused: null, failed: error });
    for (const waiter of flushes) waiter.reject(error);
    if (this.retry.length > 0) this.scheduleRetry();
  }

  /** One transaction for all the batches. Returns the rows the database refused one by one. */
  private transaction(batches: readonly Batch[]): Map<Batch, Array<readonly [number, VerdictError]>> {
    const conn = this.connection();
    const refused = new Map<Batch, Array<readonly [number, VerdictError]>>();
    // Assigned inside the transaction callback; `as` keeps TypeScript from narrowing it to null.
    let signed = null as { seq: number; timeMs: number } | null;
    let tipSeq = this.tipSeq;
    // seq, the row's values, prev_hash, hash, format: reused for every row (better-sqlite3 binds on run).
    const params = new Array<RowValue | Buffer>(ROW_WIDTH + 4);
    params[ROW_WIDTH + 3] = CURRENT_FORMAT;
    conn.db
      .transaction(() => {
        refused.clear();
        // The tip is re-read in every transaction rather than cached, so a reopened
        // file or a rolled-back batch can never leave the chain pointing at a row
        // that is not there. With every row pruned, the chain continues from the anchor.
        const tip = conn.tip.get() ?? conn.anchor.get();
        let seq = tip?.seq ?? 0;
        let prev: Buffer = tip?.hash ?? GENESIS_HASH;
        for (const batch of batches) {
          for (let row = 0, offset = 0; row < batch.rows; row++, offset += ROW_WIDTH) {
            const next = seq + 1;
            const hash = chainHash(prev, CURRENT_FORMAT, next, batch.values, offset) as Buffer;
            params[0] = next;
            for (let k = 0; k < ROW_WIDTH; k++) params[k + 1] = batch.values[offset + k] as RowValue;
            params[ROW_WIDTH + 1] = prev;
            params[ROW_WIDTH + 2] = hash;
            try {
              conn.insert.run(params);
            } catch (error) {
              // A constraint failure aborts only this statement; the rest of the batch
              // must not be denied for one caller's duplicate decision id.
              if (!isConstraintError(error)) throw error;
              const id = String(batch.values[offset + DECISION_ID]);
              const refusal = new VerdictError('INTERNAL', `decision ${id} was not recorded: ${messageOf(error)} (decision ids must be unique)`, { cause: error });
              const list = refused.get(batch);
              if (list === undefined) refused.set(batch, [[row, refusal]]);
              else list.push([row, refusal]);
              continue;
            }
            seq = next;
            prev = hash;
          }
        }
        signed = this.maybeCheckpoint(conn, seq, prev);
        checkIdentity(conn, this.path);
        tipSeq = seq;
      })
      .immediate();
    // The write-ahead log removed between the check above and COMMIT: the batch went
    // into a file only this process can read. It is refused, and rescued with the rest.
    try {
      checkWal(conn, this.path);
    } catch (error) {
      this.committedToMovedWal = true;
      throw error;
    }
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

  /** Inside the transaction: sign the tip if enough rows or time have gone unsigned. */
  private maybeCheckpoint(conn: Connection, seq: number, hash: Buffer): { seq: number; timeMs: number } | null {
    const cp = this.checkpoints;
    if (cp === null) return null;
    // A tip behind the last signature means another process changed the file (a prune of
    // everything, a replaced file): ask the database rather than trust memory.
    if (seq < this.signedSeq) this.readSigned(conn);
    const unsigned = seq - this.signedSeq;
    if (unsigned <= 0) return null;
    const now = this.clock.now();
    // Before the first checkpoint of this log, the clock starts when the writer opened it.
    const stale = now - (this.signedAtMs ?? this.openedAtMs) >= cp.everySeconds * 1000;
    if (unsigned < cp.everyRows && !stale && !this.checkpointDue) return null;
    // signedSeq is the newest checkpoint or anchor of this file (readSigned): naming it links
    // the checkpoints into a chain, so one deleted from the middle shows (checkpoint.ts).
    const previousSeq = this.signedSeq;
    // The id the log records, signed in: a checkpoint copied into another replica's log then shows (checkpoint.ts).
    const replicaId = conn.replicaId;
    const checkpoint = signCheckpoint({ kind: 'checkpoint', seq, hash, timeMs: now, previousSeq, replicaId }, cp.signer);
    conn.insertCheckpoint.run('checkpoint', seq, hash, now, checkpoint.keyId, Buffer.from(checkpoint.signature), previousSeq, replicaId);
    return { seq, timeMs: now };
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
    if (this.orphan !== null) {
      const unsaved = rescueWal(this.orphan, this.path);
      if (unsaved !== null) throw new VerdictError('DECISION_LOG_UNAVAILABLE', `the decision log ${this.path}: ${unsaved}`);
      closeQuietly(this.orphan.db);
      this.orphan = null;
    }
    if (this.conn === null) {
      // Not creating the directory again: if it vanished (an unmounted volume),
      // quietly writing the audit log somewhere else would be worse than failing.
      this.conn = openConnection(this.path, this.mode, this.busyTimeoutMs, false, this.replicaId);
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
    // Closing a connection whose write-ahead log is gone from the path would lose the
    // commits in it since the last checkpoint: copy them into the main file first.
    if (this.orphan === null && rescueWal(conn, this.path) !== null) {
      this.orphan = conn;
      return;
    }
    closeQuietly(conn.db);
  }
}
