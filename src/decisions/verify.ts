import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import { GENESIS_HASH, RAW_COLUMNS, rawChainHash, type RawRow } from './chain.js';
import { checkpointSignatureValid, type Checkpoint } from './checkpoint.js';
import { readExportFile } from './export.js';
import { keyIdOf } from './keys.js';
import { readSchemaVersion } from './schema.js';
import { newClaims, sqliteJsonMatchesJs, stopClaims, useMmap, verifyBlocks, type BlockResult, type VerifyPlan } from './verify-range.js';

/**
 * `verdict audit verify`: recompute the hash chain of a decision log (or of a
 * JSONL export), check every checkpoint signature against a trusted public key,
 * and name the first break and its kind.
 *
 * What each kind means (seq is always the first sequence number affected):
 * - changed: a row's content no longer matches its hash, or a row was replaced
 *   by one with a recomputed hash (then the next row, or a signed checkpoint,
 *   no longer agrees with it);
 * - deleted: rows are missing (a gap in seq, or later rows renumbered to close it);
 * - inserted: a row that is not part of the chain sits at seq (later rows shifted);
 * - reordered: rows are intact but in the wrong place;
 * - truncated: the log ends before a signed checkpoint it once had (in the
 *   database or exported with `verdict audit checkpoint --export`);
 * - bad-signature: a checkpoint or prune anchor is not signed by the trusted key.
 *
 * The first pass streams the rows and keeps O(1) state, so verifying a large
 * log is limited by SQLite's read speed and SHA-256. Only when a break is found
 * does a second pass build the indexes that tell the kinds apart.
 */

export type BreakKind = 'changed' | 'deleted' | 'inserted' | 'reordered' | 'truncated' | 'bad-signature';

export interface VerifyBreak {
  readonly kind: BreakKind;
  readonly seq: number;
  readonly message: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  /** What was verified: the database or export path. */
  readonly source: string;
  /** Rows whose hash was recomputed and matched, up to the break if there is one. */
  readonly rows: number;
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  /** Where the chain starts: the first row, or a prune anchor, or (export) its first row. */
  readonly start: { readonly seq: number; readonly from: 'genesis' | 'anchor' | 'checkpoint' | 'unanchored' };
  readonly keyIds: readonly string[];
  readonly checkpoints: { readonly total: number; readonly verified: number; readonly lastSeq: number | null; readonly lastTimeMs: number | null };
  /** Rows after the last verified checkpoint: chained, but not yet signed. */
  readonly unsignedRows: number;
  /** The exported checkpoint given with --from-checkpoint, and how it compared. */
  readonly external: { readonly seq: number; readonly status: 'matched' | 'before-anchor' } | null;
  readonly break: VerifyBreak | null;
  readonly warnings: readonly string[];
  readonly seconds: number;
}

export interface VerifyOptions {
  /** Trusted public keys; a checkpoint signed by any other key is a break. */
  readonly publicKeys: readonly KeyObject[];
  /** An exported checkpoint kept elsewhere: makes truncation after it detectable. */
  readonly fromCheckpoint?: Checkpoint;
  /** Threads for a large log, this one included; default: one per core, at most 4. 1 verifies in this thread alone. */
  readonly workers?: number;
}

interface Start {
  readonly seq: number;
  readonly hash: Buffer;
  readonly from: VerifyReport['start']['from'];
}

interface PendingCheckpoint extends Checkpoint {
  /** Where it came from, for messages. */
  readonly origin: 'log' | 'file' | 'export';
}

/** Random access to the rows, in storage order, for telling break kinds apart. */
interface RowSource {
  readonly length: number;
  rowAt(index: number): RawRow;
  /** Positions of rows whose hash is `hash`. */
  byHash(hash: Uint8Array): number[];
  /** Positions of rows whose prev_hash is `hash`. */
  byPrev(hash: Uint8Array): number[];
  /** Position of a row whose seq is `seq`, if any. */
  bySeq(seq: number): number | undefined;
}

