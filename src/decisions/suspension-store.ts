import Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import { FOLD_IDENTITY, foldedId } from '../folded-id.js';
import { hasColumn, hasTable, readLogMeta, writeLogMeta } from './log-meta.js';
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
 * transaction), never inside a check; `readAtStart` is how a restarted server
 * learns them, `readChanges` how another worker process does.
 *
 * Every write stamps its row with the next `change_seq` (one more than the
 * table's largest), and a lift marks the row `lifted` rather than deleting it,
 * so a worker reads only the rows changed since its last read, lifts included,
 * however many suspensions the table holds. Rows whose time is up are deleted by
 * `prune`, except the one holding the largest `change_seq`: deleting it would let
 * the next write reuse its number, which a worker that read it would never see.
 *
 * All of this runs on the thread that answers checks, so by default nothing waits
 * for a lock: while the decision log's writer holds it a call fails at once with
 * SQLITE_BUSY (`isBusy`) and is tried again later.
 */
export class SuspensionStore {
  /**
   * By folded principal id (as the book holds them): whether it was lifted, then what
   * was stored after (a lift and a new suspension in one flush are both written, in
   * that order). Keyed by spelling, a lift queued under one would be written after a
   * later suspension queued under another, and take it off too.
   */
  private readonly pending = new Map<string, { readonly lift: boolean; readonly put: SuspensionState | null }>();

  private constructor(readonly path: string) {}

  /**
   * Opens the table in the decision log at `path` (which must exist: open it after the log), creating it if needed.
   * @throws VerdictError DECISION_LOG_UNAVAILABLE when the file cannot be opened or the table created
   */
  static open(path: string): SuspensionStore {
    const store = new SuspensionStore(path);
    try {
      // At start, before any check: waiting for the lock costs nobody.
      store.withDb((db) => ensureTable(db), STARTUP_WAIT_MS);
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
    const key = foldedId(suspension.principalId);
    this.pending.set(key, { lift: this.pending.get(key)?.lift ?? false, put: suspension });
  }

  /**
   * Queues a lift to be written by the next flush. It takes whatever the table holds
   * for the principal under every spelling of its id that folds alike: a worker that
   * extended the suspension since this one last read the table would otherwise keep
   * it, and a row stored under another spelling (`Dana` beside `dana`) would suspend
   * the principal again at the next start, or in a worker reading the table. (An
   * expiry needs no write: every worker sees the time is up, and `prune` deletes the row.)
   */
  lift(suspension: SuspensionState): void {
    this.pending.set(foldedId(suspension.principalId), { lift: true, put: null });
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
      const upsert = db.prepare<[string, string, number, number, string, string, string]>(UPSERT_SQL);
      const lift = db.prepare<[string]>(LIFT_SQL);
      const spellings = db.prepare<[string], string>(SPELLINGS_SQL).pluck();
      // IMMEDIATE: the next change_seq is read and written under one write lock, so no two writers take the same.
      db.transaction(() => {
        for (const [key, change] of changes) {
          // One row at a time, each with a change_seq of its own: a worker reading changes in batches never splits one number.
          if (change.lift) for (const principalId of spellings.all(key)) lift.run(principalId);
          const s = change.put;
          if (s !== null) upsert.run(s.principalId, foldedId(s.principalId), s.since, s.until, s.alertId, s.alertType, s.note);
        }
      }).immediate();
    }, waitMs);
    for (const [key, change] of changes) if (this.pending.get(key) === change) this.pending.delete(key);
  }

  /**
   * At most `limit` rows changed after `after` (a `change_seq`), oldest change
   * first, and the `change_seq` to read on from: one indexed range read, whatever
   * the table holds besides. A lifted row comes as `lifted`; one whose time is up
   * comes as it is (the reader drops it).
   * @throws Error from SQLite when the table cannot be read; SQLITE_BUSY (`isBusy`) when a lock kept it
   */
  readChanges(after: number, limit: number): { changes: SuspensionChange[]; last: number } {
    const rows = this.withDb((db) => db.prepare<[number, number], Row>(`SELECT ${COLUMNS} FROM suspensions WHERE change_seq > ? ORDER BY change_seq LIMIT ?`).all(after, limit));
    return { changes: rows.map(toChange), last: rows.length === 0 ? after : rows[rows.length - 1]!.change_seq };
  }

  /**
   * Deletes at most `limit` rows whose time was up by `now` (lifted ones too); how many it deleted.
   * @throws Error from SQLite when the table cannot be written; SQLITE_BUSY (`isBusy`) when the lock was held
   */
  prune(now: number, limit: number): number {
    return this.withDb((db) => db.prepare<[number, number]>(PRUNE_SQL).run(now, limit).changes);
  }

  /** Writes what is queued, waiting for the lock as long as a busy log may hold it: only at shutdown, when no check waits. */
  close(): void {
    this.flush(STARTUP_WAIT_MS);
  }

  /**
   * The suspensions in force at start, and the `change_seq` to read changes on from,
   * waiting for the lock if need be (no check is answered yet).
   * @throws Error from SQLite when the table cannot be read
   */
  readAtStart(now: number): { suspensions: SuspensionState[]; last: number } {
    return this.withDb((db) => {
      // One snapshot for both, so no change falls between them.
      const read = db.transaction(() => ({
        rows: db.prepare<[number], Row>(`SELECT ${COLUMNS} FROM suspensions WHERE until_ms > ? AND lifted = 0`).all(now),
        last: db.prepare<[], number | null>('SELECT max(change_seq) FROM suspensions').pluck().get() ?? 0,
      }));
      const { rows, last } = read();
      return { suspensions: rows.map((row) => toChange(row).suspension), last };
    }, STARTUP_WAIT_MS);
  }
}

