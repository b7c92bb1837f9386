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

import { constants as bufferConstants } from 'node:buffer';
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

/**
 * Whether a value read back from SQLite is of the kind verdict stores in a
 * column of each type. A value that is not (a BLOB where text belongs, a
 * fraction or text in an integer column) was put there by someone else.
 */
export const VALUE_FITS: Readonly<Record<ColumnType, (value: unknown) => boolean>> = {
  text: (v) => typeof v === 'string',
  'text?': (v) => v === null || typeof v === 'string',
  integer: (v) => Number.isSafeInteger(v),
  json: (v) => typeof v === 'string',
  'json?': (v) => v === null || typeof v === 'string',
};

/** What verdict stores in a column of each type, in words, for messages. */
export const STORED_KIND: Readonly<Record<ColumnType, string>> = {
  text: 'text',
  'text?': 'text or NULL',
  integer: 'an integer',
  json: 'JSON text',
  'json?': 'JSON text or NULL',
};

/**
 * The SQL condition that `expr` holds the storage class verdict writes for a
 * column of `type`. SQLite's json_array() renders a BLOB holding valid JSONB
 * as the JSON value inside it (3.45 on), and a REAL or TEXT in an integer
 * column as a JSON number or string: any of them would give the canonical text
 * of a value that is not the one stored, so verify's SQL accepts none.
 */
export function storageClassSql(type: ColumnType, expr: string): string {
  switch (type) {
    case 'text':
    case 'json':
      return `typeof(${expr}) = 'text'`;
    case 'text?':
    case 'json?':
      return `typeof(${expr}) IN ('text', 'null')`;
    case 'integer':
      return `typeof(${expr}) = 'integer'`;
  }
}

/** A value as SQLite handed it back, in words, for a message naming one of the wrong kind. */
export function describeStoredValue(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (Buffer.isBuffer(value)) return `a BLOB of ${value.length} byte${value.length === 1 ? '' : 's'}`;
  if (typeof value === 'number') return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
  if (typeof value === 'bigint') return `the integer ${value}`;
  if (typeof value === 'string') return `text of ${value.length} characters`;
  return `a ${typeof value}`;
}

/**
 * The most bytes one stored value of a genuine row can have: better-sqlite3
 * limits every value to what one JavaScript string (or Buffer) can hold
 * (SQLITE_LIMIT_LENGTH, V8's string length cap in Node 20: 536,870,888), so the
 * writer can store no longer value, and a reader cannot load one; SQLite's
 * octet_length() still tells its size without loading it.
 */
export const LONGEST_STORED_VALUE: number = Math.min(bufferConstants.MAX_STRING_LENGTH, bufferConstants.MAX_LENGTH);

const TEXT_COLUMNS = COLUMNS.filter((c) => c.type !== 'integer');

function oversizedSql(column: string): string {
  return `octet_length(${column}) > ${LONGEST_STORED_VALUE}`;
}

/**
 * Everything a stored row holds, for SELECTs in better-sqlite3's raw mode: see
 * StoredRow and storedRowFromRaw in chain.ts. The hashes are read as bytes
 * whatever their storage class (as verify's fast path reads them with hex()), so
 * every reader sees the same values. A value longer than any genuine one
 * (LONGEST_STORED_VALUE) is read as NULL and named in a last column: loading it
 * would fail the whole read, and the row is not one verdict wrote.
 */
export function storedRowList(present: ReadonlySet<string>): string {
  const value = (c: Column): string => {
    if (!present.has(c.sql)) return `NULL AS ${c.sql}`;
    return c.type === 'integer' ? c.sql : `CASE WHEN ${oversizedSql(c.sql)} THEN NULL ELSE ${c.sql} END AS ${c.sql}`;
  };
  const oversized = TEXT_COLUMNS.filter((c) => present.has(c.sql)).map((c) => `WHEN ${oversizedSql(c.sql)} THEN '${c.sql}'`);
  return `seq, ${formatColumn(present)}, ${COLUMNS.map(value).join(', ')}, CAST(prev_hash AS BLOB), CAST(hash AS BLOB), CASE ${oversized.join(' ')} END`;
}

/** The writer's INSERT: seq, the columns in table order, prev_hash, hash, format. */
export const INSERT_SQL = `INSERT INTO decisions (seq, ${COLUMN_LIST}, prev_hash, hash, format) VALUES (${Array(COLUMNS.length + 4).fill('?').join(', ')})`;