// ---------------------------------------------------------------- public entry points

/**
 * Verify the decision log at `path`, opened read-only (safe while the server runs:
 * it sees the last committed state). Large logs are split into ranges verified
 * by worker threads, one per core.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE / DECISION_LOG_CORRUPT when the file cannot be read as a log,
 *   CONFIG_INVALID when checkpoints exist and no public key was given
 */
export async function verifyLog(path: string, options: VerifyOptions): Promise<VerifyReport> {
  const started = performance.now();
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot open the decision log ${path}: ${messageOf(error)}`, { cause: error });
  }
  try {
    let version: number;
    try {
      version = readSchemaVersion(db);
    } catch (error) {
      throw new VerdictError('DECISION_LOG_CORRUPT', `${path} is not a SQLite database: ${messageOf(error)}`, { cause: error });
    }
    if (version === 0) throw new VerdictError('DECISION_LOG_CORRUPT', `${path} is not a verdict decision log (no schema version); check --db`);
    useMmap(db);
    const warnings: string[] = [];
    const stored = version >= 2 ? readCheckpoints(db) : [];
    if (version < 2) warnings.push(`schema v${version}: this log predates signed checkpoints; only the hash chain is checked`);
    const anchor = stored.filter((c) => c.kind === 'anchor').reduce<PendingCheckpoint | null>((a, b) => (a === null || b.seq > a.seq ? b : a), null);
    const start: Start = anchor === null ? { seq: 0, hash: GENESIS_HASH, from: 'genesis' } : { seq: anchor.seq, hash: Buffer.from(anchor.hash), from: 'anchor' };
    const checkpoints = stored.filter((c) => c.kind === 'checkpoint');
    const external = options.fromCheckpoint ? { ...options.fromCheckpoint, origin: 'file' as const } : null;
    if (stored.length + (external ? 1 : 0) > 0 && options.publicKeys.length === 0) {
      throw new VerdictError('CONFIG_INVALID', `${path} has signed checkpoints but no public key was given to check them; pass --pubkey FILE`);
    }
    const wanted = [...checkpoints, ...(external ? [external] : [])].map((c) => c.seq);
    const pass = await chainPassDb(db, path, start, wanted, options.workers);
    return judge({ source: path, start, anchor, checkpoints, external, keys: options.publicKeys, warnings, started, diagnosis: () => dbRowSource(db) }, pass);
  } catch (error) {
    if (error instanceof VerdictError) throw error;
    throw new VerdictError('DECISION_LOG_CORRUPT', `cannot read the decision log ${path}: ${messageOf(error)}`, { cause: error });
  } finally {
    db.close();
  }
}

/**
 * Verify a JSONL export (`verdict audit export`). The chain inside the export is
 * recomputed and every checkpoint it carries is checked; where the export does
 * not start at seq 1 or at a checkpoint, its link to the rows before it is taken
 * on trust, and the report says so.
 * @throws VerdictError INPUT_UNREADABLE / INPUT_INVALID for a file that is not an export
 */
export function verifyExport(path: string, options: VerifyOptions): VerifyReport {
  const started = performance.now();
  const contents = readExportFile(path);
  const warnings: string[] = [];
  let keys = options.publicKeys;
  if (keys.length === 0 && contents.publicKey !== null) {
    keys = [contents.publicKey];
    warnings.push(`the public key came from the export itself (${keyIdOf(contents.publicKey)}); pass --pubkey with a copy kept elsewhere for independent assurance`);
  }
  const external = options.fromCheckpoint ? { ...options.fromCheckpoint, origin: 'file' as const } : null;
  if (contents.checkpoints.length + (external ? 1 : 0) > 0 && keys.length === 0) {
    throw new VerdictError('CONFIG_INVALID', `${path} carries signed checkpoints but no public key is known; pass --pubkey FILE`);
  }
  const first = contents.rows[0];
  let start: Start;
  let anchor: PendingCheckpoint | null = null;
  const before = first === undefined ? undefined : contents.checkpoints.find((c) => c.seq === first[0] - 1);
  if (first === undefined || first[0] === 1) {
    start = { seq: 0, hash: GENESIS_HASH, from: 'genesis' };
  } else if (before !== undefined) {
    anchor = { ...before, origin: 'export' };
    start = { seq: before.seq, hash: Buffer.from(before.hash), from: before.kind === 'anchor' ? 'anchor' : 'checkpoint' };
  } else {
    start = { seq: first[0] - 1, hash: Buffer.from(first[16] ?? GENESIS_HASH), from: 'unanchored' };
    warnings.push(`the export starts at seq ${first[0]} with no checkpoint at seq ${first[0] - 1}: its link to the rows before it is taken on trust`);
  }
  if (contents.header !== null && first !== undefined && contents.header.fromSeq !== null && first[0] !== contents.header.fromSeq) {
    warnings.push(`the header says the export starts at seq ${contents.header.fromSeq}, but its first row is seq ${first[0]}`);
  }
  const checkpoints = contents.checkpoints.filter((c) => c !== before).map((c) => ({ ...c, origin: 'export' as const }));
  const wanted = [...checkpoints, ...(external ? [external] : [])].map((c) => c.seq);
  const pass = chainPassRows(contents.rows, start, wanted);
  const report = judge({ source: path, start, anchor, checkpoints, external, keys, warnings, started, diagnosis: () => arrayRowSource(contents.rows) }, pass);
  // The end line is unsigned: it catches a cut-off copy, not an attacker.
  if (report.ok && contents.footer !== null && contents.footer.rows !== contents.rows.length) {
    const lastSeq = report.lastSeq ?? start.seq;
    return {
      ...report,
      ok: false,
      break: {
        kind: 'truncated',
        seq: lastSeq + 1,
        message: `the export's end line says it holds ${contents.footer.rows} rows but it holds ${contents.rows.length}: rows after seq ${lastSeq} are missing`,
      },
    };
  }
  const headerEnd = contents.header?.toSeq ?? null;
  if (report.ok && headerEnd !== null && (report.lastSeq ?? start.seq) < headerEnd) {
    const lastSeq = report.lastSeq ?? start.seq;
    return {
      ...report,
      ok: false,
      break: { kind: 'truncated', seq: lastSeq + 1, message: `the export's header says it ends at seq ${headerEnd}, but its last row is seq ${lastSeq}: rows ${lastSeq + 1}..${headerEnd} are missing` },
    };
  }
  if (report.ok && contents.footer === null) {
    return { ...report, warnings: [...report.warnings, 'the export has no end line: it may have been cut off (its signed checkpoints still bound what is there)'] };
  }
  return report;
}

