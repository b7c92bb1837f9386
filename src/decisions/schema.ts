import fs from 'node:fs';
import Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import { hasColumn } from './log-meta.js';
import { SUSPENSIONS_TABLE_SQL, SUSPENSION_CHANGES_SQL, SUSPENSION_FOLDED_SQL, foldSuspensions, hasChangeColumns, hasFoldedColumn } from './suspension-store.js';

/**
 * Schema versions live in `PRAGMA user_version`: it sits in the database header,
 * so it changes in the same transaction as the DDL and needs no table of its own.
 * Migrations only ever append; a released one is never edited.
 */
interface Migration {
  readonly version: number;
  readonly sql: string;
  /** When the change is already there (a log whose version was set back by hand): the SQL would fail, so it is skipped. */
  readonly alreadyApplied?: (db: Database.Database) => boolean;
  /** Fills what SQL alone cannot (a value computed in JavaScript), after `sql`, in the same transaction. */
  readonly fill?: (db: Database.Database) => void;
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE decisions (
        seq            INTEGER PRIMARY KEY,
        decision_id    TEXT    NOT NULL UNIQUE,
        time_ms        INTEGER NOT NULL,
        caller         TEXT    NOT NULL,
        request_id     TEXT,
        principal_id   TEXT    NOT NULL,
        action         TEXT    NOT NULL,
        resource_type  TEXT    NOT NULL,
        resource_id    TEXT    NOT NULL,
        effect         TEXT    NOT NULL,
        reason         TEXT    NOT NULL,
        rule_ids       TEXT    NOT NULL,
        errors         TEXT    NOT NULL,
        policy_version TEXT    NOT NULL,
        request        TEXT    NOT NULL,
        latency_us     INTEGER NOT NULL,
        prev_hash      BLOB,
        hash           BLOB
      );
      -- Each index ends in time_ms (and, implicitly, seq) so "newest first" with a
      -- filter is an index walk, not a sort.
      CREATE INDEX decisions_principal ON decisions (principal_id, time_ms);
      CREATE INDEX decisions_resource  ON decisions (resource_type, resource_id, time_ms);
      CREATE INDEX decisions_action    ON decisions (action, time_ms);
      CREATE INDEX decisions_effect    ON decisions (effect, time_ms);
      CREATE INDEX decisions_time      ON decisions (time_ms);

