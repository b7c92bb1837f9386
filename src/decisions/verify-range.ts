import { hash as oneShotHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { CANONICAL_FORMAT, RAW_COLUMNS, rawChainHash, type RawRow } from './chain.js';

/**
 * The hot loop of `verdict audit verify`: recompute the chain over one range of
 * seq numbers. It runs in the main thread or, for large logs, in one worker
 * thread per range (each with its own read-only connection), because reading
 * rows and hashing them is all CPU.
 *
 * Fast path: SQLite builds each row's canonical text itself with json_array(),
 * which for the values a row holds (text, integers, NULL) writes exactly what
 * JSON.stringify writes — checked at start by sqliteJsonMatchesJs() on the
 * awkward cases, and again for any row whose hash does not match, by
 * recomputing that row the JavaScript way before calling it a break. So the fast
 * path can cost a false alarm only if both disagree, never a false pass.
 */

export interface RangeJob {
  readonly path: string;
  /** First and last seq of the range, inclusive. */
  readonly from: number;
  readonly to: number;
  /** The chain hash the row `from` must continue from. */
  readonly prev: Uint8Array;
  /** Seqs whose computed chain hash the caller wants back (checkpoint positions). */
  readonly hashesAt: readonly number[];
  /** Use SQLite's json_array() for the canonical text. */
  readonly fast: boolean;
}

export interface RangeResult {
  /** Rows verified, from `from` on. */
  readonly rows: number;
  readonly hashesAt: ReadonlyArray<readonly [number, Uint8Array]>;
  /** Where the chain broke: the seq expected next, and the hash it should continue from. */
  readonly failure: { readonly expected: number; readonly prev: Uint8Array } | null;
}

const JSON_ARRAY = `json_array('${CANONICAL_FORMAT}', seq, decision_id, time_ms, caller, request_id, principal_id, action,
  resource_type, resource_id, effect, reason, rule_ids, errors, policy_version, request, latency_us)`;

/**
 * Verify one range on an open connection. Hashes travel as hex strings, not
 * Buffers: better-sqlite3 copies every BLOB into a new Buffer, which cost more
 * than the SHA-256 itself, while hex() text is cheap to make and to compare.
 */
export function verifyRange(db: Database.Database, job: RangeJob): RangeResult {
  const wanted = new Set(job.hashesAt);
  const hashesAt: Array<readonly [number, Uint8Array]> = [];
  const fast = db
    .prepare(`SELECT seq, ${job.fast ? JSON_ARRAY : `''`}, lower(hex(prev_hash)), lower(hex(hash)) FROM decisions WHERE seq BETWEEN ? AND ? ORDER BY seq`)
    .raw(true);
  const slow = db.prepare(`SELECT ${RAW_COLUMNS} FROM decisions WHERE seq = ?`).raw(true);
  const hasher = new ChainHasher();
  let prev = Buffer.from(job.prev).toString('hex');
  let expected = job.from;
  let rows = 0;
  let failed = false;
  for (const r of fast.iterate(job.from, job.to) as IterableIterator<[number, string, string, string]>) {
    // hex() of NULL is '', which never equals a 64-digit hash.
    if (r[0] !== expected || r[2] !== prev) {
      failed = true;
      break;
    }
    let h = job.fast ? hasher.hash(prev, r[1]) : '';
    if (h !== r[3]) {
      // The canonical form is JSON.stringify's: settle it that way.
      h = rawChainHash(Buffer.from(prev, 'hex'), slow.get(r[0]) as RawRow).toString('hex');
      if (h !== r[3]) {
        failed = true;
        break;
      }
    }
    if (wanted.has(r[0])) hashesAt.push([r[0], Buffer.from(h, 'hex')]);
    prev = h;
    expected++;
    rows++;
  }
  // Rows missing at the end of the range show as a short count.
  if (!failed && expected <= job.to) failed = true;
  return { rows, hashesAt, failure: failed ? { expected, prev: Buffer.from(prev, 'hex') } : null };
}

/** Open `job.path` read-only and verify the range (what a worker thread runs). */
export function verifyRangeFile(job: RangeJob): RangeResult {
  const db = new Database(job.path, { readonly: true, fileMustExist: true });
  try {
    useMmap(db);
    return verifyRange(db, job);
  } finally {
    db.close();
  }
}

/**
 * Hex SHA-256(prev ‖ UTF-8 text), with one reused buffer and the one-shot hash,
 * which skips creating a Hash object per row.
 */
class ChainHasher {
  private buffer = Buffer.alloc(64 * 1024);

  hash(prevHex: string, text: string): string {
    // A UTF-16 code unit is at most 3 UTF-8 bytes, so this size always fits the text.
    const need = 32 + text.length * 3;
    if (this.buffer.length < need) this.buffer = Buffer.alloc(need * 2);
    this.buffer.write(prevHex, 0, 32, 'hex');
    const n = this.buffer.write(text, 32, 'utf8');
    return oneShotHash('sha256', this.buffer.subarray(0, 32 + n), 'hex');
  }
}

/**
 * Whether this SQLite's json_array() writes what JSON.stringify writes for the
 * values a row can hold. Checked once per verification, on the cases where
 * JSON encoders differ: escapes, control characters, non-BMP characters,
 * U+2028, large integers, NULL.
 */
export function sqliteJsonMatchesJs(db: Database.Database): boolean {
  const samples: Array<string | bigint | null> = [
    'plain', 'q"b\\s/', '\u0000\u0001\u0007\b\t\n\u000b\f\r\u001f\u007f', '\u2028\u2029', 'é😀\uFFFD', '',
    0n, -1n, 9007199254740991n, -9007199254740991n, 1748779200000n, null,
  ];
  try {
    const statement = db.prepare('SELECT json_array(?)').pluck();
    for (const sample of samples) {
      const expected = JSON.stringify([typeof sample === 'bigint' ? Number(sample) : sample]);
      if (statement.get(sample) !== expected) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Read through a memory map instead of read() calls: verification touches every
 * page once, and copying each into SQLite's cache is pure overhead. Read-only,
 * so a map cannot corrupt anything; 1 GiB covers a log of about 1.4 M rows and
 * reads past it fall back to ordinary I/O.
 */
export function useMmap(db: Database.Database): void {
  try {
    db.pragma('mmap_size = 1073741824');
  } catch {
    // A build without mmap support reads the ordinary way.
  }
}