// ---------------------------------------------------------------- the chain pass

/** What recomputing the chain found, before checkpoints are judged. */
interface ChainPass {
  readonly rows: number;
  readonly firstSeq: number | null;
  /** The chain hash computed at each requested seq that was reached. */
  readonly hashesAt: ReadonlyMap<number, Buffer>;
  /** The first row that did not continue the chain: the seq expected there, the hash it had to continue from, its position. */
  readonly failure: { readonly expected: number; readonly prev: Buffer; readonly index: number } | null;
}

/** Below this many rows, worker threads cost more than they save. */
const PARALLEL_MIN_ROWS = 100_000;
/**
 * Rows per block handed to a thread: small enough that the threads finish
 * close together, large enough that claiming one is noise.
 */
const MAX_BLOCK_ROWS = 10_000;
/** Blocks per thread at least, so that a small log split for testing still has several. */
const MIN_BLOCKS_PER_THREAD = 4;

async function chainPassDb(db: Database.Database, path: string, start: Start, wanted: readonly number[], threadOption: number | undefined): Promise<ChainPass> {
  const first = db.prepare('SELECT min(seq) FROM decisions').pluck().get() as number | null;
  const tip = db.prepare('SELECT max(seq) FROM decisions').pluck().get() as number | null;
  if (first === null || tip === null) return { rows: 0, firstSeq: null, hashesAt: new Map(), failure: null };
  if (first <= start.seq) {
    // Rows at or before the prune anchor: they cannot belong to the chain that continues from it.
    return { rows: 0, firstSeq: first, hashesAt: new Map(), failure: { expected: start.seq + 1, prev: start.hash, index: 0 } };
  }
  const from = start.seq + 1;
  const total = tip - from + 1;
  // By default one thread per core for a large log; an explicit count is honoured (tests use it on small logs).
  const threads = Math.max(1, Math.min(total, threadOption ?? (total >= PARALLEL_MIN_ROWS ? Math.min(availableParallelism(), 4) : 1)));
  const blockRows = Math.max(1, Math.min(MAX_BLOCK_ROWS, Math.ceil(total / (threads * MIN_BLOCKS_PER_THREAD))));
  const blocks = Math.ceil(total / blockRows);
  const plan: VerifyPlan = { path, from, to: tip, prev: start.hash, blockRows, hashesAt: wanted, fast: sqliteJsonMatchesJs(db), claims: newClaims(blocks) };
  const workerFile = fileURLToPath(new URL('./verify-worker.js', import.meta.url));
  // Without the compiled worker file (running from TypeScript sources) this thread takes every block.
  const workers = threads > 1 && fs.existsSync(workerFile) ? Array.from({ length: threads - 1 }, () => runWorker(workerFile, plan)) : [];
  // This thread verifies too, rather than wait; the workers take blocks as soon as they are up.
  let mine: BlockResult[];
  try {
    mine = verifyBlocks(db, plan);
  } catch (error) {
    // Let no worker outlive the call: they finish the block in hand and stop.
    stopClaims(plan);
    await Promise.allSettled(workers);
    throw error;
  }
  const results = [mine, ...(await Promise.all(workers))].flat().sort((a, b) => a.block - b.block);

  const hashesAt = new Map<number, Buffer>();
  let rows = 0;
  for (const result of results) {
    for (const [seq, h] of result.hashesAt) hashesAt.set(seq, Buffer.from(h));
    rows += result.rows;
    if (result.failure !== null) {
      const expected = result.failure.expected;
      // Position of the first row at or after the break, in seq order.
      const index = db.prepare('SELECT count(*) FROM decisions WHERE seq < ?').pluck().get(expected) as number;
      return { rows, firstSeq: first, hashesAt, failure: { expected, prev: Buffer.from(result.failure.prev), index } };
    }
  }
  // Every block up to the first failure is verified by some thread; with none failed, that is all of them.
  if (results.length !== blocks) throw new VerdictError('INTERNAL', `verified ${results.length} of ${blocks} blocks of the log`);
  return { rows, firstSeq: first, hashesAt, failure: null };
}

