/**
 * One server per decision log. `verdict serve` holds a lock on `<db>.lock` for
 * as long as it writes `<db>`; a second server on the same file is refused,
 * naming the process that holds it.
 *
 * The lock is SQLite's own write lock (POSIX record locks, taken by
 * `BEGIN IMMEDIATE` on a small WAL-mode database beside the log and held open), so the
 * kernel releases it when its process ends however it ends, `kill -9`
 * included: there is no stale lock to detect or clean up. The holder's pid,
 * host and start time are committed into that database before the lock is
 * held for good, so a refused server can say who holds it.
 */
import fs from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import { createPrivately } from './connection.js';

/** A held decision-log lock; `release()` is idempotent. */
export interface LogLock {
  readonly path: string;
  release(): void;
}

/** Who holds a lock, as it recorded itself. */
interface Holder {
  readonly pid: number;
  readonly host: string;
  readonly since: string;
}

/** How long opening the lock file waits for another server that is opening it too. */
const SETUP_TIMEOUT_MS = 2000;

/** The lock file of the decision log at `dbPath`. */
export function lockPathOf(dbPath: string): string {
  return `${dbPath}.lock`;
}

/**
 * Take the exclusive lock on the decision log at `dbPath`, creating its
 * directory and the lock file (mode 0600) as needed.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE when another process holds it (naming its pid) or the lock file cannot be used
 */
export function lockDecisionLog(dbPath: string): LogLock {
  const path = lockPathOf(dbPath);
  let db: Database.Database;
  try {
    fs.mkdirSync(dirname(path), { recursive: true });
    createPrivately(path);
    db = new Database(path, { timeout: 0 });
  } catch (error) {
    throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot create the lock file ${path} of the decision log ${dbPath}: ${messageOf(error)}; check that its directory is writable`, { cause: error });
  }
  try {
    // WAL: a reader never waits for the holder's write lock, nor the holder's commit for a reader.
    db.pragma(`busy_timeout = ${SETUP_TIMEOUT_MS}`);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE IF NOT EXISTS holder (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, since TEXT NOT NULL)');
    db.pragma('busy_timeout = 0');
  } catch (error) {
    db.close();
    if (isBusy(error)) throw heldError(dbPath, path);
    throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot use the lock file ${path} of the decision log ${dbPath}: ${messageOf(error)}; remove it (no server may be running on ${dbPath}) and start again`, { cause: error });
  }
  try {
    // Claim, publish who we are, and hold the write lock. Between the commit and the second BEGIN another
    // server may claim it; then that one holds and this one is refused, never both.
    db.exec('BEGIN IMMEDIATE');
    db.prepare('INSERT OR REPLACE INTO holder (id, pid, host, since) VALUES (1, ?, ?, ?)').run(process.pid, hostname(), new Date().toISOString());
    db.exec('COMMIT');
    db.exec('BEGIN IMMEDIATE');
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK');
    if (!isBusy(error)) {
      db.close();
      throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot lock the decision log ${dbPath} (${path}): ${messageOf(error)}`, { cause: error });
    }
    const holder = readHolder(db);
    db.close();
    throw heldError(dbPath, path, holder);
  }
  let released = false;
  return {
    path,
    release: () => {
      if (released) return;
      released = true;
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}

function heldError(dbPath: string, lockPath: string, holder: Holder | null = null): VerdictError {
  const who = holder === null || holder.pid === process.pid ? 'another verdict server' : `verdict server pid ${holder.pid} on ${holder.host} (since ${holder.since})`;
  return new VerdictError(
    'DECISION_LOG_UNAVAILABLE',
    `the decision log ${dbPath} is in use by ${who}: it holds ${lockPath}. Each server needs a log of its own: stop that one, or give this one another --db (VERDICT_DB)`,
  );
}

/** The holder's committed record; null when it cannot be read in time. */
function readHolder(db: Database.Database): Holder | null {
  try {
    const row = db.prepare('SELECT pid, host, since FROM holder WHERE id = 1').get() as Holder | undefined;
    return row ?? null;
  } catch {
    return null;
  }
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}
