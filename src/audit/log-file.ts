import type Database from 'better-sqlite3';
import type { Checkpoint } from '../decisions/checkpoint.js';
import { decisionColumns, openReadOnly, readSchemaVersion } from '../decisions/schema.js';
import { VerdictError, messageOf } from '../errors.js';

/** A decision log opened read-only by one of the audit tools. */
export interface LogFile {
  readonly path: string;
  readonly db: Database.Database;
  readonly schemaVersion: number;
  /** The columns its `decisions` table has (a log of an older schema lacks some). */
  readonly columns: ReadonlySet<string>;
}

/**
 * Open the log at `path` read-only: safe while the server writes it (WAL: the
 * tools see the last committed state and never take the write lock).
 * @throws VerdictError DECISION_LOG_UNAVAILABLE when there is none or it cannot be
 *   opened, DECISION_LOG_CORRUPT when it is not a verdict decision log
 */
export function openLogFile(path: string, shape: 'enforce' | 'unchecked' = 'enforce'): LogFile {
  const db = openReadOnly(path, shape);
  return { path, db, schemaVersion: readSchemaVersion(db), columns: decisionColumns(db) };
}

/** Run `use` on the log at `path`, closing it afterwards; a failure to read it is DECISION_LOG_CORRUPT. */
export function withLogFile<T>(path: string, what: string, use: (log: LogFile) => T): T {
  const log = openLogFile(path);
  try {
    return use(log);
  } catch (error) {
    if (error instanceof VerdictError) throw error;
    throw new VerdictError('DECISION_LOG_CORRUPT', `cannot ${what} ${path}: ${messageOf(error)}`, { cause: error });
  } finally {
    log.db.close();
  }
}

/** Whether the log has a checkpoints table (schema v2 added it). */
export function hasCheckpointTable(log: LogFile): boolean {
  return log.db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'checkpoints'").get() !== undefined;
}

/**
 * Every checkpoint and prune anchor of a log, by seq. Read wherever the table
 * exists, whatever `user_version` says: lowering the version must not make
 * verify look away from the signatures.
 */
export function readCheckpoints(log: LogFile, range?: { readonly from: number; readonly to: number }): Checkpoint[] {
  if (!hasCheckpointTable(log)) return [];
  const where = range === undefined ? '' : ' WHERE seq BETWEEN ? AND ?';
  const rows = log.db
    .prepare(`SELECT kind, seq, hash, time_ms, key_id, signature, ${previousSeqColumn(log)} AS previous_seq, ${replicaIdColumn(log)} AS replica_id FROM checkpoints${where} ORDER BY seq, id`)
    .all(...(range ? [range.from, range.to] : [])) as Array<{
    kind: string;
    seq: number;
    hash: Buffer;
    time_ms: number;
    key_id: string;
    signature: Buffer;
    previous_seq: unknown;
    replica_id: unknown;
  }>;
  return rows.map((r) => ({
    // An unknown kind can only come from tampering; it then fails its signature check as a checkpoint.
    kind: r.kind === 'anchor' ? 'anchor' : 'checkpoint',
    seq: r.seq,
    hash: r.hash,
    timeMs: r.time_ms,
    keyId: r.key_id,
    signature: r.signature,
    previousSeq: readPreviousSeq(r.previous_seq),
    replicaId: readCheckpointReplicaId(r.replica_id),
  }));
}

/**
 * What to select for previous_seq: the column, or NULL in a log without it (schema v6
 * added it; an older log holds only v1 checkpoints). Looked up in the table itself,
 * whatever `user_version` says.
 */
export function previousSeqColumn(log: LogFile): string {
  return checkpointColumnOrNull(log, 'previous_seq');
}

/** What to select for replica_id: the column, or NULL in a log without it (schema v8 added it; an older log holds no v3 checkpoint). */
export function replicaIdColumn(log: LogFile): string {
  return checkpointColumnOrNull(log, 'replica_id');
}

function checkpointColumnOrNull(log: LogFile, column: 'previous_seq' | 'replica_id'): string {
  return (log.db.pragma('table_info(checkpoints)') as { name: string }[]).some((c) => c.name === column) ? column : 'NULL';
}

/** A checkpoint as the missing-checkpoint rule reads it (checkpoints.ts): its seq, and the seq it names as signed before it. */
export interface CheckpointLink {
  readonly seq: number;
  readonly previousSeq: number | null;
}

/**
 * The links of every checkpoint of a log (prune anchors left out), by seq: only
 * the two columns, for the console's incremental passes, which check each time
 * that no checkpoint was removed and verify the full rows only of the new ones.
 * A kind other than `anchor` is read as a checkpoint, as readCheckpoints does.
 */
export function readCheckpointLinks(log: LogFile): CheckpointLink[] {
  if (!hasCheckpointTable(log)) return [];
  const rows = log.db.prepare(`SELECT seq, ${previousSeqColumn(log)} AS previous_seq FROM checkpoints WHERE kind IS NOT 'anchor' ORDER BY seq, id`).all() as Array<{ seq: number; previous_seq: unknown }>;
  return rows.map((r) => ({ seq: r.seq, previousSeq: readPreviousSeq(r.previous_seq) }));
}

/**
 * previous_seq as stored: NULL for a v1 checkpoint. Anything but an integer can only
 * come from tampering; it is read as a seq no checkpoint has (-1), so the signature,
 * made over another message, fails.
 */
export function readPreviousSeq(value: unknown): number | null {
  if (value === null) return null;
  return typeof value === 'number' && Number.isSafeInteger(value) ? value : -1;
}

/**
 * replica_id as stored: NULL for a v2 or v1 checkpoint. Anything but text can only
 * come from tampering; it is read as its JSON text, so the signature, made over
 * another message, fails (and the mismatch names what was found).
 */
export function readCheckpointReplicaId(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  return Buffer.isBuffer(value) ? `x'${value.toString('hex')}'` : String(value);
}
