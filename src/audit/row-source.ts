import type Database from 'better-sqlite3';
import { storedRowFromRaw, type StoredRow } from '../decisions/chain.js';
import { storedRowList } from '../decisions/columns.js';
import { VerdictError } from '../errors.js';
import { utf8Check } from './stored-text.js';

/**
 * Random access to the rows of a log or an export, in storage order, for
 * telling the kinds of a break apart (forensics.ts). Built only after a break
 * was found: verification itself streams.
 */
export interface RowSource {
  readonly length: number;
  rowAt(index: number): StoredRow;
  /** Positions of rows whose hash is `hash`. */
  byHash(hash: Uint8Array): number[];
  /** Positions of rows whose prev_hash is `hash`. */
  byPrev(hash: Uint8Array): number[];
  /** Position of a row whose seq is `seq`, if any. */
  bySeq(seq: number): number | undefined;
}

/** The rows of a log, in seq order; `columns` are those its `decisions` table has. */
export function dbRowSource(db: Database.Database, columns: ReadonlySet<string>): RowSource {
  // Seqs as read, exactly: a forged row may carry one past 2^53, which a JavaScript number would round to another row's.
  const seqs = db.prepare('SELECT seq FROM decisions ORDER BY seq').pluck().safeIntegers(true).all() as bigint[];
  const position = new Map<bigint, number>();
  seqs.forEach((seq, i) => position.set(seq, i));
  const hashes = new Map<string, number[]>();
  const prevs = new Map<string, number[]>();
  // Short keys keep the maps small; rowAt() confirms the full hash. Hashes are read as bytes, as storedRowList reads them.
  const keyed = db.prepare('SELECT seq, hex(substr(CAST(hash AS BLOB), 1, 12)) AS h, hex(substr(CAST(prev_hash AS BLOB), 1, 12)) AS p FROM decisions').raw(true).safeIntegers(true);
  for (const [seq, h, p] of keyed.iterate() as IterableIterator<[bigint, string, string]>) {
    const at = position.get(seq) as number;
    push(hashes, h, at);
    push(prevs, p, at);
  }
  const one = db.prepare(`SELECT ${storedRowList(columns)} FROM decisions WHERE seq = ?`).raw(true);
  const checked = utf8Check(db, columns);
  const rowAt = (index: number): StoredRow => {
    const seq = seqs[index];
    if (seq === undefined) throw new VerdictError('INTERNAL', `no row at position ${index}`);
    return checked(storedRowFromRaw(one.get(seq) as unknown[]));
  };
  return {
    length: seqs.length,
    rowAt,
    byHash: (hash) => (hashes.get(shortKey(hash)) ?? []).filter((i) => rowAt(i).hash?.equals(hash)),
    byPrev: (hash) => (prevs.get(shortKey(hash)) ?? []).filter((i) => rowAt(i).prevHash?.equals(hash)),
    bySeq: (seq) => (Number.isSafeInteger(seq) ? position.get(BigInt(seq)) : undefined),
  };
}

/** The rows of an export, in the order they were written. */
export function arrayRowSource(rows: readonly StoredRow[]): RowSource {
  const hashes = new Map<string, number[]>();
  const prevs = new Map<string, number[]>();
  const seqs = new Map<number, number>();
  rows.forEach((r, i) => {
    if (r.hash !== null) push(hashes, shortKey(r.hash), i);
    if (r.prevHash !== null) push(prevs, shortKey(r.prevHash), i);
    if (!seqs.has(r.seq)) seqs.set(r.seq, i);
  });
  return {
    length: rows.length,
    rowAt: (index) => rows[index] as StoredRow,
    byHash: (hash) => (hashes.get(shortKey(hash)) ?? []).filter((i) => rows[i]?.hash?.equals(hash)),
    byPrev: (hash) => (prevs.get(shortKey(hash)) ?? []).filter((i) => rows[i]?.prevHash?.equals(hash)),
    bySeq: (seq) => seqs.get(seq),
  };
}

function shortKey(hash: Uint8Array): string {
  return Buffer.from(hash.subarray(0, 12)).toString('hex').toUpperCase();
}

function push(map: Map<string, number[]>, key: string | null, value: number): void {
  if (key === null || key === '') return;
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}
