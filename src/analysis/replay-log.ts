import { performance } from 'node:perf_hooks';
import { openReadOnly } from '../decisions/schema.js';
import type { CandidateFiles } from './candidate.js';
import { replayRowFromValues, Replayer, mergeTallies, newTally, type ReplayTally } from './replay.js';
import type { PolicySet } from '../policy/policy-set.js';
import { compileSets, newShared, replayBlocks, rowsDone, useMmap, type ReplayPlan } from './replay-range.js';
import { defaultReplayThreads, startReplayThreads, THREADED_FROM_ROWS, type ReplayThread } from './replay-threads.js';
import { COLUMNS, type RowValue } from '../decisions/columns.js';

export interface ReplayOptions {
  readonly candidate: CandidateFiles;
  /** Compare with this set's answers instead of the recorded ones. */
  readonly baseline: CandidateFiles | null;
  /** Epoch ms, `since <= time < until`. */
  readonly since?: number;
  readonly until?: number;
  /** Threads; default one per core, at most 4. A small window is replayed in this thread alone. */
  readonly workers?: number;
  /** Example decision ids per group. */
  readonly examples: number;
  /** Told of rows done out of the total, now and then (after each block of rows). */
  readonly onProgress?: (done: number, total: number) => void;
  /** The sets of `candidate` and `baseline` already compiled in this thread (the caller validated them), so this thread need not compile them again. */
  readonly compiled?: { readonly candidate: PolicySet; readonly baseline: PolicySet | null };
  /** Threads started ahead (replay-threads.ts), loading while this thread compiled: used first, stopped when not needed. */
  readonly threads?: readonly ReplayThread[];
}

export interface ReplayRun {
  readonly tally: ReplayTally;
  readonly seconds: number;
  /** CPU time of the process over the run, every thread's: a figure a busy machine disturbs less than the wall time. */
  readonly cpuSeconds: number;
}

function cpuSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}

const TIME_INDEX = COLUMNS.findIndex((c) => c.key === 'timeMs');

/** Rows per block a thread claims at a time, at most and at least. */
const MAX_BLOCK_ROWS = 8192;
const MIN_BLOCK_ROWS = 16;

/**
 * Replay the decisions of the log at `path` (opened read-only: safe while the
 * server writes) made in the window, in worker threads over blocks of the log
 * when it is large.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE / DECISION_LOG_CORRUPT for a file that cannot be read as a log
 */
export async function replayLog(path: string, options: ReplayOptions): Promise<ReplayRun> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  const since = options.since ?? Number.MIN_SAFE_INTEGER;
  const until = options.until ?? Number.MAX_SAFE_INTEGER;
  const ready = [...(options.threads ?? [])];
  let db;
  try {
    db = openReadOnly(path);
  } catch (error) {
    for (const t of ready) t.stop();
    throw error;
  }
  const helpers: ReplayThread[] = [];
  try {
    // One read transaction: the window counted is the window replayed, and no query pays for taking the read lock again.
    useMmap(db);
    db.exec('BEGIN');
    const span = db.prepare<[number, number], [number | null, number | null, number]>('SELECT min(seq), max(seq), count(*) FROM decisions WHERE time_ms >= ? AND time_ms < ?').raw(true).get(since, until);
    const [from, to, total] = span ?? [null, null, 0];
    if (from === null || to === null) {
      for (const t of ready) t.stop();
      return { tally: newTally(), seconds: (performance.now() - started) / 1000, cpuSeconds: cpuSince(cpu) };
    }
    // Threads only pay off on a large window, unless asked for.
    const threads = options.workers ?? (total < THREADED_FROM_ROWS ? 1 : defaultReplayThreads());
    // Blocks small enough that each thread takes several, so none waits long for the last.
    const blockRows = Math.min(MAX_BLOCK_ROWS, Math.max(MIN_BLOCK_ROWS, Math.ceil((to - from + 1) / (threads * 16))));
    const blocks = Math.ceil((to - from + 1) / blockRows);
    const plan: ReplayPlan = { path, candidate: options.candidate, baseline: options.baseline, from, to, since, until, blockRows, examples: options.examples, shared: newShared(blocks) };
    const wanted = Math.min(threads, blocks) - 1;
    helpers.push(...ready.splice(0, wanted));
    for (const t of ready) t.stop();
    helpers.push(...startReplayThreads(wanted - helpers.length));
    // The other threads start on their plan at once; this one replays blocks beside them.
    const results = helpers.map((t) => t.run(plan));
    // A thread stopped because this one failed is not a second error to report.
    for (const r of results) r.catch(() => undefined);
    const sets = options.compiled ?? compileSets(plan);
    const report = (): void => options.onProgress?.(rowsDone(plan.shared), total);
    const mine = replayBlocks(db, plan, sets, report);
    db.exec('COMMIT');
    db.close();
    const tally = newTally();
    mergeTallies(tally, mine, options.examples);
    const progress = options.onProgress === undefined || helpers.length === 0 ? null : setInterval(report, 200);
    try {
      for (const t of await Promise.all(results)) mergeTallies(tally, t, options.examples);
    } finally {
      if (progress !== null) clearInterval(progress);
    }
    report();
    return { tally, seconds: (performance.now() - started) / 1000, cpuSeconds: cpuSince(cpu) };
  } catch (error) {
    for (const t of [...helpers, ...ready]) t.stop();
    if (db.open) db.close();
    throw error;
  }
}

/**
 * Replay stored rows held in memory (an export read back), in this thread:
 * `rows` give each row's seq, time and values in column-table order.
 */
export function replayStoredRows(
  rows: Iterable<{ readonly seq: number; readonly values: readonly RowValue[] }>,
  options: Omit<ReplayOptions, 'workers'>,
): ReplayRun {
  const started = performance.now();
  const cpu = process.cpuUsage();
  const since = options.since ?? Number.MIN_SAFE_INTEGER;
  const until = options.until ?? Number.MAX_SAFE_INTEGER;
  const sets = options.compiled ?? compileSets(options);
  const replayer = new Replayer(sets.candidate, sets.baseline, { examples: options.examples });
  for (const row of rows) {
    const time = row.values[TIME_INDEX] as number;
    if (time < since || time >= until) continue;
    replayer.add(replayRowFromValues(row.seq, row.values));
  }
  return { tally: replayer.tally, seconds: (performance.now() - started) / 1000, cpuSeconds: cpuSince(cpu) };
}
