// Suspension as a response to alerts, and by hand: the book the decide core
// asks (decide/suspensions.ts), kept in the decision log's file.

import type { Alert, AlertSink, AlertType } from '../analysis/alert.js';
import { Suspensions } from '../decide/index.js';
import { SuspensionStore, isBusy } from '../decisions/suspension-store.js';
import { VerdictError, messageOf } from '../errors.js';
import type { SuspensionState } from '../types.js';
import { MAX_SUSPENSION_MS, parseSuspensionDuration, type SuspendConfig } from './alert-response-config.js';
import type { AlertResponseMetrics } from './metrics.js';

/** How often a server reads the suspensions table for what another worker process (or a lift) changed. */
export const SUSPENSION_SYNC_MS = 1000;

/**
 * Changed rows read at once: a worker far behind (thousands of alerts at once in
 * another) catches up in reads of this many, each its own turn of the event loop,
 * so checks are answered between them.
 */
const SYNC_BATCH = 500;
/** How often a server deletes rows whose time is up, and how many at most each time. */
const PRUNE_MS = 60_000;
const PRUNE_BATCH = 1000;
/** At most one log line per this long about alerts refused at alerts.suspend.maxSuspended (each is counted). */
const REFUSAL_LOG_MS = 60_000;

/** How soon a write the decision log's writer kept from its lock is tried again. */
const BUSY_RETRY_MS = 50;
/** How long writes may keep finding the lock held before it is reported. */
const BUSY_REPORT_MS = 5000;

/** Longest note kept with a suspension. */
const MAX_NOTE = 1000;

export interface SuspensionServiceOptions {
  readonly metrics: AlertResponseMetrics;
  /** Told when the table cannot be written or read (the suspensions in memory still hold). */
  readonly onError?: (error: string) => void;
  /** Told (at most once a minute) when alerts suspended nobody because alerts.suspend.maxSuspended were in force. */
  readonly onRefused?: (message: string) => void;
  readonly now?: () => number;
}

/**
 * The suspensions of one server: the book the pipeline asks on every check,
 * its table in the decision log's file (read at start, so suspensions survive
 * a restart; written a moment after each change; read again every second, so
 * the worker processes of `--workers N` and a lift through any of them agree),
 * manual suspension and lifting (Admin API), and the alert response (`sink`).
 */
export class SuspensionService {
  readonly book: Suspensions;
  private readonly store: SuspensionStore;
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;
  private flushing = false;
  private retry: NodeJS.Timeout | null = null;
  /** Since when writes have found the lock held (null: the last write went through). */
  private busySince: number | null = null;
  /** The last change_seq of the table this server has taken up. */
  private seen: number;
  /** Whether reads of a long run of changes are under way (each batch in a turn of its own). */
  private catchingUp = false;
  private closed = false;
  private lastPrune = 0;
  /** Alerts refused at the cap since the last log line about them, and when that was. */
  private refused = 0;
  private refusalLoggedAt = Number.NEGATIVE_INFINITY;

  private constructor(store: SuspensionStore, private readonly options: SuspensionServiceOptions) {
    this.now = options.now ?? Date.now;
    this.book = new Suspensions(this.now);
    this.store = store;
    const start = store.readAtStart(this.now());
    this.book.replace(start.suspensions);
    this.seen = start.last;
    this.book.listen({
      suspended: (s) => {
        this.store.put(s);
        this.scheduleFlush();
      },
      // An expiry is written by no one: every worker sees the time is up, and prune deletes the row.
      ended: (s, expired) => {
        if (expired) return;
        this.store.lift(s);
        this.scheduleFlush();
      },
    });
    this.timer = setInterval(() => this.sync(), SUSPENSION_SYNC_MS);
    this.timer.unref();
  }

  /**
   * Opens the suspensions table of the decision log at `dbPath` (after the log opened it).
   * @throws VerdictError DECISION_LOG_UNAVAILABLE when it cannot
   */
  static open(dbPath: string, options: SuspensionServiceOptions): SuspensionService {
    return new SuspensionService(SuspensionStore.open(dbPath), options);
  }

  /** The alert response for `config`: an AlertSink, or null when suspension is off. */
  sink(config: SuspendConfig): AlertSink | null {
    if (!config.enabled) return null;
    return new SuspendingSink(this, config);
  }

  /**
   * Suspends a principal from now for `ms` (an alert's, or an operator's; `alertId`
   * '' and `alertType` `manual` for the latter). A principal already suspended
   * longer stays so. Returns the suspension in force.
   */
  suspend(principalId: string, ms: number, cause: { alertId: string; alertType: AlertType | 'manual'; note: string }): SuspensionState {
    const since = this.now();
    const suspension = this.book.suspend({ principalId, since, until: since + ms, alertId: cause.alertId, alertType: cause.alertType, note: cause.note.slice(0, MAX_NOTE) });
    if (suspension.since === since) this.options.metrics.suspensions.inc({ cause: cause.alertType });
    return suspension;
  }

  /**
   * Suspends a principal because of an alert, unless `max` suspensions are in force
   * already and the principal is not one of them: then the alert suspends nobody,
   * and is counted and logged. Returns the suspension in force, or null when refused.
   */
  suspendForAlert(alert: Alert, ms: number, max: number): SuspensionState | null {
    const principalId = alert.subject.id;
    if (this.book.size >= max && this.book.active(principalId) === undefined) {
      this.options.metrics.suspensionsRefused.inc({ cause: alert.type });
      this.refused++;
      const now = this.now();
      if (now - this.refusalLoggedAt >= REFUSAL_LOG_MS) {
        this.options.onRefused?.(
          `${this.refused} alert(s) suspended nobody (the last: ${alert.id}, ${alert.type}): alerts.suspend.maxSuspended (${max}) suspensions are in force; their principals are answered by the policies as before (the alerts table keeps every alert; suspend by hand with verdict suspend add)`,
        );
        this.refused = 0;
        this.refusalLoggedAt = now;
      }
      return null;
    }
    return this.suspend(principalId, ms, { alertId: alert.id, alertType: alert.type, note: alert.summary });
  }

