import Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import type { SuspensionState } from '../types.js';
import { readSchemaVersion } from './schema.js';

/** The schema version that made the suspensions table (schema.ts). */
const SUSPENSIONS_SCHEMA_VERSION = 5;

/**
 * The suspensions in force, in a table of their own beside the decisions in the
 * decision log's file (`suspensions`): outside the hash chain, since a
 * suspension is state that changes (it is lifted, it expires), not a record.
 * What it did is recorded in the chain anyway: every check it refused, and every
 * Admin call that made or lifted one.
 *
 * The server keeps its own connection (WAL: it never waits for the writer's
 * commits, nor they for it). Changes are written a moment after they are made
 * (`flush`, batched in one transaction), never inside a check; `read` is how a
 * restarted server, or another worker process, learns them.
 */
export class SuspensionStore {
  private readonly upsert: Database.Statement<[string, number, number, string, string, string]>;
  private readonly remove: Database.Statement<[string, number]>;
  private readonly all: Database.Statement<[], Row>;
  private readonly pending = new Map<string, { kind: 'put'; suspension: SuspensionState } | { kind: 'delete'; since: number }>();

  private constructor(private readonly db: Database.Database, readonly path: string) {
    this.upsert = db.prepare(
      'INSERT INTO suspensions (principal_id, since_ms, until_ms, alert_id, alert_type, note) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (principal_id) DO UPDATE SET since_ms = excluded.since_ms, until_ms = excluded.until_ms, alert_id = excluded.alert_id, alert_type = excluded.alert_type, note = excluded.note',
    );
    // Only the suspension that ended: a newer one (from another worker) is kept.
    this.remove = db.prepare('DELETE FROM suspensions WHERE principal_id = ? AND since_ms <= ?');
    this.all = db.prepare('SELECT principal_id, since_ms, until_ms, alert_id, alert_type, note FROM suspensions ORDER BY until_ms');
  }

  /**
   * Opens the table in the decision log at `path` (which must exist and be migrated: open it after the log).
   * @throws VerdictError DECISION_LOG_UNAVAILABLE when the file cannot be opened or the table created
   */
  static open(path: string): SuspensionStore {
    let db: Database.Database | null = null;
    try {
      db = new Database(path, { fileMustExist: true, timeout: 2000 });
      db.pragma('journal_mode = WAL');
      // The table is the log's (schema.ts, version 5), made when the log was opened or migrated.
      if (readSchemaVersion(db) < SUSPENSIONS_SCHEMA_VERSION) {
        throw new Error(`the log has schema v${readSchemaVersion(db)}, without the suspensions table (v${SUSPENSIONS_SCHEMA_VERSION}); open the log with this verdict's server first`);
      }
      return new SuspensionStore(db, path);
    } catch (error) {
      db?.close();
      throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot open the suspensions table in ${path}: ${messageOf(error)}; check that the decision log is a writable file`, { cause: error });
    }
  }

  /** Queues a suspension to be written by the next flush. */
  put(suspension: SuspensionState): void {
    this.pending.set(suspension.principalId, { kind: 'put', suspension });
  }

  /** Queues the end of a suspension (lifted or expired) to be written by the next flush. */
  delete(suspension: SuspensionState): void {
    this.pending.set(suspension.principalId, { kind: 'delete', since: suspension.since });
  }

  /** Whether changes wait to be written. */
  get dirty(): boolean {
    return this.pending.size > 0;
  }

  /**
   * Writes the queued changes in one transaction.
   * @throws Error from SQLite when they cannot be written (they stay queued for the next flush)
   */
  flush(): void {
    if (this.pending.size === 0) return;
    const changes = [...this.pending];
    this.db.transaction(() => {
      for (const [principalId, change] of changes) {
        if (change.kind === 'put') {
          const s = change.suspension;
          this.upsert.run(s.principalId, s.since, s.until, s.alertId, s.alertType, s.note);
        } else this.remove.run(principalId, change.since);
      }
    })();
    for (const [principalId, change] of changes) if (this.pending.get(principalId) === change) this.pending.delete(principalId);
  }

  /** Every stored suspension that has not ended by `now`, soonest to end first. */
  read(now: number): SuspensionState[] {
    return this.all
      .all()
      .filter((row) => row.until_ms > now)
      .map((row) => ({ principalId: row.principal_id, since: row.since_ms, until: row.until_ms, alertId: row.alert_id, alertType: row.alert_type, note: row.note }));
  }

  close(): void {
    try {
      this.flush();
    } finally {
      this.db.close();
    }
  }
}

interface Row {
  principal_id: string;
  since_ms: number;
  until_ms: number;
  alert_id: string;
  alert_type: string;
  note: string;
}
