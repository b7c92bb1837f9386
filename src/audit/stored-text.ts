import { isUtf8 } from 'node:buffer';
import type Database from 'better-sqlite3';
import type { StoredRow } from '../decisions/chain.js';
import { COLUMNS } from '../decisions/columns.js';

/**
 * Invalid UTF-8 in a stored text value. SQLite's text functions and
 * better-sqlite3's decoding both read bytes that are not UTF-8 as U+FFFD, so a
 * value holding U+FFFD, rewritten with other bytes that read the same, keeps
 * its row's hash. verdict writes only valid UTF-8 (JavaScript strings, lone
 * surrogates replaced), so such bytes are a change. Every invalid sequence
 * decodes to U+FFFD, so only a row whose text holds U+FFFD as read needs its
 * bytes read again: that costs nothing for the rows a log is made of.
 */

/** Where U+FFFD stands in text as read: a value (or canonical text) holding it is checked byte by byte. */
export const REPLACEMENT_CHARACTER = '\uFFFD';

const TEXT_INDEXES = COLUMNS.flatMap((column, k) => (column.type === 'integer' ? [] : [k]));

/**
 * A check for the rows of the log `db` (whose `decisions` table has the columns
 * `present`): the row as it is, or with its problem set when a text value's
 * stored bytes are not UTF-8 (chain.ts storedRowProblem then calls it changed).
 */
export function utf8Check(db: Database.Database, present: ReadonlySet<string>): (row: StoredRow) => StoredRow {
  const list = TEXT_INDEXES.map((k) => {
    const sql = COLUMNS[k]?.sql as string;
    return present.has(sql) ? `CAST(${sql} AS BLOB)` : 'NULL';
  }).join(', ');
  const bytesOf = db.prepare<[number], unknown[]>(`SELECT ${list} FROM decisions WHERE seq = ?`).raw(true);
  return (row) => {
    if (row.problem !== undefined) return row;
    if (!TEXT_INDEXES.some((k) => String(row.values[k]).includes(REPLACEMENT_CHARACTER))) return row;
    const bytes = bytesOf.get(row.seq) ?? [];
    for (let i = 0; i < TEXT_INDEXES.length; i++) {
      const value = bytes[i];
      if (Buffer.isBuffer(value) && typeof row.values[TEXT_INDEXES[i] as number] === 'string' && !isUtf8(value)) {
        const column = COLUMNS[TEXT_INDEXES[i] as number]?.sql as string;
        return {
          ...row,
          problem: `${column} holds bytes that are not valid UTF-8, which verdict never writes (read as text they show as U+FFFD, so they can stand in for the text they replaced under the same hash)`,
        };
      }
    }
    return row;
  };
}