  /**
   * Suspends a principal on an operator's word (Admin SuspendPrincipal).
   * @throws VerdictError INPUT_INVALID for an empty principal or a duration out of range
   */
  suspendManually(principalId: string, ms: number, note: string): SuspensionState {
    if (principalId === '') throw new VerdictError('INPUT_INVALID', 'principal_id is required');
    if (!(ms >= 1000 && ms <= MAX_SUSPENSION_MS)) throw new VerdictError('INPUT_INVALID', `duration must be between 1s and 30d, not ${ms / 1000}s`);
    return this.suspend(principalId, ms, { alertId: '', alertType: 'manual', note });
  }

  /** Lifts a principal's suspension now; the one lifted, or undefined when it had none. */
  lift(principalId: string): SuspensionState | undefined {
    const lifted = this.book.lift(principalId);
    if (lifted !== undefined) this.options.metrics.suspensionsLifted.inc();
    return lifted;
  }

  /** The suspensions in force, soonest to end first. */
  list(): SuspensionState[] {
    return this.book.list();
  }

  /** Writes what changed, then stops reading the table and closes it. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    if (this.retry !== null) clearTimeout(this.retry);
    try {
      this.store.close();
    } catch (error) {
      this.options.onError?.(`suspensions could not be written on close: ${messageOf(error)}`);
    }
  }

  private scheduleFlush(): void {
    if (this.flushing) return;
    this.flushing = true;
    // Never inside the caller's turn (a detector's, on the decision path).
    setImmediate(() => {
      this.flushing = false;
      this.flush();
    });
  }

  /**
   * Writes what changed without waiting for the lock: this thread answers checks,
   * and the decision log's writer may hold the lock for as long as a slow disk
   * takes. Kept from it, the write is tried again shortly (the suspension already
   * holds in memory), and reported only if that goes on.
   */
  private flush(): boolean {
    try {
      this.store.flush();
      this.busySince = null;
      return true;
    } catch (error) {
      if (isBusy(error)) {
        const now = this.now();
        this.busySince ??= now;
        if (now - this.busySince >= BUSY_REPORT_MS) {
          this.options.onError?.(`suspensions could not be written to ${this.store.path} for ${Math.round((now - this.busySince) / 1000)} s: the decision log's writer keeps the file locked (kept in memory, retried)`);
          this.busySince = now;
        }
        this.retrySoon();
      } else {
        this.options.onError?.(`suspensions could not be written to ${this.store.path} (kept in memory, retried): ${messageOf(error)}`);
      }
      return false;
    }
  }

  private retrySoon(): void {
    if (this.retry !== null) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      if (this.store.dirty) this.flush();
    }, BUSY_RETRY_MS);
    this.retry.unref();
  }

  /** Takes up what changed in the table; now and then deletes the rows whose time is up. */
  private sync(): void {
    this.book.sweep();
    this.prune();
    if (!this.catchingUp) this.readChanges();
  }

  /**
   * Takes up the rows changed since the last read, once this server's own changes
   * are in the table (so what it reads is never older than what it holds), a batch
   * at a time: a full batch reads on in the next turn of the event loop.
   */
  private readChanges(): void {
    this.catchingUp = false;
    if (this.closed || !this.flush()) return;
    try {
      const { changes, last } = this.store.readChanges(this.seen, SYNC_BATCH);
      this.book.apply(changes);
      this.seen = last;
      if (changes.length === SYNC_BATCH) {
        this.catchingUp = true;
        setImmediate(() => this.readChanges());
      }
    } catch (error) {
      // Kept from the file for a moment: the next second reads it.
      if (!isBusy(error)) this.options.onError?.(`suspensions could not be read from ${this.store.path}: ${messageOf(error)}`);
    }
  }

  private prune(): void {
    const now = this.now();
    if (now - this.lastPrune < PRUNE_MS) return;
    try {
      // A full batch leaves more: the next second deletes on.
      if (this.store.prune(now, PRUNE_BATCH) < PRUNE_BATCH) this.lastPrune = now;
    } catch (error) {
      if (!isBusy(error)) this.options.onError?.(`ended suspensions could not be deleted from ${this.store.path}: ${messageOf(error)}`);
    }
  }
}

/**
 * The alert response: an alert of a listed type about a principal suspends it
 * for the configured time. O(1), no I/O in `publish` (the table is written a
 * moment later). Alerts about an API key, a token subject or a source address
 * suspend nothing: revoke the key (`verdict keys revoke`) or block the address.
 */
export class SuspendingSink implements AlertSink {
  private readonly types: ReadonlySet<AlertType>;
  private readonly ms: number;
  private readonly max: number;

  constructor(private readonly service: SuspensionService, config: SuspendConfig) {
    this.types = new Set(config.types);
    this.ms = parseSuspensionDuration(config.for)!;
    this.max = config.maxSuspended;
  }

  publish(alert: Alert): void {
    if (alert.subject.kind !== 'principal' || alert.subject.id === '' || !this.types.has(alert.type)) return;
    this.service.suspendForAlert(alert, this.ms, this.max);
  }
}
