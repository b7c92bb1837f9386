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

  private constructor(store: SuspensionStore, private readonly options: SuspensionServiceOptions) {
    this.now = options.now ?? Date.now;
    this.book = new Suspensions(this.now);
    this.store = store;
    this.book.replace(store.readAtStart(this.now()));
    this.book.listen({
      suspended: (s) => {
        this.store.put(s);
        this.scheduleFlush();
      },
      ended: (s, expired) => {
        this.store.delete(s, !expired);
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

  /** Takes up what the table says, once this server's own changes are in it. */
  private sync(): void {
    this.book.sweep();
    if (!this.flush()) return;
    try {
      this.book.replace(this.store.read(this.now()));
    } catch (error) {
      // Kept from the file for a moment: the next second reads it.
      if (!isBusy(error)) this.options.onError?.(`suspensions could not be read from ${this.store.path}: ${messageOf(error)}`);
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

  constructor(private readonly service: SuspensionService, config: SuspendConfig) {
    this.types = new Set(config.types);
    this.ms = parseSuspensionDuration(config.for)!;
  }

  publish(alert: Alert): void {
    if (alert.subject.kind !== 'principal' || alert.subject.id === '' || !this.types.has(alert.type)) return;
    this.service.suspend(alert.subject.id, this.ms, { alertId: alert.id, alertType: alert.type, note: alert.summary });
  }
}
