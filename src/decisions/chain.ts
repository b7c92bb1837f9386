/**
 * The hash chain over the decision log.
 *
 * `hash = SHA-256(prev_hash ‖ canonical bytes of the row)`, where `prev_hash` is
 * the previous row's `hash` (32 bytes) and the first row's `prev_hash` is 32
 * zero bytes.
 *
 * The canonical bytes are the UTF-8 bytes of the JSON array
 *
 * ```
 * JSON.stringify([FORMAT_NAME, seq, ...the row's values of the columns that format covers])
 * ```
 *
 * with the columns in the order of the table in columns.ts, each value exactly
 * as stored: integers as JSON numbers, absent values as `null`, and the JSON
 * columns as the JSON *strings* holding their stored text — not re-parsed, so
 * a verifier never re-canonicalises JSON and any change to the stored text
 * shows. JSON.stringify is deterministic for these values (no objects, safe
 * integers, well-formed strings), so any language can rebuild the bytes.
 *
 * Every row stores the format its hash covers (the `format` column), so a
 * column added later enters the chain without touching the rows before it:
 * - `verdict.decision.v1` (format 1): decision_id … latency_us, the sixteen
 *   columns of the first release. Rows written before `details` existed keep it.
 * - `verdict.decision.v2` (format 2): the v1 columns, then `details`. Every row
 *   written since.
 * The format is part of what is hashed (its name leads the array), so changing
 * it breaks the row like any other edit. Including `seq` makes a deleted,
 * inserted or reordered row visible even where its neighbours are re-linked.
 *
 * @example
 * const hash = chainHash(GENESIS_HASH, CURRENT_FORMAT, 1, rowValues(toRow(record)));
 */
import { hash as oneShotHash } from 'node:crypto';
import { COLUMNS, LONGEST_STORED_VALUE, STORED_KIND, VALUE_FITS, describeStoredValue, formatColumn, storageClassSql, type Column, type RowValue } from './columns.js';

/** The prev_hash of the first row in a chain. */
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

/** The canonical format every row written by this build uses: the newest, which covers every column. */
export const CURRENT_FORMAT: number = Math.max(...COLUMNS.map((c) => c.since));

/** The name that leads the canonical array of each format. */
export function formatName(format: number): string {
  return `verdict.decision.v${format}`;
}

/** How many leading columns of the table each format covers; undefined for a format this build does not know. */
const WIDTHS: ReadonlyMap<number, number> = new Map(
  Array.from({ length: CURRENT_FORMAT }, (_, i) => [i + 1, COLUMNS.filter((c) => c.since <= i + 1).length] as const),
);

// A format covers a prefix of the table: a column added later goes at its end.
COLUMNS.forEach((column, i) => {
  const before = COLUMNS[i - 1];
  if (before !== undefined && before.since > column.since) throw new Error(`columns.ts: ${column.sql} must come before ${before.sql}, which a later format added`);
});

/** Whether rows of `format` can be checked by this build. */
export function knownFormat(format: unknown): format is number {
  return typeof format === 'number' && WIDTHS.has(format);
}

/**
 * The canonical text of the row whose values start at `values[offset]`, as if
 * stored at `seq` with `format`; null for a format this build does not know,
 * and for a row holding a value in a column its format does not cover (a
 * column added later is NULL in every row written before it; a value there
 * would be unchained).
 */
export function canonicalText(format: number, seq: number, values: readonly RowValue[], offset = 0): string | null {
  const width = WIDTHS.get(format);
  if (width === undefined) return null;
  for (let k = width; k < COLUMNS.length; k++) if (values[offset + k] !== null) return null;
  const parts: RowValue[] = new Array<RowValue>(width + 2);
  parts[0] = formatName(format);
  parts[1] = seq;
  for (let k = 0; k < width; k++) parts[k + 2] = values[offset + k] as RowValue;
  return JSON.stringify(parts);
}

/**
 * SHA-256(prev ‖ canonical bytes) of the row at `values[offset]`; null for a
 * format this build does not know (verification calls that a break).
 */
export function chainHash(prev: Uint8Array, format: number, seq: number, values: readonly RowValue[], offset = 0): Buffer | null {
  const text = canonicalText(format, seq, values, offset);
  return text === null ? null : hashAfter(prev, text);
}

// One reused buffer and the one-shot hash: a Hash object and a Buffer per row
// cost more than the SHA-256 itself, and the writer does this for every decision.
let scratch = Buffer.alloc(16 * 1024);

