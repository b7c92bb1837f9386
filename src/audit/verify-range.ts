import { hash as oneShotHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { canonicalSql, storedRowFromRaw, storedRowHash, type StoredRow } from '../decisions/chain.js';
import { storageClassSql, storedRowList, type ColumnType } from '../decisions/columns.js';
import { decisionColumns } from '../decisions/schema.js';
import { REPLACEMENT_CHARACTER, utf8Check } from './stored-text.js';

/**
 * The hot loop of `verdict audit verify`: recompute the chain over the rows of
 * a log, in blocks of seq numbers that any number of threads (this one and
 * worker threads, each with its own read-only connection) take from a shared
 * counter. Taking blocks rather than fixed ranges keeps every thread busy to
 * the end even when a worker starts late or another process takes a core from
 * one. A block starts from the stored hash before it; the block before proves
 * that hash by recomputing it.
 *
 * Fast path: SQLite builds each row's canonical text itself with json_array(),
 * which for the values a row holds (text, integers, NULL) writes exactly what
 * JSON.stringify writes — checked at start by sqliteJsonMatchesJs() on the
 * awkward cases — from the SQL the column table gives (chain.ts canonicalSql),
 * each row in its own canonical format. The text arrives as one string per row with the stored hashes
 * appended in hex: better-sqlite3 makes one JS string far faster than a Buffer
 * per BLOB or an array per row. A row the fast path cannot vouch for (wrong
 * seq, a hash that does not match, a value json_array() refuses) is checked
 * again the JavaScript way, with storedRowHash, before it is called a break: the
 * fast path costs time there, never changes the verdict. The fast path takes
 * only values of the storage class verdict writes (chain.ts canonicalSql): a
 * BLOB holding JSONB would otherwise be rendered as the JSON it holds, the text
 * it replaced, and keep the row's hash.
 */

export interface VerifyPlan {
  readonly path: string;
  /** First and last seq to verify, inclusive. */
  readonly from: number;
  readonly to: number;
  /** The chain hash the row `from` must continue from. */
  readonly prev: Uint8Array;
  readonly blockRows: number;
  /** Seqs whose computed chain hash the caller wants back (checkpoint positions). */
  readonly hashesAt: readonly number[];
  /** Use SQLite's json_array() for the canonical text. */
  readonly fast: boolean;
  /** Shared by all threads: see newClaims(). */
  readonly claims: SharedArrayBuffer;
}

export interface BlockResult {
  /** The block's position in the plan: block k covers seqs from + k·blockRows onwards. */
  readonly block: number;
  /** Rows verified, from the block's first seq on. */
  readonly rows: number;
  readonly hashesAt: ReadonlyArray<readonly [number, Uint8Array]>;
  /** Where the chain broke: the seq expected next, and the hash it should continue from. */
  readonly failure: { readonly expected: number; readonly prev: Uint8Array } | null;
}

/** A SharedArrayBuffer for VerifyPlan.claims, with nothing claimed yet. */
export function newClaims(blocks: number): SharedArrayBuffer {
  const claims = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
  const view = new Int32Array(claims);
  view[NEXT] = 0;
  view[LIMIT] = blocks;
  return claims;
}

// Slots of the claims array: the next block to hand out, and the block count
// or, once a block has failed, the first failed block (later ones need no work).
const NEXT = 0;
const LIMIT = 1;

/** Rows fetched per query: enough that the call's own cost vanishes, few enough to keep memory flat. */
const CHUNK_ROWS = 512;

// The canonical text, then prev_hash and hash as 64 lower-case hex digits each
// (as crypto writes them, so they compare as strings); NULL when either is not
// 32 bytes, so that the hex always sits at the same place from the end.
function fastRowSql(present: ReadonlySet<string>): string {
  return `CASE WHEN octet_length(prev_hash) = 32 AND octet_length(hash) = 32
    THEN ${canonicalSql(present)} || lower(hex(prev_hash) || hex(hash)) END`;
}

/** Digits of a seq the fast path reads; a longer one (no log gets there) is left to the exact path. */
const MAX_SEQ_DIGITS = 15;
const HASH_BYTES = 32;
const HASH_HEX = 2 * HASH_BYTES;
/** The value of each lower-case hex digit, by its char code. */
const HEX_VALUE = new Uint8Array(128);
for (let v = 0; v < 16; v++) HEX_VALUE[v.toString(16).charCodeAt(0)] = v;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const COMMA = 0x2c;

/**
 * Verify blocks of `plan` on an open connection until none is left to claim;
 * other threads may be doing the same with the same plan.
 */
export function verifyBlocks(db: Database.Database, plan: VerifyPlan): BlockResult[] {
  const claims = new Int32Array(plan.claims);
  const verifier = new RangeVerifier(db, plan);
  const storedHash = db.prepare<[number], Buffer | null>('SELECT CAST(hash AS BLOB) FROM decisions WHERE seq = ?').pluck();
  const results: BlockResult[] = [];
  for (;;) {
    const block = Atomics.add(claims, NEXT, 1);
    if (block >= Atomics.load(claims, LIMIT)) break;
    const from = plan.from + block * plan.blockRows;
    const to = Math.min(plan.to, from + plan.blockRows - 1);
    // A missing row before the block makes the block before it fail first, so any hash does here.
    const prev = block === 0 ? Buffer.from(plan.prev) : (storedHash.get(from - 1) ?? Buffer.alloc(32));
    const result = verifier.verify(from, to, prev);
    results.push({ block, ...result });
    if (result.failure !== null) lowerLimit(claims, block);
  }
  return results;
}

/** Open `plan.path` read-only and verify blocks of it (what a worker thread runs). */
export function verifyBlocksInFile(plan: VerifyPlan): BlockResult[] {
  const db = new Database(plan.path, { readonly: true, fileMustExist: true });
  try {
    useMmap(db);
    return verifyBlocks(db, plan);
  } finally {
    db.close();
  }
}

/** Hand out no more blocks of the plan. */
export function stopClaims(plan: Pick<VerifyPlan, 'claims'>): void {
  Atomics.store(new Int32Array(plan.claims), LIMIT, 0);
}

function lowerLimit(claims: Int32Array, block: number): void {
  for (;;) {
    const limit = Atomics.load(claims, LIMIT);
    if (limit <= block || Atomics.compareExchange(claims, LIMIT, limit, block) === limit) return;
  }
}

class RangeVerifier {
  private readonly fastRows: Database.Statement<[number, number], string | null> | null;
  private readonly exactRows: Database.Statement<[number, number], unknown[]>;
  private readonly wanted: ReadonlySet<number>;
  private readonly checked: (row: StoredRow) => StoredRow;
  // Reused for every row: prev hash, then the row's text as UTF-8.
  private scratch = Buffer.alloc(64 * 1024);

  constructor(db: Database.Database, plan: VerifyPlan) {
    const present = decisionColumns(db);
    this.fastRows = plan.fast ? db.prepare<[number, number], string | null>(`SELECT ${fastRowSql(present)} FROM decisions WHERE seq BETWEEN ? AND ? ORDER BY seq`).pluck() : null;
    this.exactRows = db.prepare<[number, number], unknown[]>(`SELECT ${storedRowList(present)} FROM decisions WHERE seq BETWEEN ? AND ? ORDER BY seq`).raw();
    this.wanted = new Set(plan.hashesAt);
    this.checked = utf8Check(db, present);
  }

  /** Verify seqs from..to, continuing from `start`. */
  verify(from: number, to: number, start: Buffer): Omit<BlockResult, 'block'> {
    const hashesAt: Array<readonly [number, Uint8Array]> = [];
    // The chain hash so far in hex, as the fast path compares it with the stored hex.
    let prev = start.toString('hex');
    let expected = from;
    for (let low = from; low <= to; low += CHUNK_ROWS) {
      const high = Math.min(to, low + CHUNK_ROWS - 1);
      if (this.fastRows !== null) {
        for (const text of fastTexts(this.fastRows, low, high)) {
          const h = this.fastHash(text, expected, prev);
          if (h === null) break;
          if (this.wanted.has(expected)) hashesAt.push([expected, Buffer.from(h, 'hex')]);
          prev = h;
          expected++;
        }
      }
      if (expected > high) continue;
      // The rest of the chunk, row by row the reference way.
      let prevBytes: Buffer = Buffer.from(prev, 'hex');
      for (const raw of this.exactRows.all(expected, high)) {
        const r = this.checked(storedRowFromRaw(raw));
        if (r.seq !== expected || r.prevHash === null || r.hash === null || !prevBytes.equals(r.prevHash)) break;
        const h = storedRowHash(prevBytes, r);
        if (h === null || !h.equals(r.hash)) break;
        if (this.wanted.has(expected)) hashesAt.push([expected, h]);
        prevBytes = h;
        expected++;
      }
      prev = prevBytes.toString('hex');
      // Rows missing at the end of the chunk show as a short count.
      if (expected <= high) return { rows: expected - from, hashesAt, failure: { expected, prev: prevBytes } };
    }
    return { rows: expected - from, hashesAt, failure: null };
  }

  /**
   * The chain hash (hex) of a fast-path row if it is seq `expected` and
   * continues from `prev`, else null (then the row is checked the exact way).
   */
  private fastHash(text: string | null, expected: number, prev: string): string | null {
    // U+FFFD may stand for bytes that are not UTF-8 (stored-text.ts): the exact path reads those rows' bytes.
    if (text === null || prev.length !== HASH_HEX || text.includes(REPLACEMENT_CHARACTER)) return null;
    // The seq follows the format's name, which holds no comma.
    const seqAt = text.indexOf(',') + 1;
    let at = seqAt;
    let seq = 0;
    let c = text.charCodeAt(at);
    while (c >= DIGIT_0 && c <= DIGIT_9 && at < seqAt + MAX_SEQ_DIGITS) {
      seq = seq * 10 + (c - DIGIT_0);
      c = text.charCodeAt(++at);
    }
    if (c !== COMMA || seq !== expected || at === seqAt) return null;
    // The stored prev_hash must be the hash computed so far. (slice and === beat
    // startsWith(prev, position) and endsWith(), which V8 runs several times slower.)
    const length = text.length;
    if (text.slice(length - 2 * HASH_HEX, length - HASH_HEX) !== prev) return null;
    // A UTF-16 code unit is at most 3 UTF-8 bytes, so this size always fits the text.
    const need = HASH_BYTES + text.length * 3;
    if (this.scratch.length < need) this.scratch = Buffer.alloc(need * 2);
    const bytes = this.scratch;
    const end = HASH_BYTES + bytes.write(text, HASH_BYTES, 'utf8');
    // The hash input is prev ‖ canonical: prev's bytes from its hex digits (just
    // checked), which as ASCII take one byte each at the end of the text.
    const prevHex = end - 2 * HASH_HEX;
    for (let k = 0; k < HASH_BYTES; k++) {
      bytes[k] = ((HEX_VALUE[bytes[prevHex + 2 * k] as number] as number) << 4) | (HEX_VALUE[bytes[prevHex + 2 * k + 1] as number] as number);
    }
    const h = oneShotHash('sha256', bytes.subarray(0, prevHex), 'hex');
    return text.slice(length - HASH_HEX) === h ? h : null;
  }
}

/** The fast path's rows from low to high; none when SQLite cannot build them. */
function fastTexts(statement: Database.Statement<[number, number], string | null>, low: number, high: number): Array<string | null> {
  try {
    return statement.all(low, high);
  } catch {
    // A canonical text longer than SQLite may build here (LONGEST_STORED_VALUE; no genuine row's is): the exact path reads the rows and reports the break.
    return [];
  }
}

/**
 * Whether this SQLite's json_array() writes what JSON.stringify writes for the
 * values a row can hold, behind the storage-class conditions the fast path
 * puts on each column (chain.ts canonicalSql). Checked once per verification,
 * on the cases where JSON encoders differ: escapes, control characters,
 * non-BMP characters, U+2028, large integers, NULL; and on values the
 * conditions must turn away, which json_array() alone renders as the value
 * they stand in for: a BLOB holding the JSONB of "DENY", a REAL, text in an
 * integer column.
 */
export function sqliteJsonMatchesJs(db: Database.Database): boolean {
  const texts: Array<string | null> = ['plain', 'q"b\\s/', '\u0000\u0001\u0007\b\t\n\u000b\f\r\u001f\u007f', '\u2028\u2029', 'é😀\uFFFD', '', null];
  const integers: bigint[] = [0n, -1n, 9007199254740991n, -9007199254740991n, 1748779200000n];
  const turnedAway: Array<readonly [ColumnType, unknown]> = [
    ['text', JSONB_OF_DENY],
    ['text?', JSONB_OF_DENY],
    ['json', JSONB_OF_DENY],
    ['integer', 5.5],
    ['integer', '5'],
  ];
  try {
    // json_array() of the value, behind the condition the fast path puts on a column of `type`.
    const guarded = (type: ColumnType): Database.Statement<[{ value: unknown }], string | null> =>
      db.prepare<[{ value: unknown }], string | null>(`SELECT CASE WHEN ${storageClassSql(type, '@value')} THEN json_array(@value) END`).pluck();
    const text = guarded('text?');
    if (texts.some((value) => text.get({ value }) !== JSON.stringify([value]))) return false;
    const integer = guarded('integer');
    if (integers.some((value) => integer.get({ value }) !== JSON.stringify([Number(value)]))) return false;
    return turnedAway.every(([type, value]) => guarded(type).get({ value }) === null);
  } catch {
    return false;
  }
}

/** The JSONB encoding of the JSON string "DENY" (a text element of 4 bytes), which json_array() renders as "DENY". */
const JSONB_OF_DENY = Buffer.from('4744454e59', 'hex');

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