/** A row as a worker takes it up: a suspension stored, or one lifted. */
export interface SuspensionChange {
  readonly suspension: SuspensionState;
  readonly lifted: boolean;
}

function toChange(row: Row): SuspensionChange {
  return { suspension: { principalId: row.principal_id, since: row.since_ms, until: row.until_ms, alertId: row.alert_id, alertType: row.alert_type, note: row.note }, lifted: row.lifted !== 0 };
}

/** Whether SQLite failed because another connection (the decision log's writer) held the lock: try again later. */
export function isBusy(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null && 'code' in error ? (error as { code: unknown }).code : undefined;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || (typeof code === 'string' && code.startsWith('SQLITE_BUSY_'));
}

/** How long start-up and shutdown, when no check waits, may wait for the decision log's writer to release its lock. */
const STARTUP_WAIT_MS = 2000;

/**
 * Makes the table, or adds what an older one lacks (the decision log's migrations
 * 5, 7 and 9 make the same; a file the log never migrated gets it here), and folds
 * the stored ids again when they were folded otherwise (`FOLD_IDENTITY`) or not at all.
 */
function ensureTable(db: Database.Database): void {
  db.exec(SUSPENSIONS_TABLE_SQL);
  if (!hasChangeColumns(db)) db.exec(SUSPENSION_CHANGES_SQL);
  if (!hasFoldedColumn(db)) db.exec(SUSPENSION_FOLDED_SQL);
  // Index lookups only: an open that finds the ids folded as this build folds them reads no row.
  const unfolded = db.prepare('SELECT 1 FROM suspensions WHERE folded_id IS NULL LIMIT 1').get() !== undefined;
  // A file the decision log never migrated has no log_meta: its ids are folded at every open, the fold not recorded.
  if (unfolded || readLogMeta(db, FOLD_META_KEY) !== FOLD_IDENTITY) db.transaction(() => foldSuspensions(db)).immediate();
}

/** The table as migration 5 made it (IF NOT EXISTS: servers created it beside the migrations before). */
export const SUSPENSIONS_TABLE_SQL = `
  CREATE TABLE IF NOT EXISTS suspensions (
    principal_id TEXT    PRIMARY KEY,
    since_ms     INTEGER NOT NULL,
    until_ms     INTEGER NOT NULL,
    alert_id     TEXT    NOT NULL,
    alert_type   TEXT    NOT NULL,
    note         TEXT    NOT NULL
  ) WITHOUT ROWID;
`;

/** Whether the suspensions table has `change_seq` and `lifted` (migration 7). */
export function hasChangeColumns(db: Database.Database): boolean {
  return hasColumn(db, 'suspensions', 'change_seq');
}