/** SHA-256(prev ‖ UTF-8 of text). */
function hashAfter(prev: Uint8Array, text: string): Buffer {
  // A UTF-16 code unit is at most 3 bytes of UTF-8, so this always fits.
  const need = prev.length + text.length * 3;
  if (scratch.length < need) scratch = Buffer.alloc(Math.max(need, scratch.length * 2));
  scratch.set(prev, 0);
  const n = scratch.write(text, prev.length, 'utf8');
  return oneShotHash('sha256', scratch.subarray(0, prev.length + n), 'buffer');
}

/** A row as verification and export read it back: everything stored, nothing interpreted. */
export interface StoredRow {
  readonly seq: number;
  /** The canonical format its hash covers (any value, if tampered with). */
  readonly format: unknown;
  /** The values of every column of the table, in table order, as SQLite handed them back (any kind, if tampered with). */
  readonly values: readonly RowValue[];
  readonly prevHash: Buffer | null;
  readonly hash: Buffer | null;
  /** Why the row cannot be one verdict wrote, found while reading it (a value longer than verdict can store); absent when none was. */
  readonly problem?: string;
}

/**
 * A StoredRow from a raw SELECT of storedRowList() (columns.ts): a hash that
 * is not bytes counts as none (storedRowList reads them as bytes), and a
 * value too long to have been read is the row's problem.
 */
export function storedRowFromRaw(raw: readonly unknown[]): StoredRow {
  const n = COLUMNS.length;
  const oversized = raw[4 + n];
  const row = {
    seq: raw[0] as number,
    format: raw[1],
    values: raw.slice(2, 2 + n) as RowValue[],
    prevHash: hashBytes(raw[2 + n]),
    hash: hashBytes(raw[3 + n]),
  };
  if (typeof oversized !== 'string') return row;
  return { ...row, problem: `${oversized} holds more than ${LONGEST_STORED_VALUE.toLocaleString('en-US')} bytes, more than verdict can store in one value` };
}

function hashBytes(value: unknown): Buffer | null {
  return Buffer.isBuffer(value) ? value : null;
}

/**
 * Why a stored row cannot be one verdict wrote, or null: the problem found
 * while reading it, or a value that is not of the kind verdict stores in its
 * column (a BLOB where text belongs, say, which SQLite may still render as
 * the text it replaced: see storageClassSql). Verification calls such a row
 * changed, whatever its hash.
 */
export function storedRowProblem(row: StoredRow): string | null {
  if (row.problem !== undefined) return row.problem;
  for (let k = 0; k < COLUMNS.length; k++) {
    const column = COLUMNS[k] as Column;
    const value = row.values[k];
    if (!VALUE_FITS[column.type](value)) return `${column.sql} holds ${describeStoredValue(value)} where verdict stores ${STORED_KIND[column.type]}`;
  }
  return null;
}

/**
 * The chain hash of a stored row as if it sat at `seq` (verification uses that
 * to find where a moved row was written); null for a format this build does
 * not know and for a row with a problem (storedRowProblem).
 */
export function storedRowHash(prev: Uint8Array, row: StoredRow, seq: number = row.seq): Buffer | null {
  return knownFormat(row.format) && storedRowProblem(row) === null ? chainHash(prev, row.format, seq, row.values) : null;
}

/**
 * SQL for the canonical text of each row of `decisions`, built by SQLite's
 * json_array() (verify's fast path; see verify-range.ts), for a log whose
 * table has the columns `present`: NULL for a format this build does not know,
 * and for a row holding a value of a storage class verdict does not write.
 */
export function canonicalSql(present: ReadonlySet<string>): string {
  const column = (c: Column): string => (present.has(c.sql) ? c.sql : 'NULL');
  const cases = [...WIDTHS].map(([format, width]) => {
    const uncovered = COLUMNS.slice(width).map((c) => ` AND ${column(c)} IS NULL`).join('');
    // A value of another storage class (a JSONB BLOB rendered as the text it replaced) leaves the row to the exact path.
    const classes = COLUMNS.slice(0, width)
      .filter((c) => present.has(c.sql))
      .map((c) => ` AND ${storageClassSql(c.type, c.sql)}`)
      .join('');
    return `WHEN ${formatColumn(present)} = ${format}${uncovered}${classes} THEN json_array('${formatName(format)}', seq, ${COLUMNS.slice(0, width).map(column).join(', ')})`;
  });
  return `CASE ${cases.join(' ')} END`;
}
