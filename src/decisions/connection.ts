/**
 * The writer's connection to a log file, and what its failures mean: opening
 * (directory, an orphaned write-ahead log set aside, WAL, the mode's
 * `synchronous` level read back, migrations), the prepared statements the
 * writer uses, the check that the path still names the opened file, and one
 * sentence an operator can act on for each kind of write failure.
 */
import fs from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import { INSERT_SQL, type RowValue } from './columns.js';
import { claimReplica, recordedReplicaId, refuseOtherReplica } from './replica.js';
import { migrate } from './schema.js';

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

type CheckpointParams = [kind: string, seq: number, hash: Buffer, timeMs: number, keyId: string, signature: Buffer, previousSeq: number, replicaId: string | null];

/**
 * The writer's connection to a log file: opened in WAL mode with the mode's
 * `synchronous` level (both read back), migrated, and pinned to the file it
 * opened (see checkIdentity).
 */
export interface Connection {
  readonly db: Database.Database;
  /** INSERT_SQL (columns.ts): seq, the columns, prev_hash, hash, format. */
  readonly insert: Database.Statement<[Array<RowValue | Buffer>]>;
  readonly tip: Database.Statement<[], { seq: number; hash: Buffer | null }>;
  /** The prune anchor: where the chain continues when every row has been pruned. */
  readonly anchor: Database.Statement<[], { seq: number; hash: Buffer }>;
  readonly lastCheckpoint: Database.Statement<[], { seq: number; time_ms: number }>;
  readonly insertCheckpoint: Database.Statement<CheckpointParams>;
  /**
   * The replica id the log records once opened (claimed, when the writer was
   * given one): signed into every checkpoint, so verify can tell a checkpoint
   * copied from another replica's log. Null for a log no server has named.
   */
  readonly replicaId: string | null;
  readonly probe: Database.Statement<[number]>;
  readonly dev: bigint;
  readonly ino: bigint;
  /**
   * The write-ahead log this connection writes to (`path-wal`), or null until
   * it exists: SQLite keeps it open, so a removed or replaced one would take
   * every commit since the last checkpoint with it (see checkIdentity).
   */
  wal: { readonly dev: bigint; readonly ino: bigint } | null;
}

/** The path no longer names the file the connection writes to. */
class FileMovedError extends Error {}

/** `path-wal` is no longer the write-ahead log the connection writes to (removed, or replaced by another file). */
class WalMovedError extends Error {}

/**
 * Open, configure and migrate one write connection, creating the file (and,
 * with `createDirectory`, its directory) if needed.
 * With `replicaId`, a log naming another replica is refused before anything is
 * written to it, and a log naming none is named after this one (replica.ts).
 * @throws VerdictError DECISION_LOG_UNAVAILABLE, DECISION_LOG_CORRUPT for a file that is not a decision log,
 *   DECISION_LOG_REPLICA_MISMATCH for another replica's log
 */