function runWorker(file: string, plan: VerifyPlan): Promise<BlockResult[]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(file, { workerData: plan });
    worker.once('message', (message: { ok: true; results: BlockResult[] } | { ok: false; error: string }) => {
      if (message.ok) resolve(message.results);
      else reject(new VerdictError('DECISION_LOG_CORRUPT', `cannot read the decision log ${plan.path}: ${message.error}`));
    });
    worker.once('error', (error) => reject(new VerdictError('INTERNAL', `a verification worker failed: ${messageOf(error)}`, { cause: error })));
    worker.once('exit', (code) => {
      if (code !== 0) reject(new VerdictError('INTERNAL', `a verification worker exited with code ${code}`));
    });
  });
}

/** The chain pass over rows in memory (an export), in their stored order. */
function chainPassRows(rows: readonly RawRow[], start: Start, wanted: readonly number[]): ChainPass {
  const want = new Set(wanted);
  const hashesAt = new Map<number, Buffer>();
  let expected = start.seq + 1;
  let prev: Buffer = start.hash;
  let index = 0;
  for (const r of rows) {
    const storedPrev = r[16];
    const storedHash = r[17];
    if (r[0] !== expected || storedPrev === null || storedHash === null || !prev.equals(storedPrev)) break;
    const h = rawChainHash(prev, r);
    if (!h.equals(storedHash)) break;
    if (want.has(expected)) hashesAt.set(expected, h);
    prev = h;
    expected++;
    index++;
  }
  return {
    rows: index,
    firstSeq: rows[0]?.[0] ?? null,
    hashesAt,
    failure: index < rows.length ? { expected, prev, index } : null,
  };
}

