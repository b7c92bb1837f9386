import Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import type { SuspensionState } from '../types.js';

/**
 * The suspensions in force, in a table of their own beside the decisions in the
 * decision log's file (`suspensions`): outside the hash chain, since a
 * suspension is state that changes (it is lifted, it expires), not a record.
 * What it did is recorded in the chain anyway: every check it refused, and every
 * Admin call that made or lifted one.
 *
 * A connection is opened only while the table is read or written (rare: a
 * suspension made, lifted or ended), never held: a second open connection would
 * keep the write-ahead log from being reset, which matters when the disk fills.
 * Changes are written a moment after they are made (`flush`, batched in one
 * transaction), never inside a check; `read` is how a restarted server, or
 * another worker process, learns them. Both run on the thread that answers
 * checks, so by default neither waits for a lock: while the decision log's writer
 * holds it they fail at once with SQLITE_BUSY (`isBusy`) and are tried again later.
 */
export class SuspensionStore {
  private readonly pending = new Map<string, { kind: 'put'; suspension: SuspensionState } | { kind: 'delete'; since: number }>();

  private constructor(readonly path: string) {}

  /**
   * Opens the table in the decision log at `path` (which must exist: open it after the log), creating it if needed.
   * @throws VerdictError DECISION_LOG_UNAVAILABLE when the file cannot be opened or the table created
   */
  static open(path: string): SuspensionStore {
    const store = new SuspensionStore(path);
    try {
      // At start, before any check: waiting for the lock costs nobody.
      store.withDb((db) => db.exec(CREATE_TABLE), STARTUP_WAIT_MS);
    } catch (error) {
      throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot open the suspensions table in ${path}: ${messageOf(error)}; check that the decision log is a writable file`, { cause: error });
    }
    return store;
  }

  private withDb<T>(use: (db: Database.Database) => T, waitMs = 0): T {
    const db = new Database(this.path, { fileMustExist: true, timeout: waitMs });
    try {
      return use(db);
    } finally {
      db.close();
    }
  }

  /** Queues a suspension to be written by the next flush. */
  put(suspension: SuspensionState): void {
    this.pending.set(suspension.principalId, { kind: 'put', suspension });
  }

  /**
   * Queues the end of a suspension to be written by the next flush. One that expired
   * takes only itself: a newer one another worker stored is kept. One an operator
   * lifted takes whatever the table holds for the principal: a worker that extended it
   * since this one last read the table would otherwise have it back at the next read.
   */
  delete(suspension: SuspensionState, lifted = false): void {
    this.pending.set(suspension.principalId, { kind: 'delete', since: lifted ? Number.MAX_SAFE_INTEGER : suspension.since });
  }

  /** Whether changes wait to be written. */
  get dirty(): boolean {
    return this.pending.size > 0;
  }

  /**
   * Writes the queued changes in one transaction, waiting at most `waitMs` for the write lock.
   * @throws Error from SQLite when they cannot be written (they stay queued for the next flush); SQLITE_BUSY (`isBusy`) when the lock was held
   */
  flush(waitMs = 0): void {
    if (this.pending.size === 0) return;
    const changes = [...this.pending];
    this.withDb((db) => {
      const upsert = db.prepare<[string, number, number, string, string, string]>(UPSERT_SQL);
      // Only the suspension that ended: a newer one (from another worker) is kept.
      const remove = db.prepare<[string, number]>('DELETE FROM suspensions WHERE principal_id = ? AND since_ms <= ?');
      db.transaction(() => {
        for (const [principalId, change] of changes) {
          if (change.kind === 'put') {
            const s = change.suspension;
            upsert.run(s.principalId, s.since, s.until, s.alertId, s.alertType, s.note);
          } else remove.run(principalId, change.since);
        }
      })();
    }, waitMs);
    for (const [principalId, change] of changes) if (this.pending.get(principalId) === change) this.pending.delete(principalId);
  }

  /**
   * Every stored suspension that has not ended by `now`, soonest to end first.
   * @throws Error from SQLite when the table cannot be read; SQLITE_BUSY (`isBusy`) when a lock kept it for longer than `waitMs`
   */
  read(now: number, waitMs = 0): SuspensionState[] {
    const rows = this.withDb((db) => db.prepare<[], Row>('SELECT principal_id, since_ms, until_ms, alert_id, alert_type, note FROM suspensions ORDER BY until_ms').all(), waitMs);
    return rows
      .filter((row) => row.until_ms > now)
      .map((row) => ({ principalId: row.principal_id, since: row.since_ms, until: row.until_ms, alertId: row.alert_id, alertType: row.alert_type, note: row.note }));
  }

  /** Writes what is queued, waiting for the lock as long as a busy log may hold it: only at shutdown, when no check waits. */
  close(): void {
    this.flush(STARTUP_WAIT_MS);
  }

  /** The suspensions in force at start, waiting for the lock if need be (no check is answered yet). */
  readAtStart(now: number): SuspensionState[] {
    return this.read(now, STARTUP_WAIT_MS);
  }
}

/** Whether SQLite failed because another connection (the decision log's writer) held the lock: try again later. */
export function isBusy(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null && 'code' in error ? (error as { code: unknown }).code : undefined;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || (typeof code === 'string' && code.startsWith('SQLITE_BUSY_'));
}

/** How long start-up and shutdown, when no check waits, may wait for the decision log's writer to release its lock. */
const STARTUP_WAIT_MS = 2000;

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS suspensions (
  principal_id TEXT PRIMARY KEY,
  since_ms     INTEGER NOT NULL,
  until_ms     INTEGER NOT NULL,
  alert_id     TEXT    NOT NULL,
  alert_type   TEXT    NOT NULL,
  note         TEXT    NOT NULL
) WITHOUT ROWID`;

// A suspension another worker stored that ends later is kept: a second alert never shortens one, across workers too.
const UPSERT_SQL =
  'INSERT INTO suspensions (principal_id, since_ms, until_ms, alert_id, alert_type, note) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (principal_id) DO UPDATE SET since_ms = excluded.since_ms, until_ms = excluded.until_ms, alert_id = excluded.alert_id, alert_type = excluded.alert_type, note = excluded.note WHERE excluded.until_ms >= suspensions.until_ms';

interface Row {
  principal_id: string;
  since_ms: number;
  until_ms: number;
  alert_id: string;
  alert_type: string;
  note: string;
}
