import { availableParallelism } from 'node:os';
import type Database from 'better-sqlite3';
import { storedRowHash, type StoredRow } from '../decisions/chain.js';
import { VerdictError, messageOf } from '../errors.js';
import { startThread } from '../threads.js';
import type { VerifyReport } from './report.js';
import { newClaims, sqliteJsonMatchesJs, stopClaims, verifyBlocks, type BlockResult, type VerifyPlan } from './verify-range.js';

/**
 * The first pass of verification: recompute the chain from its start and
 * note the hash at every checkpoint's seq, keeping O(1) state. Over a log,
 * large ones are split into blocks that this thread and worker threads take
 * from a shared counter (verify-range.ts); over an export, one loop.
 */

/** Where the chain starts: the genesis hash, a prune anchor, or (an export) a checkpoint or its first row. */
export interface ChainStart {
  readonly seq: number;
  readonly hash: Buffer;
  readonly from: VerifyReport['start']['from'];
}

/** What recomputing the chain found, before checkpoints are judged. */
export interface ChainPass {
  readonly rows: number;
  readonly firstSeq: number | null;
  /** The chain hash computed at each requested seq that was reached. */
  readonly hashesAt: ReadonlyMap<number, Buffer>;
  /** The first row that did not continue the chain: the seq expected there, the hash it had to continue from, its position. */
  readonly failure: { readonly expected: number; readonly prev: Buffer; readonly index: number } | null;
}

/** Below this many rows, worker threads cost more than they save. */
export const PARALLEL_MIN_ROWS = 100_000;
/**
 * Rows per block handed to a thread: small enough that the threads finish
 * close together, large enough that claiming one is noise.
 */
const MAX_BLOCK_ROWS = 10_000;
/** Blocks per thread at least, so that a small log split for testing still has several. */
const MIN_BLOCKS_PER_THREAD = 4;

export async function chainPassDb(db: Database.Database, path: string, start: ChainStart, wanted: readonly number[], threadOption: number | undefined): Promise<ChainPass> {
  const first = db.prepare('SELECT min(seq) FROM decisions').pluck().get() as number | null;
  const tip = db.prepare('SELECT max(seq) FROM decisions').pluck().get() as number | null;
  if (first === null || tip === null) return { rows: 0, firstSeq: null, hashesAt: new Map(), failure: null };
  if (first <= start.seq) {
    // Rows at or before the prune anchor: they cannot belong to the chain that continues from it.
    return { rows: 0, firstSeq: first, hashesAt: new Map(), failure: { expected: start.seq + 1, prev: start.hash, index: 0 } };
  }
  const from = start.seq + 1;
  const to = lastSeqToVerify(db, from);
  const total = to - from + 1;
  // By default one thread per core for a large log; an explicit count is honoured (tests use it on small logs).
  const threads = Math.max(1, Math.min(total, threadOption ?? (total >= PARALLEL_MIN_ROWS ? Math.min(availableParallelism(), 4) : 1)));
  const blockRows = Math.max(1, Math.min(MAX_BLOCK_ROWS, Math.ceil(total / (threads * MIN_BLOCKS_PER_THREAD))));
  const blocks = Math.ceil(total / blockRows);
  const plan: VerifyPlan = { path, from, to, prev: start.hash, blockRows, hashesAt: wanted, fast: sqliteJsonMatchesJs(db), claims: newClaims(blocks) };
  const workers = Array.from({ length: threads - 1 }, () => runWorker(plan));
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

/**
 * The last seq the chain pass reads: the last row's, when the rows from `from`
 * on are seq from, from + 1, … without a gap; otherwise the first seq missing,
 * where the chain breaks. Rows deleted, or one forged with a seq far past the
 * end (42949672960000, 2^63 − 1), then cost no more than the rows before the
 * gap, where counting blocks up to the last seq would run past any block count
 * or safe integer. Checked in SQL, whose integers are 64-bit: a span that
 * overflows does not equal the count.
 */
function lastSeqToVerify(db: Database.Database, from: number): number {
  const contiguous = db.prepare('SELECT min(seq) = ? AND max(seq) - min(seq) + 1 = count(*) FROM decisions').pluck().get(from) === 1;
  if (contiguous) return db.prepare('SELECT max(seq) FROM decisions').pluck().get() as number;
  // The first seq from `from` on that no row holds: `from` itself, or the one after the first row whose successor is missing.
  const firstMissing = db
    .prepare(
      `SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM decisions WHERE seq = @from) THEN @from
         ELSE (SELECT d.seq + 1 FROM decisions d WHERE d.seq >= @from AND NOT EXISTS (SELECT 1 FROM decisions e WHERE e.seq = d.seq + 1) ORDER BY d.seq LIMIT 1) END`,
    )
    .pluck()
    .get({ from }) as number;
  return firstMissing;
}

function runWorker(plan: VerifyPlan): Promise<BlockResult[]> {
  return new Promise((resolve, reject) => {
    const worker = startThread(import.meta.url, './verify-worker', { workerData: plan });
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
export function chainPassRows(rows: readonly StoredRow[], start: ChainStart, wanted: readonly number[]): ChainPass {
  const want = new Set(wanted);
  const hashesAt = new Map<number, Buffer>();
  let expected = start.seq + 1;
  let prev: Buffer = start.hash;
  let index = 0;
  for (const r of rows) {
    if (r.seq !== expected || r.prevHash === null || r.hash === null || !prev.equals(r.prevHash)) break;
    const h = storedRowHash(prev, r);
    if (h === null || !h.equals(r.hash)) break;
    if (want.has(expected)) hashesAt.set(expected, h);
    prev = h;
    expected++;
    index++;
  }
  return {
    rows: index,
    firstSeq: rows[0]?.seq ?? null,
    hashesAt,
    failure: index < rows.length ? { expected, prev, index } : null,
  };
}
