/**
 * The columns of a decision row: the one table the row codec, the hash chain,
 * the writer's INSERT, the readers' SELECTs, the wire format to the writer and
 * verify's SQL are all derived from. Adding a column is one entry at the end
 * of this table, with `since` the next canonical format number (every row
 * written from then on is hashed in that format, rows before keep theirs, see
 * chain.ts), plus a migration in schema.ts that adds it as a nullable column,
 * and its member in DecisionRecord.
 *
 * Besides these, every stored row has four columns of its own that are not
 * part of the decision: `seq` (its place in the chain), `prev_hash` and `hash`
 * (the chain), and `format` (which canonical form its hash covers, see
 * chain.ts).
 */

import type { DecisionRecord } from './record.js';

/**
 * How a value is stored:
 * - `text`: a string (lone UTF-16 surrogates replaced, since SQLite stores UTF-8);
 * - `text?`: a string or null;
 * - `integer`: a finite number, stored as an integer (truncated, or rounded with `round`);
 * - `json`: any JSON value, stored as its JSON text;
 * - `json?`: a JSON object, or null when absent.
 */
export type ColumnType = 'text' | 'text?' | 'integer' | 'json' | 'json?';

export interface Column {
  /** The SQL column. */
  readonly sql: string;
  /** The property of a DecisionRow (and of the wire and export formats). */
  readonly key: string;
  /** The property of a DecisionRecord it is made from. */
  readonly record: keyof DecisionRecord;
  readonly type: ColumnType;
  /** For `integer`: round to the nearest integer instead of truncating. */
  readonly round?: boolean;
  /** The first canonical format (chain.ts) whose hash covers this column. */
  readonly since: number;
}

export const COLUMNS = [
  { sql: 'decision_id', key: 'decisionId', record: 'decisionId', type: 'text', since: 1 },
  { sql: 'time_ms', key: 'timeMs', record: 'time', type: 'integer', since: 1 },
  { sql: 'caller', key: 'caller', record: 'caller', type: 'text', since: 1 },
  { sql: 'request_id', key: 'requestId', record: 'requestId', type: 'text?', since: 1 },
  { sql: 'principal_id', key: 'principalId', record: 'principalId', type: 'text', since: 1 },
  { sql: 'action', key: 'action', record: 'action', type: 'text', since: 1 },
  { sql: 'resource_type', key: 'resourceType', record: 'resourceType', type: 'text', since: 1 },
  { sql: 'resource_id', key: 'resourceId', record: 'resourceId', type: 'text', since: 1 },
  { sql: 'effect', key: 'effect', record: 'effect', type: 'text', since: 1 },
  { sql: 'reason', key: 'reason', record: 'reason', type: 'text', since: 1 },
  { sql: 'rule_ids', key: 'ruleIds', record: 'ruleIds', type: 'json', since: 1 },
  { sql: 'errors', key: 'errors', record: 'errors', type: 'json', since: 1 },
  { sql: 'policy_version', key: 'policyVersion', record: 'policyVersion', type: 'text', since: 1 },
  { sql: 'request', key: 'request', record: 'request', type: 'json', since: 1 },
  { sql: 'latency_us', key: 'latencyUs', record: 'latencyUs', type: 'integer', round: true, since: 1 },
  { sql: 'details', key: 'details', record: 'details', type: 'json?', since: 2 },
] as const satisfies readonly Column[];

type StoredValue<T extends ColumnType> = T extends 'text' | 'json' ? string : T extends 'text?' | 'json?' ? string | null : number;

/**
 * A decision as it is stored: one value per column, JSON columns as their
 * stored text. These values, after a round trip through SQLite, are what the
 * hash chain covers.
 */
export type DecisionRow = { readonly [C in (typeof COLUMNS)[number] as C['key']]: StoredValue<C['type']> };

/** A stored row together with its place in the log and the canonical format of its hash. */
export type SequencedRow = DecisionRow & { readonly seq: number; readonly format: number };

/** One stored value, as SQLite hands it back. */
export type RowValue = string | number | null;

/** The columns as a comma-separated SQL list, in table order. */
export const COLUMN_LIST: string = COLUMNS.map((c) => c.sql).join(', ');

/**
 * The columns as a SELECT list for a log whose `decisions` table has the
 * columns `present` (schema.ts decisionColumns): a column a log of an older
 * schema lacks reads as NULL, and its rows as canonical format 1.
 */
export function selectList(present: ReadonlySet<string>): string {
  return COLUMNS.map((c) => (present.has(c.sql) ? c.sql : `NULL AS ${c.sql}`)).join(', ');
}

/** The stored format column, or 1 for a log from before it existed. */
export function formatColumn(present: ReadonlySet<string>): string {
  return present.has('format') ? 'format' : '1';
}

/** Everything a stored row holds, for SELECTs in better-sqlite3's raw mode: see StoredRow in chain.ts. */
export function storedRowList(present: ReadonlySet<string>): string {
  return `seq, ${formatColumn(present)}, ${selectList(present)}, prev_hash, hash`;
}

/** The writer's INSERT: seq, the columns in table order, prev_hash, hash, format. */
export const INSERT_SQL = `INSERT INTO decisions (seq, ${COLUMN_LIST}, prev_hash, hash, format) VALUES (${Array(COLUMNS.length + 4).fill('?').join(', ')})`;