      -- Small bookkeeping outside the chain (the writer's health probe).
      CREATE TABLE log_meta (
        key   TEXT PRIMARY KEY,
        value
      ) WITHOUT ROWID;
    `,
  },
  {
    // Signed checkpoints and prune anchors, and append-only triggers. The
    // triggers are defence in depth against accidents (a stray DELETE from a
    // tool or a tired operator), not the proof: anyone who can write the file
    // can drop them. The proof is the hash chain plus Ed25519 signatures.
    version: 2,
    sql: `
      -- kind 'checkpoint': the chain hash at seq, signed. kind 'anchor': rows up
      -- to and including seq were pruned; the chain continues from this hash.
      CREATE TABLE checkpoints (
        id        INTEGER PRIMARY KEY,
        kind      TEXT    NOT NULL CHECK (kind IN ('checkpoint', 'anchor')),
        seq       INTEGER NOT NULL,
        hash      BLOB    NOT NULL,
        time_ms   INTEGER NOT NULL,
        key_id    TEXT    NOT NULL,
        signature BLOB    NOT NULL
      );
      CREATE INDEX checkpoints_seq ON checkpoints (kind, seq);

      -- One row exists only inside a prune transaction (verdict audit prune):
      -- the delete triggers let deletions through while it is there.
      CREATE TABLE audit_guard (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        reason TEXT NOT NULL
      );

      CREATE TRIGGER decisions_append_only_update BEFORE UPDATE ON decisions
      BEGIN
        SELECT RAISE(ABORT, 'verdict: decision rows are append-only; UPDATE is refused');
      END;
      CREATE TRIGGER decisions_append_only_delete BEFORE DELETE ON decisions
      WHEN NOT EXISTS (SELECT 1 FROM audit_guard)
      BEGIN
        SELECT RAISE(ABORT, 'verdict: decision rows are append-only; remove old rows with verdict audit prune');
      END;
      CREATE TRIGGER checkpoints_append_only_update BEFORE UPDATE ON checkpoints
      BEGIN
        SELECT RAISE(ABORT, 'verdict: checkpoints are append-only; UPDATE is refused');
      END;
      CREATE TRIGGER checkpoints_append_only_delete BEFORE DELETE ON checkpoints
      WHEN NOT EXISTS (SELECT 1 FROM audit_guard)
      BEGIN
        SELECT RAISE(ABORT, 'verdict: checkpoints are append-only; remove old ones with verdict audit prune');
      END;
    `,
  },
  {
    // The `details` column (structured extras of a decision, columns.ts), and
    // each row's canonical format (chain.ts): rows written before this
    // migration keep format 1, whose hash does not cover details.
    version: 3,
    sql: `
      ALTER TABLE decisions ADD COLUMN details TEXT;
      ALTER TABLE decisions ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
    `,
  },
  {
    // Anomaly alerts (alerts-table.ts), beside the decisions and outside their
    // chain: an alert is a finding about decisions, not a decision.
    version: 4,
    sql: `
      CREATE TABLE alerts (
        id           TEXT    PRIMARY KEY,
        type         TEXT    NOT NULL,
        subject_kind TEXT    NOT NULL,
        subject_id   TEXT    NOT NULL,
        window_start INTEGER NOT NULL,
        window_end   INTEGER NOT NULL,
        raised_at    INTEGER NOT NULL,
        alert        TEXT    NOT NULL
      );
      CREATE INDEX alerts_raised  ON alerts (raised_at);
      CREATE INDEX alerts_subject ON alerts (subject_id, raised_at);
    `,
  },
  {
    // The suspensions in force (suspension-store.ts), outside the chain: state
    // that is lifted and expires, not a record. IF NOT EXISTS: a v4 log may
    // have the table already (servers created it beside the migrations before).
    version: 5,
    sql: SUSPENSIONS_TABLE_SQL,
  },
  {
    // Each checkpoint names the one signed before it (checkpoint.ts, format v2),
    // so deleting one from the middle shows. NULL: a v1 checkpoint of an earlier
    // release, which names none.
    version: 6,
    sql: `
      ALTER TABLE checkpoints ADD COLUMN previous_seq INTEGER;
    `,
    // ALTER TABLE has no IF NOT EXISTS.
    alreadyApplied: (db) => hasColumn(db, 'checkpoints', 'previous_seq'),
  },
  {
    // Suspensions are read by what changed (suspension-store.ts): each row's
    // change number, lifts kept as marks until their time is up, and indexes
    // for reading changes and pruning ended rows.
    version: 7,
    sql: SUSPENSION_CHANGES_SQL,
    alreadyApplied: hasChangeColumns,
  },
  {
    // Each checkpoint names the replica whose log it was signed in (checkpoint.ts,
    // format v3), so one copied into another replica's log shows. NULL: a v2 or
    // v1 checkpoint, which names none.
    version: 8,
    sql: `
      ALTER TABLE checkpoints ADD COLUMN replica_id TEXT;
    `,
    alreadyApplied: (db) => hasColumn(db, 'checkpoints', 'replica_id'),
  },
  {
    // Each suspension's folded principal id, stored and indexed (suspension-store.ts),
    // so a lift finds every spelling of an id by an index search instead of folding
    // every row. The rows already there are folded here: the fold is JavaScript.
    version: 9,
    sql: SUSPENSION_FOLDED_SQL,
    alreadyApplied: hasFoldedColumn,
    fill: foldSuspensions,
  },
];

/** The schema version this build writes. */
export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

export function readSchemaVersion(db: Database.Database): number {
  return Number(db.pragma('user_version', { simple: true }));
}

/**
 * Bring the database up to SCHEMA_VERSION. Idempotent. Runs under BEGIN
 * IMMEDIATE and re-reads the version inside, so two processes opening the same
 * new file cannot both apply a migration.
 */
export function migrate(db: Database.Database, path: string): void {
  const initial = readSchemaVersion(db);
  if (initial > SCHEMA_VERSION) {
    throw newerSchema(path, initial);
  }
  if (initial === SCHEMA_VERSION) return;
  db.transaction(() => {
    const current = readSchemaVersion(db);
    if (current > SCHEMA_VERSION) throw newerSchema(path, current);
    if (current === 0 && hasUserTables(db)) {
      throw new VerdictError(
        'DECISION_LOG_CORRUPT',
        `${path} is a SQLite database but not a verdict decision log (it has tables and no schema version); point the decision log at another file`,
      );
    }
    for (const migration of MIGRATIONS) {
      if (migration.version <= current) continue;
      if (migration.alreadyApplied?.(db) !== true) db.exec(migration.sql);
      migration.fill?.(db);
      // PRAGMA takes no bound parameters; the version is our own integer.
      db.pragma(`user_version = ${migration.version}`);
    }
  }).immediate();
}

/**
 * Open the decision log at `path` read-only (queries and the audit tools): in
 * WAL mode such a reader sees the last committed state and never takes the
 * write lock. A newer schema is accepted for reading: migrations only add,
 * and readers name their columns.
 * `shape: 'unchecked'` leaves the shape of `decisions` to the caller (verify reports it as a break).
 * @throws VerdictError DECISION_LOG_UNAVAILABLE when there is no log at `path` or it
 *   cannot be opened; DECISION_LOG_CORRUPT when the file is not a decision log, or
 *   its `decisions` is not shaped as verdict makes it (decisionsShapeProblem)
 */
export function openReadOnly(path: string, shape: 'enforce' | 'unchecked' = 'enforce'): Database.Database {
  if (!fs.existsSync(path)) throw new VerdictError('DECISION_LOG_UNAVAILABLE', `no decision log at ${path}`);
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot open the decision log ${path}: ${messageOf(error)}`, { cause: error });
  }
  try {
    if (readSchemaVersion(db) === 0) throw new VerdictError('DECISION_LOG_CORRUPT', `${path} is not a verdict decision log (no schema version); check --db`);
    db.prepare('SELECT seq FROM decisions LIMIT 0').all();
    const problem = shape === 'enforce' ? decisionsShapeProblem(db) : null;
    if (problem !== null) throw new VerdictError('DECISION_LOG_CORRUPT', `${path}: ${problem}; run verdict audit verify on it and restore the log from a backup or an export`);
    return db;
  } catch (error) {
    db.close();
    if (error instanceof VerdictError) throw error;
    throw new VerdictError('DECISION_LOG_CORRUPT', `${path} is not a readable verdict decision log: ${messageOf(error)}`, { cause: error });
  }
}