// ---------------------------------------------------------------- judging checkpoints

interface JudgeInput {
  readonly source: string;
  readonly start: Start;
  readonly anchor: PendingCheckpoint | null;
  readonly checkpoints: readonly PendingCheckpoint[];
  readonly external: PendingCheckpoint | null;
  readonly keys: readonly KeyObject[];
  readonly warnings: string[];
  readonly started: number;
  readonly diagnosis: () => RowSource;
}

/**
 * Put the chain pass and the checkpoints together, in seq order, so the break
 * reported is the first one: a bad signature, a checkpoint the chain no longer
 * matches, a row that breaks the chain, or checkpoints beyond the last row.
 */
function judge(input: JudgeInput, pass: ChainPass): VerifyReport {
  const { start, keys, warnings } = input;
  const keyIds = keys.map(keyIdOf);
  const byKeyId = new Map(keys.map((k) => [keyIdOf(k), k] as const));
  const lastVerified = start.seq + pass.rows;
  let verified = 0;
  let lastCheckpoint: PendingCheckpoint | null = null;
  let external: VerifyReport['external'] = null;

  const finish = (brk: VerifyBreak | null): VerifyReport => {
    const rows = brk === null ? pass.rows : Math.min(pass.rows, Math.max(0, brk.seq - 1 - start.seq));
    const lastSeq = rows > 0 ? start.seq + rows : null;
    const signedThrough = Math.max(lastCheckpoint?.seq ?? start.seq, start.seq);
    if (brk === null && lastSeq !== null && input.checkpoints.length === 0 && input.anchor === null) {
      warnings.push('no signed checkpoints: the chain shows edited rows, but not a log rewritten from scratch; run the server with checkpoints on');
    }
    return {
      ok: brk === null,
      source: input.source,
      rows,
      firstSeq: pass.firstSeq,
      lastSeq,
      start: { seq: start.seq, from: start.from },
      keyIds,
      checkpoints: { total: input.checkpoints.length, verified, lastSeq: lastCheckpoint?.seq ?? null, lastTimeMs: lastCheckpoint?.timeMs ?? null },
      unsignedRows: lastSeq === null ? 0 : Math.max(0, lastSeq - signedThrough),
      external,
      break: brk,
      warnings,
      seconds: (performance.now() - input.started) / 1000,
    };
  };

  const signatureBreak = (cp: PendingCheckpoint): VerifyBreak | null => {
    const key = byKeyId.get(cp.keyId);
    const what = describeCheckpoint(cp);
    if (key === undefined) {
      return { kind: 'bad-signature', seq: cp.seq, message: `${what} is signed by key ${cp.keyId}, not by the trusted key ${keyIds.join(' or ')}` };
    }
    if (!checkpointSignatureValid(cp, key)) {
      return { kind: 'bad-signature', seq: cp.seq, message: `${what} has an invalid signature: its seq, hash, time or kind were altered, or it was forged` };
    }
    return null;
  };

  if (input.anchor !== null) {
    const brk = signatureBreak(input.anchor);
    if (brk !== null) return finish(brk);
  }

  const pending = [...input.checkpoints, ...(input.external ? [input.external] : [])].sort((a, b) => a.seq - b.seq);
  let lastGood = start.seq;
  for (const cp of pending) {
    if (pass.failure !== null && cp.seq >= pass.failure.expected) break;
    const brk = signatureBreak(cp);
    if (brk !== null) return finish(brk);
    if (cp.seq <= start.seq) {
      // Before the start (pruned): only the signature can be checked, and agreement at the start itself.
      if (cp.seq === start.seq && !Buffer.from(cp.hash).equals(start.hash)) {
        return finish({ kind: 'changed', seq: start.seq, message: `${describeCheckpoint(cp)} disagrees with ${describeStart(start)} about the chain hash at seq ${start.seq}` });
      }
      if (cp.origin === 'file') external = { seq: cp.seq, status: cp.seq === start.seq ? 'matched' : 'before-anchor' };
      else verified++;
      continue;
    }
    if (cp.seq > lastVerified) {
      const end = lastVerified;
      return finish({
        kind: 'truncated',
        seq: end + 1,
        message:
          end === start.seq
            ? `the log holds no rows after seq ${start.seq}, but ${describeCheckpoint(cp)} covers seq ${cp.seq}: rows ${start.seq + 1}..${cp.seq} were removed`
            : `the log ends at seq ${end}, but ${describeCheckpoint(cp)} covers seq ${cp.seq}: rows ${end + 1}..${cp.seq} were removed`,
      });
    }
    const computed = pass.hashesAt.get(cp.seq);
    if (computed === undefined || !computed.equals(cp.hash)) {
      return finish({
        kind: 'changed',
        seq: lastGood + 1,
        message: `the chain hash at seq ${cp.seq} does not match ${describeCheckpoint(cp)}: rows in seq ${lastGood + 1}..${cp.seq} were rewritten with recomputed hashes`,
      });
    }
    if (cp.origin === 'file') {
      external = { seq: cp.seq, status: 'matched' };
    } else {
      verified++;
      lastCheckpoint = cp;
    }
    lastGood = cp.seq;
  }
  if (pass.failure !== null) {
    return finish(diagnose(input.diagnosis(), pass.failure.index, pass.failure.expected, pass.failure.prev, start));
  }
  return finish(null);
}

