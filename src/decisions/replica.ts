/**
 * The replica id: which server process (with its workers) a decision log belongs
 * to. Each replica behind a load balancer keeps its own log and chain; the id is
 * recorded in the log's `log_meta` table when a server first opens it, so two
 * replicas pointed at one file by mistake are refused at start instead of
 * interleaving two chains' worth of writers, and exports say whose log they hold.
 */
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { cutText } from '../cut-text.js';
import { VerdictError } from '../errors.js';
import { readLogMeta } from './log-meta.js';
import { readSchemaVersion } from './schema.js';

/** 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit: safe in a file name, a metric label and a log line. */
export const REPLICA_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** What a replica id must look like, for error messages. */
export const REPLICA_ID_RULE = '1 to 64 characters of letters, digits, ".", "_" or "-", starting with a letter or digit';

const META_KEY = 'replica_id';

/**
 * A replica id made of a host name: characters a replica id cannot hold become `-`,
 * cut to 64, so an unusual host name (an FQDN past 64 characters, an underscore-free
 * rule it breaks) never stops a server that was not told its id.
 */
export function replicaIdFromHostName(host: string): string {
  const id = host.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  return REPLICA_ID_PATTERN.test(id) ? id : 'verdict';
}

/**
 * The id a server not told its replica id serves as: the one its log records, so a
 * host whose name changed (a container started anew on the same volume) keeps its
 * log; else `fallback` (the host name). Opens the file read-only, and only when it
 * exists; whatever it cannot read, the server's own open of the log reports.
 */
export function replicaIdOfLog(path: string, fallback: string): string {
  if (!existsSync(path)) return fallback;
  let db: Database.Database | null = null;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    return recordedReplicaId(db, path) ?? fallback;
  } catch {
    return fallback;
  } finally {
    db?.close();
  }
}

/**
 * The replica id a log records, or null when it records none (a log of an earlier
 * release, or one no server has opened). Reads only.
 * @throws VerdictError DECISION_LOG_CORRUPT when the recorded value is not a replica id
 */
export function recordedReplicaId(db: Database.Database, path: string): string | null {
  if (readSchemaVersion(db) < 1) return null;
  const value = readLogMeta(db, META_KEY);
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || !REPLICA_ID_PATTERN.test(value)) {
    const shown = typeof value === 'string' ? JSON.stringify(cutText(value, 80)) : `a ${typeof value}`;
    throw new VerdictError('DECISION_LOG_CORRUPT', `${path}: log_meta.replica_id is ${shown}, not a replica id (${REPLICA_ID_RULE}); restore the log from a backup`);
  }
  return value;
}

/**
 * Refuse a log another replica writes, before anything is written to it (migrations
 * included).
 * @throws VerdictError DECISION_LOG_REPLICA_MISMATCH
 */
export function refuseOtherReplica(db: Database.Database, path: string, replicaId: string): void {
  const recorded = recordedReplicaId(db, path);
  if (recorded !== null && recorded !== replicaId) throw mismatch(path, recorded, replicaId);
}

/**
 * Name the log after this replica when it names none yet (a new log, or one of an
 * earlier release on its first open by a server). Under BEGIN IMMEDIATE, reading
 * again inside, so two servers opening one unnamed log at once cannot both claim it.
 * @throws VerdictError DECISION_LOG_REPLICA_MISMATCH when another replica claimed it first
 */
export function claimReplica(db: Database.Database, path: string, replicaId: string): void {
  // Already this replica's (every reopen after the first): nothing to write, so no write lock is taken.
  // A log that cannot be written then fails where a write does, with what stops it, not at its open.
  if (recordedReplicaId(db, path) === replicaId) return;
  db.transaction(() => {
    const recorded = recordedReplicaId(db, path);
    if (recorded === replicaId) return;
    if (recorded !== null) throw mismatch(path, recorded, replicaId);
    db.prepare('INSERT INTO log_meta (key, value) VALUES (?, ?)').run(META_KEY, replicaId);
  }).immediate();
}

function mismatch(path: string, recorded: string, replicaId: string): VerdictError {
  return new VerdictError(
    'DECISION_LOG_REPLICA_MISMATCH',
    `the decision log ${path} belongs to replica ${recorded}, and this server is replica ${replicaId}; give each replica its own --db, or set replicaId: ${recorded}`,
  );
}
