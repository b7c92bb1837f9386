import { VerdictError, messageOf } from '../errors.js';
import type { AlertRow } from './alerts-table.js';
import type { RowValue } from './columns.js';
import type { DecisionLogMode } from './connection.js';
import { LogEvents, RESOLVED, type CommitStats, type HealthState, type Waiter, type WriteFailure } from './events.js';
import { FairRows, MAX_CHARACTERS_AT_WRITER, MAX_ROWS_AT_WRITER, type TakenRows } from './fair-rows.js';
import { fromWire, type ClientMessage, type HostMessage, type LogChannel } from './log-protocol.js';
import type { DecisionRecord } from './record.js';
import { closedLogError, encodeRecord } from './row.js';
import type { SensitiveAttributes } from './sensitive.js';
import type { AuditStatus } from './writer.js';

/** What the decision path needs of a decision log, wherever its writer runs. */
export interface DecisionSink {
  readonly path: string;
  /** Resolves once the decision is recorded (durable) or queued (async, while healthy); rejects when it cannot be. */
  append(record: DecisionRecord): Promise<void>;
}

/**
 * What the server needs of its decision log: the sink, plus health, events and
 * the audit state. DecisionLogClient is the one implementation verdict ships.
 */
export interface DecisionLog extends DecisionSink {
  readonly healthy: boolean;
  /** Rows appended and not yet confirmed by the writer (waiting here or being written). */
  readonly pendingRows: number;
  readonly lastError: string | null;
  onHealthChange(listener: (state: HealthState) => void): () => void;
  onCommit(listener: (stats: CommitStats) => void): () => void;
  onWriteError(listener: (failure: WriteFailure) => void): () => void;
  /** Try a write now (health checks); after a lost writer, start a new one. */
  probe(): Promise<boolean>;
  auditStatus(): Promise<AuditStatus>;
  /** Write what was appended, then stop. */
  close(): Promise<void>;
  /** Store anomaly alerts beside the decisions (alerts-table.ts), by the writer. */
  appendAlerts(rows: readonly AlertRow[]): Promise<void>;
}

export interface ClientOptions {
  readonly path: string;
  readonly mode: DecisionLogMode;
  /** Attributes replaced by their HMAC before the row leaves this thread. */
  readonly sensitive?: SensitiveAttributes | null;
  /**
   * true: close() closes the log itself (the writer thread is this client's).
   * false: close() only flushes this client's rows (a cluster worker; the primary owns the log).
   */
  readonly ownsLog: boolean;
  /** How to reach a writer again after its channel was lost (a crashed writer thread); tried by probe(). */
  readonly reconnect?: () => Promise<LogChannel>;
  /** Called after close() has finished with the channel (to stop a writer thread). */
  readonly release?: () => Promise<void>;
}

/**
 * Most rows answered already (async mode) that may wait for the writer: past it, an
 * async append waits for its commit as a durable one does, until the writer catches
 * up. Without it, decisions answered faster than the writer commits (a CheckBatch
 * flood) piled up without bound: memory grew until the process died, with every one
 * of them lost, where async mode promises to lose at most the last moments.
 */
export const MAX_ACKNOWLEDGED_BEHIND = 4096;

/**
 * Rows that wait for their commit go to the writer as soon as this many are queued
 * (while it holds fewer than twice as many), not only at the end of the turn. One
 * socket read can carry a hundred checks, all decided in one turn: held to its end,
 * their rows left the writer idle while they were decided, then the deciding thread
 * idle while they were committed. Handed on in the middle of the turn, they are
 * committed while the rest are decided (README, "Durable").
 */
export const EARLY_BATCH_ROWS = 32;

interface Batch {
  /** One per row; null for rows already acknowledged (async mode). */
  readonly waiters: Waiter[] | null;
  readonly rows: number;
  /** The rows' size as MAX_CHARACTERS_AT_WRITER counts it (rows waiting for their commit only). */
  readonly characters: number;
}

interface Request {
  resolve(value: unknown): void;
  reject(error: VerdictError): void;
}

/**
 * The deciding side of the decision log. Its writer (writer.ts) runs
 * elsewhere: in a worker thread of this process (so SQLite, hashing and fsync
 * never hold up the event loop that answers checks) or in the cluster primary
 * (one writer, one chain for every worker process).
 *
 * This is the one queue: rows are encoded as they are appended (sensitive
 * attributes hashed first) and sent as one flat array per message, with one list
 * of waiters that its one answer settles. Rows that wait for their commit are
 * handed to the writer no more than MAX_ROWS_AT_WRITER and MAX_CHARACTERS_AT_WRITER
 * at a time, taken in turns from each caller's rows (FairRows): what queues up while the writer commits
 * waits here, where a check goes ahead of another caller's flood of batch rows,
 * not in the writer's inbox behind them; they go at the end of the turn, or in its
 * middle once EARLY_BATCH_ROWS are queued. Rows already answered (async mode) go
 * in one message per event-loop turn. An append made in durable mode resolves
 * only after the writer has committed its row; a row the database refused (a
 * duplicate decision id) fails alone; when the
 * writer cannot write, or is gone, the append rejects with
 * DECISION_LOG_UNAVAILABLE and the decision is refused. Health is the
 * writer's, as it reports it, until the channel to it is lost.
 *
 * @example
 * const log = await startWriterThread(settings, sensitive);
 * log.onHealthChange(({ healthy, lastError }) => logger.warn({ healthy, lastError }, 'decision log'));
 * await log.append(record); // rejects with VerdictError('DECISION_LOG_UNAVAILABLE') => deny
 * await log.close();
 */