function describeCheckpoint(cp: PendingCheckpoint): string {
  const when = new Date(cp.timeMs).toISOString();
  if (cp.origin === 'file') return `the exported checkpoint (seq ${cp.seq}, signed ${when})`;
  return `the ${cp.kind === 'anchor' ? 'prune anchor' : 'checkpoint'} at seq ${cp.seq} (signed ${when})`;
}

function describeStart(start: Start): string {
  return start.from === 'anchor' ? 'the prune anchor' : start.from === 'genesis' ? 'the genesis hash' : 'the export';
}

// ---------------------------------------------------------------- telling the kinds apart

/**
 * The first pass stopped at `index` (storage order), where a row with seq
 * `expected` continuing from `prev` should have been. Work out what happened.
 */
function diagnose(rows: RowSource, index: number, expected: number, prev: Buffer, start: Start): VerifyBreak {
  const e = expected;
  const r = rows.rowAt(index);
  const origins = new OriginalSeq(rows, start);

  if (r[0] > e) {
    const elsewhere = rows.bySeq(e);
    if (elsewhere !== undefined && elsewhere > index) {
      return { kind: 'reordered', seq: e, message: `row ${e} is out of place: seq ${r[0]} comes before it` };
    }
    const missing = r[0] - 1 === e ? `row ${e} is missing` : `rows ${e}..${r[0] - 1} are missing`;
    return { kind: 'deleted', seq: e, message: `${missing} (the log jumps from seq ${e - 1} to ${r[0]})` };
  }
  if (r[0] <= start.seq) {
    return { kind: 'inserted', seq: r[0], message: `row ${r[0]} sits at or before the prune anchor at seq ${start.seq}: it was added (or restored) after pruning` };
  }
  if (r[0] < e) {
    return { kind: 'inserted', seq: r[0], message: `a second row claims seq ${r[0]} after seq ${e - 1}` };
  }
  if (r[16] === null || r[17] === null) {
    return { kind: 'changed', seq: e, message: `row ${e} has no hash (its prev_hash or hash column was cleared, or it was written with the chain off)` };
  }

  const o = origins.of(index);
  if (o === null) {
    const following = index + 1 < rows.length ? rows.rowAt(index + 1) : null;
    if (following !== null && following[16] !== null && following[16].equals(r[17])) {
      return { kind: 'changed', seq: e, message: `row ${e} was changed: its content no longer matches its hash` };
    }
    if (following !== null && following[16] !== null && following[16].equals(prev)) {
      return { kind: 'inserted', seq: e, message: `row ${e} is not part of the chain: the row after it continues from seq ${e - 1} (a forged row was inserted and later rows renumbered)` };
    }
    return { kind: 'changed', seq: e, message: `row ${e} was changed: its content no longer matches its hash` };
  }
  if (o === e) {
    // Intact where it is, but it does not continue from the row before it: that row
    // (or this one's prev_hash) was rewritten with a recomputed hash.
    const seq = e - 1 > start.seq ? e - 1 : e;
    return {
      kind: 'changed',
      seq,
      message: `row ${e} does not continue from row ${e - 1}: ${seq === e - 1 ? `row ${e - 1} was replaced by one with a recomputed hash` : `its prev_hash was rewritten`}`,
    };
  }
  if (o < e) {
    const n = e - o;
    return {
      kind: 'inserted',
      seq: o,
      message: `${n === 1 ? `row ${o} is` : `rows ${o}..${e - 1} are`} not part of the chain: the original row ${o} now sits at seq ${e} (forged row${n === 1 ? '' : 's'} inserted, later rows renumbered)`,
    };
  }
  // o > e: this row belongs further on. Is the original row e elsewhere?
  for (const j of rows.byPrev(prev)) {
    if (j !== index && origins.of(j) === e) {
      return { kind: 'reordered', seq: e, message: `rows are out of order: seq ${e} holds the row written as seq ${o}, and the row written as seq ${e} is at seq ${rows.rowAt(j)[0]}` };
    }
  }
  return {
    kind: 'deleted',
    seq: e,
    message: `${o - 1 === e ? `row ${e} is` : `rows ${e}..${o - 1} are`} missing: seq ${e} holds the row written as seq ${o} (later rows were renumbered to close the gap)`,
  };
}