/**
 * What is wrong with the shape of `decisions`, or null when it is as verdict makes
 * it. The chain covers one row per whole seq; that seq is the table's rowid and
 * decision_id is unique is what keeps every row readable under the chain. A view,
 * or a table whose seq is not the rowid, can hold rows with no seq, a fractional
 * seq or a repeated one that verify never reaches but queries show.
 */
export function decisionsShapeProblem(db: Database.Database): string | null {
  const foreign = foreignObject(db);
  if (foreign !== null) return foreign;
  const kind = db.prepare("SELECT type FROM sqlite_schema WHERE name = 'decisions'").pluck().get() as string | undefined;
  if (kind !== 'table') return kind === undefined ? 'there is no decisions table' : `decisions is a ${kind}, not the table verdict creates`;
  // PRAGMA statements, not the pragma_* table functions: a table in the file can take a function's name.
  const keys = (db.pragma('table_info(decisions)') as { name: string; type: string; pk: number }[]).filter((column) => column.pk > 0);
  if (keys.length !== 1 || keys[0]!.name !== 'seq' || keys[0]!.type.toUpperCase() !== 'INTEGER') return 'decisions.seq is not the table\'s INTEGER PRIMARY KEY, so rows could have no seq, a fractional one or a repeated one';
  const indexes = db.pragma('index_list(decisions)') as { name: string; unique: number; origin: string; partial: number }[];
  // Without a rowid (or with INTEGER PRIMARY KEY DESC) the key is an index of its own and seq is no longer the rowid.
  if (indexes.some((index) => index.origin === 'pk')) return 'decisions.seq is not the table\'s rowid (a WITHOUT ROWID table or a DESC key), so it could hold a fractional seq';
  const columnsOf = (index: string): string => (db.pragma(`index_info(${quoteIdentifier(index)})`) as { name: string }[]).map((column) => column.name).join(',');
  if (!indexes.some((index) => index.unique === 1 && index.partial === 0 && columnsOf(index.name) === 'decision_id')) return 'decisions.decision_id is not UNIQUE, so one decision id could name two rows';
  return null;
}

/** Names of SQLite's table-valued functions that readers and the checks above call: a table of the same name would answer in their place. */
const FUNCTION_NAMES = /^(?:pragma_|json_each$|json_tree$)/i;

/**
 * An object verdict never creates that changes what readers see: a virtual table
 * (an FTS5 table named `pragma_table_info` answers `pragma_table_info('decisions')`
 * with rows of its own), an object named like a table-valued function, or a
 * collation on `decisions` or its indexes (`COLLATE NOCASE` makes `--principal alice`
 * match Alice).
 */
function foreignObject(db: Database.Database): string | null {
  const objects = db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_schema').all() as { type: string; name: string; tbl_name: string; sql: string | null }[];
  for (const object of objects) {
    if (FUNCTION_NAMES.test(object.name)) return `the log holds a ${object.type} named ${JSON.stringify(object.name)}, which verdict never creates and which would answer in place of SQLite's function of that name`;
    if (object.sql !== null && /^\s*CREATE\s+VIRTUAL\s+TABLE/i.test(object.sql)) return `the log holds a virtual table ${JSON.stringify(object.name)}, which verdict never creates`;
    if (object.tbl_name === 'decisions' && object.sql !== null && /\bCOLLATE\b/i.test(object.sql)) return `${object.type} ${JSON.stringify(object.name)} declares a collation, which verdict never does: queries would match other rows than the ones asked for`;
  }
  return null;
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The columns `decisions` has: a log of an older schema lacks the ones added since, which readers then read as NULL. */
export function decisionColumns(db: Database.Database): ReadonlySet<string> {
  return new Set((db.pragma('table_info(decisions)') as { name: string }[]).map((column) => column.name));
}

function hasUserTables(db: Database.Database): boolean {
  const row = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").get() as { n: number };
  return row.n > 0;
}

function newerSchema(path: string, version: number): VerdictError {
  return new VerdictError(
    'DECISION_LOG_UNAVAILABLE',
    `${path} has decision log schema v${version}, newer than this build of verdict knows (v${SCHEMA_VERSION}); upgrade verdict to write to it`,
  );
}