export class DecisionLogClient extends LogEvents implements DecisionLog {
  readonly path: string;
  readonly mode: DecisionLogMode;
  private channel: LogChannel;
  private readonly sensitive: SensitiveAttributes | null;
  private readonly options: ClientOptions;
  private readonly waiting = new FairRows();
  /** A record's values, its sensitive attributes hashed: made once, not per row. */
  private readonly encode = (out: RowValue[], record: DecisionRecord): void => encodeRecord(out, record, this.sensitive);
  /** Rows that wait for their commit, with the writer (no more than MAX_ROWS_AT_WRITER, but for a flush's). */
  private rowsAtWriter = 0;
  /** Their size (no more than MAX_CHARACTERS_AT_WRITER, but for a flush's or one larger row alone). */
  private charactersAtWriter = 0;
  private acknowledgedValues: RowValue[] = [];
  private acknowledgedRows = 0;
  /** Rows answered already, sent and not yet written. */
  private acknowledgedAtWriter = 0;
  private scheduled = false;
  private nextId = 1;
  private readonly batches = new Map<number, Batch>();
  private readonly requests = new Map<number, Request>();
  /** Why the channel to the writer was lost; null while connected. */
  private lost: string | null = null;
  private closing = false;
  private closePromise: Promise<void> | null = null;
  private reviving: Promise<boolean> | null = null;

  private constructor(channel: LogChannel, options: ClientOptions, health: HealthState) {
    super();
    this.channel = channel;
    this.options = options;
    this.path = options.path;
    this.mode = options.mode;
    this.sensitive = options.sensitive ?? null;
    this.setHealth(health.healthy, health.lastError);
    this.attach(channel);
  }

  /**
   * Greet the writer on `channel` and wait until it is ready.
   * @throws VerdictError the writer's own error when it could not open the log (e.g. DECISION_LOG_CORRUPT)
   */
  static async connect(channel: LogChannel, options: ClientOptions): Promise<DecisionLogClient> {
    const health = await greet(channel);
    return new DecisionLogClient(channel, options, health);
  }

  /** Rows appended here and not yet confirmed by the writer. */
  get pendingRows(): number {
    let rows = this.waiting.size + this.acknowledgedRows;
    for (const batch of this.batches.values()) rows += batch.rows;
    return rows;
  }

  /**
   * Queue a decision for this turn's message. Durable mode: resolves once
   * committed. Async mode while healthy: resolves at once, unless MAX_ACKNOWLEDGED_BEHIND
   * rows answered so are still waiting for the writer; then as durable mode does.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE when the row could not be
   *   written (the decision must then be denied), INTERNAL when the record cannot be
   *   serialised or the database refused it (duplicate decision id)
   */
  append(record: DecisionRecord): Promise<void> {
    if (this.closing) return Promise.reject(closedLogError(this.path));
    if (this.lost !== null) return Promise.reject(this.lostError());
    // Hashed here, so sensitive values never leave this thread.
    if (this.mode === 'async' && this.healthy && this.acknowledgedAtWriter + this.acknowledgedRows < MAX_ACKNOWLEDGED_BEHIND) {
      try {
        this.encode(this.acknowledgedValues, record);
      } catch (error) {
        return Promise.reject(error);
      }
      this.acknowledgedRows += 1;
      this.schedule();
      return RESOLVED;
    }
    return new Promise<void>((resolve, reject) => {
      this.waiting.push(record.caller, { resolve, reject }, record, this.encode);
      if (this.waiting.size >= EARLY_BATCH_ROWS && this.rowsAtWriter < 2 * EARLY_BATCH_ROWS) this.sendWaiting();
      this.schedule();
    });
  }

  /** Everything appended so far, written. @throws (rejects) DECISION_LOG_UNAVAILABLE if it could not be */
  async flush(): Promise<void> {
    this.sendAll();
    await this.request('flush');
  }