/**
 * The seq a row was written with: the one at which its stored hash matches its
 * content and stored prev_hash. Found at its current seq, else by following
 * prev_hash back to a row that is in place, else by trying nearby seqs (rows
 * renumbered after a deletion point at a row that no longer exists).
 */
class OriginalSeq {
  private readonly memo = new Map<number, number | null>();
  private static readonly WINDOW = 2048;
  private static readonly MAX_WALK = 200_000;

  constructor(
    private readonly rows: RowSource,
    private readonly start: Start,
  ) {}

  of(index: number): number | null {
    const known = this.memo.get(index);
    if (known !== undefined) return known;
    // Walk back along prev_hash to a row whose original seq is known or in place.
    const path: number[] = [];
    let current = index;
    let base: number | null = null;
    const seen = new Set<number>();
    for (let steps = 0; steps < OriginalSeq.MAX_WALK; steps++) {
      const memo = this.memo.get(current);
      if (memo !== undefined) {
        base = memo;
        break;
      }
      const r = this.rows.rowAt(current);
      if (r[16] === null || r[17] === null) {
        base = null;
        path.push(current);
        break;
      }
      if (rawChainHash(r[16], r, r[0]).equals(r[17])) {
        this.memo.set(current, r[0]);
        base = r[0];
        break;
      }
      path.push(current);
      seen.add(current);
      if (r[16].equals(this.start.hash)) {
        base = this.start.seq;
        break;
      }
      if (r[16].equals(GENESIS_HASH)) {
        base = 0;
        break;
      }
      const pred = this.rows.byHash(r[16]).find((p) => !seen.has(p));
      if (pred === undefined) {
        base = null;
        break;
      }
      current = pred;
    }
    // Forward again, one seq per step, confirming each row's hash at its claimed seq.
    for (let k = path.length - 1; k >= 0; k--) {
      const at = path[k] as number;
      const r = this.rows.rowAt(at);
      let o: number | null = null;
      if (base !== null && r[16] !== null && r[17] !== null && rawChainHash(r[16], r, base + 1).equals(r[17])) o = base + 1;
      if (o === null) o = this.searchWindow(r);
      this.memo.set(at, o);
      base = o;
    }
    return this.memo.get(index) ?? null;
  }