/** What migration 7 adds to the suspensions table: each row's change number, lifts kept as marks, and the indexes that read and prune them. */
export const SUSPENSION_CHANGES_SQL = `
  ALTER TABLE suspensions ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE suspensions ADD COLUMN lifted INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX IF NOT EXISTS suspensions_change ON suspensions (change_seq);
  CREATE INDEX IF NOT EXISTS suspensions_until ON suspensions (until_ms);
`;

/** Whether the suspensions table has `folded_id` (migration 9). */
export function hasFoldedColumn(db: Database.Database): boolean {
  return hasColumn(db, 'suspensions', 'folded_id');
}

/**
 * What migration 9 adds to the suspensions table: each row's principal id as
 * `foldedId` folds it, and its index, so a lift finds every spelling of an id by one
 * index search instead of folding every row the table holds. Nullable because
 * ALTER TABLE cannot add a NOT NULL column without a default; `foldSuspensions`
 * fills it, and every write sets it.
 */
export const SUSPENSION_FOLDED_SQL = `
  ALTER TABLE suspensions ADD COLUMN folded_id TEXT;
  CREATE INDEX IF NOT EXISTS suspensions_folded ON suspensions (folded_id);
`;

/** The `log_meta` key naming the fold the stored folded ids were made with (`FOLD_IDENTITY`). */
const FOLD_META_KEY = 'suspensions_fold';

/**
 * Sets every row's `folded_id` as this build folds its principal id, and records
 * the fold in `log_meta`. The fold is JavaScript (NFKC, invisible characters), not
 * SQL, so rows are read out and written back; it reads the whole table, which is
 * why it runs only in migration 9 and when the fold changed (a Node with another
 * Unicode version, a release that folds otherwise). Call it inside a transaction.
 */
export function foldSuspensions(db: Database.Database): void {
  const rows = db.prepare<[], { principal_id: string; folded_id: string | null }>('SELECT principal_id, folded_id FROM suspensions').all();
  const update = db.prepare<[string, string]>('UPDATE suspensions SET folded_id = ? WHERE principal_id = ?');
  for (const row of rows) {
    const folded = foldedId(row.principal_id);
    if (folded !== row.folded_id) update.run(folded, row.principal_id);
  }
  if (hasTable(db, 'log_meta')) writeLogMeta(db, FOLD_META_KEY, FOLD_IDENTITY);
}

const COLUMNS = 'principal_id, since_ms, until_ms, alert_id, alert_type, note, change_seq, lifted';

const NEXT_CHANGE = '(SELECT coalesce(max(change_seq), 0) + 1 FROM suspensions)';

// A suspension another worker stored that ends later is kept (a second alert never shortens one, across workers
// too), unless it was lifted: then this one is a new suspension, made after the lift.
const UPSERT_SQL = `INSERT INTO suspensions (principal_id, folded_id, since_ms, until_ms, alert_id, alert_type, note, change_seq, lifted) VALUES (?, ?, ?, ?, ?, ?, ?, ${NEXT_CHANGE}, 0)
  ON CONFLICT (principal_id) DO UPDATE SET folded_id = excluded.folded_id, since_ms = excluded.since_ms, until_ms = excluded.until_ms, alert_id = excluded.alert_id, alert_type = excluded.alert_type, note = excluded.note, change_seq = excluded.change_seq, lifted = 0
  WHERE suspensions.lifted = 1 OR excluded.until_ms >= suspensions.until_ms`;

/**
 * The spellings a lift takes off: one search of `suspensions_folded`, however many rows
 * the table holds (test/decisions/suspension-fold.test.ts reads its query plan).
 */
export const SPELLINGS_SQL = 'SELECT principal_id FROM suspensions WHERE folded_id = ? AND lifted = 0';

// The row keeps its until_ms: prune deletes the mark once every worker's copy has ended by itself anyway.
const LIFT_SQL = `UPDATE suspensions SET lifted = 1, change_seq = ${NEXT_CHANGE} WHERE principal_id = ? AND lifted = 0`;

const PRUNE_SQL = `DELETE FROM suspensions WHERE principal_id IN (
  SELECT principal_id FROM suspensions WHERE until_ms <= ? AND change_seq < (SELECT coalesce(max(change_seq), 0) FROM suspensions) LIMIT ?)`;

interface Row {
  principal_id: string;
  since_ms: number;
  until_ms: number;
  alert_id: string;
  alert_type: string;
  note: string;
  change_seq: number;
  lifted: number;
}