  /**
   * Store anomaly alerts beside the decisions (alerts-table.ts), by the writer.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE when they could not be written
   */
  appendAlerts(rows: readonly AlertRow[]): Promise<void> {
    if (this.lost !== null) return Promise.reject(this.lostError());
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.requests.set(id, { resolve: () => resolve(), reject });
      this.postMessage({ t: 'alerts', id, rows });
    });
  }

  /** Ask the writer to try a write now (health checks); after a lost writer, start a new one. */
  probe(): Promise<boolean> {
    if (this.closing) return Promise.resolve(false);
    if (this.lost !== null) return this.revive();
    return this.request('probe').then(
      (value) => value === true,
      () => false,
    );
  }

  /** The chain, checkpoint and sensitive-attribute settings, and how far the log is signed. */
  async auditStatus(): Promise<AuditStatus> {
    const status = (await this.request('status')) as AuditStatus;
    // Sensitive attributes are hashed here, before rows reach the writer, so the writer does not know them.
    return { ...status, sensitiveAttributes: this.sensitive?.paths.map((path) => path.text) ?? [] };
  }

  /**
   * Send what is queued, wait for the writer to write it, then close the log
   * (or, for a client that does not own it, just stop using it).
   * @throws (rejects) DECISION_LOG_UNAVAILABLE if rows already acknowledged could not be written
   */
  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  private async doClose(): Promise<void> {
    this.sendAll();
    this.closing = true;
    // A writer being restarted right now is either connected or given up before closing.
    await this.reviving;
    try {
      if (this.lost === null) await this.request(this.options.ownsLog ? 'close' : 'flush');
    } finally {
      await this.options.release?.();
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // setImmediate, not a microtask: every append of this event-loop turn joins one message.
    setImmediate(() => this.send());
  }

  private send(): void {
    this.scheduled = false;
    this.sendWaiting();
    this.sendAcknowledged();
  }

  /** Everything queued, in one message whatever is with the writer (a flush or close is ordered after every row). */
  private sendAll(): void {
    this.scheduled = false;
    if (this.waiting.size > 0) this.postWaiting(this.waiting.takeAll());
    this.sendAcknowledged();
  }

  private postWaiting(taken: TakenRows): void {
    if (this.lost === null) {
      this.rowsAtWriter += taken.waiters.length;
      this.charactersAtWriter += taken.characters;
    }
    this.post(taken.waiters, taken.waiters.length, taken.values, taken.characters);
  }

  private sendAcknowledged(): void {
    if (this.acknowledgedRows > 0) {
      if (this.lost === null) this.acknowledgedAtWriter += this.acknowledgedRows;
      this.post(null, this.acknowledgedRows, this.acknowledgedValues, 0);
      this.acknowledgedValues = [];
      this.acknowledgedRows = 0;
    }
  }

  private post(waiters: Waiter[] | null, rows: number, values: RowValue[], characters: number): void {
    if (this.lost !== null) {
      this.settleLost({ waiters, rows, characters });
      return;
    }
    const id = this.nextId++;
    this.batches.set(id, { waiters, rows, characters });
    this.postMessage({ t: 'rows', id, acknowledged: waiters === null, values });
  }

  private request(t: 'flush' | 'probe' | 'status' | 'close'): Promise<unknown> {
    if (this.lost !== null) return Promise.reject(this.lostError());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.requests.set(id, { resolve, reject });
      this.postMessage({ t, id });
    });
  }

  private postMessage(message: ClientMessage): void {
    try {
      this.channel.post(message);
    } catch (error) {
      this.onLost(`the decision log writer could not be reached: ${messageOf(error)}`);
    }
  }

  private attach(channel: LogChannel): void {
    channel.listen((raw) => {
      if (channel === this.channel) this.receive(raw as HostMessage);
    });
    channel.onGone((reason) => {
      if (channel === this.channel) this.onLost(reason);
    });
  }

  private receive(message: HostMessage): void {
    switch (message?.t) {
      case 'rows': {
        const batch = this.batches.get(message.id);
        if (batch === undefined) return;
        this.batches.delete(message.id);
        this.settle(batch, message);
        if (batch.waiters !== null) this.answered(batch);
        else this.acknowledgedAtWriter -= batch.rows;
        return;
      }
      case 'reply': {
        const request = this.requests.get(message.id);
        if (request === undefined) return;
        this.requests.delete(message.id);
        if (message.error !== null) request.reject(fromWire(message.error));
        else request.resolve(message.value);
        return;
      }
      case 'health':
        this.setHealth(message.health.healthy, message.health.lastError);
        return;
      case 'commit':
        this.commits.emit(message.stats);
        return;
      case 'write-error':
        this.writeErrors.emit({ error: fromWire(message.error), rows: message.rows, acknowledgedRows: message.acknowledgedRows });
        return;
      default:
      // Not ours (cluster IPC also carries other messages).
    }
  }

  private settle(batch: Batch, outcome: HostMessage & { t: 'rows' }): void {
    const waiters = batch.waiters;
    if (outcome.failed !== null) {
      const error = fromWire(outcome.failed);
      if (waiters === null) {
        // These acknowledged rows were never written (unreadable, or lost when the writer closed): this report is all that is left of them.
        this.writeErrors.emit({ error, rows: batch.rows, acknowledgedRows: batch.rows });
      } else {
        for (const waiter of waiters) waiter.reject(error);
      }
      return;
    }
    if (waiters === null) return;
    if (outcome.refused.length === 0) {
      for (const waiter of waiters) waiter.resolve();
      return;
    }
    const refused = new Map(outcome.refused.map(([index, error]) => [index, error]));
    waiters.forEach((waiter, index) => {
      const error = refused.get(index);
      if (error === undefined) waiter.resolve();
      else waiter.reject(fromWire(error));
    });
  }

  /**
   * As many waiting rows as the writer may have: it is never handed more than
   * MAX_ROWS_AT_WRITER rows, nor MAX_CHARACTERS_AT_WRITER of them (but for one larger
   * row alone), to commit before a new row.
   */
  private sendWaiting(): void {
    const rowRoom = MAX_ROWS_AT_WRITER - this.rowsAtWriter;
    const characterRoom = MAX_CHARACTERS_AT_WRITER - this.charactersAtWriter;
    if (rowRoom <= 0 || characterRoom <= 0 || this.waiting.size === 0) return;
    const taken = this.waiting.take(rowRoom, { characters: characterRoom, firstRowAnyway: this.rowsAtWriter === 0 });
    if (taken.waiters.length > 0) this.postWaiting(taken);
  }

  /** The writer has answered a message of waiting rows: as many may go. */
  private answered(batch: Batch): void {
    this.rowsAtWriter -= batch.rows;
    this.charactersAtWriter -= batch.characters;
    // At once, not next turn: the writer would sit idle meanwhile.
    this.sendWaiting();
  }

  /** The writer is gone: nothing in flight can be confirmed, so every waiting decision is refused. */
  private onLost(reason: string): void {
    if (this.lost !== null) return;
    this.lost = reason;
    this.rowsAtWriter = 0;
    this.charactersAtWriter = 0;
    this.acknowledgedAtWriter = 0;
    const { waiters } = this.waiting.takeAll();
    if (waiters.length > 0) this.settleLost({ waiters, rows: waiters.length, characters: 0 });
    // A writer that stops after close() has done its job.
    if (this.closing && this.batches.size === 0 && this.requests.size === 0) return;
    const batches = [...this.batches.values()];
    this.batches.clear();
    for (const batch of batches) this.settleLost(batch);
    const requests = [...this.requests.values()];
    this.requests.clear();
    for (const request of requests) request.reject(this.lostError());
    this.setHealth(false, this.lostError().message);
  }

  private settleLost(batch: Batch): void {
    const error = this.lostError();
    if (batch.waiters === null) this.writeErrors.emit({ error, rows: batch.rows, acknowledgedRows: batch.rows });
    else for (const waiter of batch.waiters) waiter.reject(error);
  }

  private lostError(): VerdictError {
    return new VerdictError(
      'DECISION_LOG_UNAVAILABLE',
      `the decision log writer for ${this.path} stopped (${this.lost ?? 'unknown reason'}); decisions are refused until it is back. verdict restarts it on the next health probe`,
    );
  }

  private revive(): Promise<boolean> {
    const reconnect = this.options.reconnect;
    if (reconnect === undefined) return Promise.resolve(false);
    this.reviving ??= (async () => {
      try {
        const channel = await reconnect();
        const health = await greet(channel);
        this.channel = channel;
        this.attach(channel);
        this.lost = null;
        this.setHealth(health.healthy, health.lastError);
        return health.healthy;
      } catch (error) {
        // Why the new writer failed (a log that is now corrupt, a full disk) is what the operator needs to see.
        this.setHealth(false, `${this.lostError().message}; restarting it failed: ${messageOf(error)}`);
        return false;
      } finally {
        this.reviving = null;
      }
    })();
    return this.reviving;
  }
}

/** Say hello and wait for `ready`, or the reason the writer could not open the log. */
function greet(channel: LogChannel): Promise<HealthState> {
  return new Promise<HealthState>((resolve, reject) => {
    let settled = false;
    channel.listen((raw) => {
      if (settled) return;
      const message = raw as HostMessage;
      if (message?.t === 'ready') {
        settled = true;
        resolve(message.health);
      } else if (message?.t === 'open-failed') {
        settled = true;
        reject(fromWire(message.error));
      }
    });
    channel.onGone((reason) => {
      if (settled) return;
      settled = true;
      reject(new VerdictError('DECISION_LOG_UNAVAILABLE', `the decision log writer stopped before it was ready: ${reason}`));
    });
    channel.post({ t: 'hello' });
  });
}