  private searchWindow(r: RawRow): number | null {
    const prevHash = r[16];
    const hash = r[17];
    if (prevHash === null || hash === null) return null;
    for (let d = 1; d <= OriginalSeq.WINDOW; d++) {
      for (const seq of [r[0] + d, r[0] - d]) {
        if (seq >= 1 && rawChainHash(prevHash, r, seq).equals(hash)) return seq;
      }
    }
    return null;
  }
}

// ---------------------------------------------------------------- row sources

function dbRowSource(db: Database.Database): RowSource {
  const seqs = db.prepare('SELECT seq FROM decisions ORDER BY seq').pluck().all() as number[];
  const position = new Map<number, number>();
  seqs.forEach((seq, i) => position.set(seq, i));
  const hashes = new Map<string, number[]>();
  const prevs = new Map<string, number[]>();
  // Short keys keep the maps small; rowAt() confirms the full hash.
  const keyed = db.prepare('SELECT seq, hex(substr(hash, 1, 12)) AS h, hex(substr(prev_hash, 1, 12)) AS p FROM decisions').raw(true);
  for (const [seq, h, p] of keyed.iterate() as IterableIterator<[number, string, string]>) {
    const at = position.get(seq) as number;
    push(hashes, h, at);
    push(prevs, p, at);
  }
  const one = db.prepare(`SELECT ${RAW_COLUMNS} FROM decisions WHERE seq = ?`).raw(true);
  const rowAt = (index: number): RawRow => {
    const seq = seqs[index];
    if (seq === undefined) throw new VerdictError('INTERNAL', `no row at position ${index}`);
    return one.get(seq) as RawRow;
  };
  return {
    length: seqs.length,
    rowAt,
    byHash: (hash) => (hashes.get(shortKey(hash)) ?? []).filter((i) => rowAt(i)[17]?.equals(hash)),
    byPrev: (hash) => (prevs.get(shortKey(hash)) ?? []).filter((i) => rowAt(i)[16]?.equals(hash)),
    bySeq: (seq) => position.get(seq),
  };
}

function arrayRowSource(rows: readonly RawRow[]): RowSource {
  const hashes = new Map<string, number[]>();
  const prevs = new Map<string, number[]>();
  const seqs = new Map<number, number>();
  rows.forEach((r, i) => {
    if (r[17] !== null) push(hashes, shortKey(r[17]), i);
    if (r[16] !== null) push(prevs, shortKey(r[16]), i);
    if (!seqs.has(r[0])) seqs.set(r[0], i);
  });
  return {
    length: rows.length,
    rowAt: (index) => rows[index] as RawRow,
    byHash: (hash) => (hashes.get(shortKey(hash)) ?? []).filter((i) => rows[i]?.[17]?.equals(hash)),
    byPrev: (hash) => (prevs.get(shortKey(hash)) ?? []).filter((i) => rows[i]?.[16]?.equals(hash)),
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

function readCheckpoints(db: Database.Database): PendingCheckpoint[] {
  const rows = db.prepare('SELECT kind, seq, hash, time_ms, key_id, signature FROM checkpoints ORDER BY seq, id').all() as Array<{
    kind: string;
    seq: number;
    hash: Buffer;
    time_ms: number;
    key_id: string;
    signature: Buffer;
  }>;
  return rows.map((r) => ({
    // An unknown kind can only come from tampering; it then fails its signature check as a checkpoint.
    kind: r.kind === 'anchor' ? 'anchor' : 'checkpoint',
    seq: r.seq,
    hash: r.hash,
    timeMs: r.time_ms,
    keyId: r.key_id,
    signature: r.signature,
    origin: 'log',
  }));
}
