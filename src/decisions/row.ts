/**
 * The row codec: a DecisionRecord becomes the values of a stored row (and
 * back), all from the column table in columns.ts.
 *
 * Rows travel to the writer as one flat array per batch, COLUMNS.length values
 * per row in table order: one array of primitives clones much faster than an
 * array of objects, and the deciding thread's time is what bounds throughput.
 * The same flat layout is what the writer hashes and inserts.
 *
 * Everything SQLite could change on the way in is normalised when a record is
 * encoded — fractional integers, lone UTF-16 surrogates (UTF-8 cannot hold
 * them: they would read back as U+FFFD and the row would no longer match its
 * hash) — so the stored values are exactly the hashed ones.
 */
import { VerdictError, messageOf } from '../errors.js';
import { COLUMNS, VALUE_FITS, type Column, type DecisionRow, type RowValue } from './columns.js';
import type { DecisionRecord } from './record.js';
import type { SensitiveAttributes } from './sensitive.js';

/** Values per row in a flat batch. */
export const ROW_WIDTH: number = COLUMNS.length;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function text(value: string): string {
  // isWellFormed is a native scan; the regex runs only for the rare string that needs it.
  return value.isWellFormed() ? value : value.replace(LONE_SURROGATE, '\uFFFD');
}

type Encoder = (record: DecisionRecord) => RowValue;

/**
 * How one column's stored value is made from a record (JSON.stringify already
 * escapes lone surrogates). Built once per column: the deciding thread runs
 * these for every decision.
 */
function encoderFor(column: Column): Encoder {
  const key = column.record;
  switch (column.type) {
    case 'text':
      return (record) => text(record[key] as string);
    case 'text?':
      return (record) => {
        const value = record[key] as string | null | undefined;
        return value === null || value === undefined ? null : text(value);
      };
    case 'integer': {
      const toInteger = column.round === true ? Math.round : Math.trunc;
      return (record) => {
        const value = record[key];
        if (typeof value !== 'number' || !Number.isFinite(value)) {
          throw new VerdictError('INTERNAL', `decision ${String(record.decisionId)}: ${key} ${String(value)} is not a finite number`);
        }
        return toInteger(value);
      };
    }
    case 'json':
      return (record) => JSON.stringify(record[key]) ?? 'null';
    case 'json?':
      return (record) => {
        const value = record[key];
        if (value === null || value === undefined) return null;
        if (typeof value !== 'object' || Array.isArray(value)) {
          throw new VerdictError('INTERNAL', `decision ${String(record.decisionId)}: ${key} must be a JSON object or absent`);
        }
        return JSON.stringify(value);
      };
  }
}

const ENCODERS: readonly Encoder[] = COLUMNS.map(encoderFor);

/**
 * Append the stored values of `record` (its sensitive attributes replaced by
 * their HMAC first, so their raw values never reach a row, a writer or the
 * file) to `out`. On failure `out` is left as it was, so that one broken
 * record fails alone instead of failing the batch it would have joined.
 * @throws VerdictError INTERNAL when the record cannot be stored faithfully
 */
export function encodeRecord(out: RowValue[], record: DecisionRecord, sensitive: SensitiveAttributes | null = null): void {
  const start = out.length;
  try {
    const source = sensitive === null ? record : sensitive.apply(record);
    for (let k = 0; k < ENCODERS.length; k++) out.push((ENCODERS[k] as Encoder)(source));
  } catch (error) {
    out.length = start;
    if (error instanceof VerdictError) throw error;
    // A BigInt or a cycle in the attributes, or a missing field from an untyped caller.
    throw new VerdictError('INTERNAL', `decision ${String(record.decisionId)} cannot be serialised for the decision log: ${messageOf(error)}`, { cause: error });
  }
}

/** The stored form of one record. @throws VerdictError INTERNAL as encodeRecord */
export function toRow(record: DecisionRecord, sensitive: SensitiveAttributes | null = null): DecisionRow {
  const values: RowValue[] = [];
  encodeRecord(values, record, sensitive);
  return rowFromValues(values);
}

/** The row whose values start at `values[offset]`, as an object. */
export function rowFromValues(values: readonly RowValue[], offset = 0): DecisionRow {
  const row: Record<string, RowValue> = {};
  COLUMNS.forEach((column, k) => {
    row[column.key] = values[offset + k] as RowValue;
  });
  return row as DecisionRow;
}

/** The values of a row, in table order. */
export function rowValues(row: DecisionRow): RowValue[] {
  return COLUMNS.map((column) => row[column.key]);
}

/**
 * The number of rows in a flat batch, after checking every value's type: a
 * message from another thread or process is input like any other, and a
 * malformed one must fail its batch with a clear error, not write a
 * half-typed row into the audit trail.
 * @throws VerdictError INTERNAL naming the row and column
 */
export function checkBatch(values: unknown): number {
  if (!Array.isArray(values) || values.length % ROW_WIDTH !== 0) {
    throw new VerdictError('INTERNAL', `a batch of decision rows must be an array of ${ROW_WIDTH} values per row`);
  }
  for (let i = 0; i < values.length; i += ROW_WIDTH) {
    COLUMNS.forEach((column, k) => {
      if (!VALUE_FITS[column.type](values[i + k])) {
        throw new VerdictError('INTERNAL', `row ${i / ROW_WIDTH} of a batch of decision rows has a value of the wrong type in ${column.sql}`);
      }
    });
  }
  return values.length / ROW_WIDTH;
}

/**
 * A stored row back as the record it was made from (JSON columns parsed; a
 * record without details has none), for queries.
 */
export function recordFromRow(row: DecisionRow): DecisionRecord {
  const record: Record<string, unknown> = {};
  for (const column of COLUMNS) {
    const value = row[column.key];
    if (column.type === 'json' || column.type === 'json?') {
      if (value !== null) record[column.record] = JSON.parse(value as string);
    } else {
      record[column.record] = value;
    }
  }
  return record as unknown as DecisionRecord;
}

/** What an append to a closed log rejects with. */
export function closedLogError(path: string): VerdictError {
  return new VerdictError('DECISION_LOG_UNAVAILABLE', `the decision log ${path} is closed; the decision cannot be recorded`);
}