export function openConnection(path: string, mode: DecisionLogMode, busyTimeoutMs: number, createDirectory = false, replicaId: string | null = null): Connection {
  if (createDirectory) {
    try {
      fs.mkdirSync(dirname(path), { recursive: true });
    } catch (error) {
      throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot create the directory of the decision log ${path}: ${messageOf(error)}`, { cause: error });
    }
  }
  setAsideOrphanedWal(path);
  let db: Database.Database;
  try {
    // ':memory:' names SQLite's in-memory database, not a file to create.
    if (path !== ':memory:') createPrivately(path);
    db = new Database(path, { timeout: busyTimeoutMs });
  } catch (error) {
    throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot open the decision log ${path}: ${messageOf(error)} (${sqliteCode(error) ?? 'error'}); check that it is a writable file in a writable directory`, {
      cause: error,
    });
  }
  try {
    if (replicaId !== null) refuseOtherReplica(db, path, replicaId);
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
    if (replicaId !== null) claimReplica(db, path, replicaId);
    const stat = fs.statSync(path, { bigint: true });
    return {
      db,
      insert: db.prepare<[Array<RowValue | Buffer>]>(INSERT_SQL),
      tip: db.prepare<[], { seq: number; hash: Buffer | null }>('SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1'),
      anchor: db.prepare<[], { seq: number; hash: Buffer }>("SELECT seq, hash FROM checkpoints WHERE kind = 'anchor' ORDER BY seq DESC LIMIT 1"),
      lastCheckpoint: db.prepare<[], { seq: number; time_ms: number }>("SELECT seq, time_ms FROM checkpoints WHERE kind = 'checkpoint' ORDER BY seq DESC LIMIT 1"),
      insertCheckpoint: db.prepare<CheckpointParams>('INSERT INTO checkpoints (kind, seq, hash, time_ms, key_id, signature, previous_seq, replica_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      replicaId: recordedReplicaId(db, path),
      probe: db.prepare<[number]>("INSERT INTO log_meta (key, value) VALUES ('probe_ms', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
      dev: stat.dev,
      ino: stat.ino,
      wal: walIdentity(path),
    };
  } catch (error) {
    closeQuietly(db);
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

/** Close a connection that is being abandoned because it failed; its close may fail too. */
export function closeQuietly(db: Database.Database): void {
  try {
    db.close();
  } catch {
    // See above.
  }
}

/**
 * SQLite keeps writing to a file that was deleted or renamed under it, and
 * reports success: the writer calls this inside every transaction (and its
 * write-ahead log part after every commit), so rows written to a file the path
 * no longer names are rolled back and reported. The same holds for `path-wal`:
 * a removed write-ahead log keeps receiving commits that exist only in this
 * process's open file, lost at the next crash; see rescueWal.
 */
export function checkIdentity(conn: Connection, path: string): void {
  const stat = fs.statSync(path, { bigint: true, throwIfNoEntry: false });
  if (stat === undefined || stat.ino !== conn.ino || stat.dev !== conn.dev) {
    throw new FileMovedError();
  }
  checkWal(conn, path);
}

/** The write-ahead log part of checkIdentity: throws when `path-wal` is not the file the connection writes to. */
export function checkWal(conn: Connection, path: string): void {
  if (conn.wal === null) {
    // Created by SQLite after the open (the first write to a new log): from now on it must stay.
    conn.wal = walIdentity(path);
    return;
  }
  const stat = fs.statSync(`${path}-wal`, { bigint: true, throwIfNoEntry: false });
  if (stat === undefined || stat.ino !== conn.wal.ino || stat.dev !== conn.wal.dev) throw new WalMovedError();
}

/** Whether the path or its write-ahead log no longer names what the connection writes to. */
export function hasMoved(conn: Connection, path: string): boolean {
  try {
    checkIdentity(conn, path);
    return false;
  } catch {
    return true;
  }
}

/**
 * Save what a removed or replaced write-ahead log holds: the connection still
 * has the old one open, so a checkpoint copies every commit in it into the main
 * file (fsynced) and empties it. A file someone put at `path-wal` instead is
 * not this log's: it is moved aside (kept, as `path-wal.replaced-<ms>`) so that
 * reopening cannot replay it. Returns null when done, else why not (the
 * connection must then be kept open, and this tried again).
 */
export function rescueWal(conn: Connection, path: string): string | null {
  if (conn.wal === null) return null;
  try {
    const wal = fs.statSync(`${path}-wal`, { bigint: true, throwIfNoEntry: false });
    if (wal !== undefined && wal.ino === conn.wal.ino && wal.dev === conn.wal.dev) return null;
    if (conn.db.inTransaction) conn.db.exec('ROLLBACK');
    const [result] = conn.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
    if (result === undefined || result.busy !== 0) {
      return `its ${path}-wal was removed or replaced, and the decisions it held could not yet be copied into ${path} (a reader holds an old snapshot); retrying`;
    }
    const now = fs.statSync(`${path}-wal`, { bigint: true, throwIfNoEntry: false });
    if (now !== undefined && now.size > 0n && !(now.ino === conn.wal.ino && now.dev === conn.wal.dev)) {
      fs.renameSync(`${path}-wal`, `${path}-wal.replaced-${Date.now()}`);
    }
    return null;
  } catch (error) {
    return `its ${path}-wal was removed or replaced, and the decisions it held could not be copied into ${path}: ${messageOf(error)}; retrying`;
  }
}

function walIdentity(path: string): { dev: bigint; ino: bigint } | null {
  const stat = fs.statSync(`${path}-wal`, { bigint: true, throwIfNoEntry: false });
  return stat === undefined ? null : { dev: stat.dev, ino: stat.ino };
}

/** Whether SQLite refused a statement for a constraint (a duplicate decision id): the row fails alone. */
export function isConstraintError(error: unknown): boolean {
  return sqliteCode(error)?.startsWith('SQLITE_CONSTRAINT') ?? false;
}

function sqliteCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string' && code.startsWith('SQLITE_')) return code;
  }
  return undefined;
}

/**
 * Why a write failed and what to do, in one sentence an operator can act on;
 * `reopen` when a fresh connection may cure it (the file was replaced, damaged,
 * made read-only).
 */
export function describeWriteFailure(cause: unknown, path: string, busyTimeoutMs: number): { message: string; reopen: boolean } {
  const denied = 'New decisions are denied until it can be written again.';
  if (cause instanceof FileMovedError) {
    return {
      message: `the decision log ${path} was removed or replaced while in use, so the last batch was not recorded. verdict reopens it (creating a new log if the path is free) on the next write. ${denied}`,
      reopen: true,
    };
  }
  if (cause instanceof WalMovedError) {
    return {
      message: `the write-ahead log ${path}-wal was removed or replaced while in use, so the last batch was refused. verdict copies the decisions it held into ${path} and reopens the log with a new one on the next write. ${denied}`,
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

/**
 * Creates `path` empty with mode 0600 when it does not exist yet, so a new log (or its
 * lock file) is readable by its owner only: it holds principals' attributes. SQLite
 * gives the `-wal` and `-shm` files the mode of the database file. An existing file
 * keeps the mode its operator chose, and is never opened here: closing a descriptor
 * of a file drops every POSIX lock this process holds on it (lock.ts).
 */
export function createPrivately(path: string): void {
  let fd: number;
  try {
    fd = fs.openSync(path, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw error;
  }
  try {
    // The umask may have narrowed the mode, never widened it; make it exact anyway.
    fs.fchmodSync(fd, 0o600);
  } finally {
    fs.closeSync(fd);
  }
}
