import Database from 'better-sqlite3';
import { decisionColumns } from '../decisions/schema.js';
import { VerdictError } from '../errors.js';
import type { PolicySet } from '../policy/policy-set.js';
import { loadCandidate, type CandidateFiles } from './candidate.js';
import { LOOKED_UP_KEYS, REPLAY_COLUMNS, REPLAY_KEYS, Replayer, type ReplayRow, type ReplayTally, type RowLookup } from './replay.js';

/**
 * The hot loop of `verdict replay` over a log: blocks of seq numbers, taken
 * from a shared counter by any number of threads (each with its own read-only
 * connection and its own compiled copy of the policy sets), so every thread
 * stays busy to the end. Rows done are added to a shared counter for progress.
 */
export interface ReplayPlan {
  readonly path: string;
  readonly candidate: CandidateFiles;
  readonly baseline: CandidateFiles | null;
  /** First and last seq, inclusive. */
  readonly from: number;
  readonly to: number;
  /** The time window, epoch ms: `since <= time_ms < until`. */
  readonly since: number;
  readonly until: number;
  readonly blockRows: number;
  readonly examples: number;
  /** Int32 [next block, block count, rows done]: shared by every thread of the replay. */
  readonly shared: SharedArrayBuffer;
}

const NEXT = 0;
const LIMIT = 1;
const DONE = 2;

export function newShared(blocks: number): SharedArrayBuffer {
  const shared = new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT);
  const view = new Int32Array(shared);
  view[NEXT] = 0;
  view[LIMIT] = blocks;
  view[DONE] = 0;
  return shared;
}

/** Rows replayed so far by every thread. */
export function rowsDone(shared: SharedArrayBuffer): number {
  return Atomics.load(new Int32Array(shared), DONE);
}

/** Rows fetched per query: the call's own cost vanishes, memory stays flat. */
const CHUNK_ROWS = 2048;

/** The compiled sets of a plan. @throws VerdictError POLICY_INVALID if they do not compile (the caller checked them first) */
export function compileSets(plan: Pick<ReplayPlan, 'candidate' | 'baseline'>): { candidate: PolicySet; baseline: PolicySet | null } {
  const compile = (files: CandidateFiles): PolicySet => {
    const result = loadCandidate(files);
    if (!result.ok) throw new VerdictError('POLICY_INVALID', `${files.label} does not compile: ${result.diagnostics[0]?.message ?? ''}`);
    return result.policies.policySet;
  };
  return { candidate: compile(plan.candidate), baseline: plan.baseline === null ? null : compile(plan.baseline) };
}

/** Replay blocks of `plan` on `db` until none is left to claim. */
export function replayBlocks(db: Database.Database, plan: ReplayPlan, sets: { candidate: PolicySet; baseline: PolicySet | null }, onBlock?: () => void): ReplayTally {
  const shared = new Int32Array(plan.shared);
  const present = decisionColumns(db);
  // The decision id and rule ids are looked up for the few rows a report names: reading them for every row costs a tenth of the time.
  const list = REPLAY_COLUMNS.map((c) => (present.has(c.sql) && !(LOOKED_UP_KEYS as ReadonlySet<string>).has(c.key) ? c.sql : `NULL AS ${c.sql}`)).join(', ');
  const one = db.prepare<[number], [string, string]>('SELECT decision_id, rule_ids FROM decisions WHERE seq = ?').raw(true);
  const lookup: RowLookup = (seq) => {
    const found = one.get(seq);
    return found === undefined ? undefined : { decisionId: found[0], ruleIds: found[1] };
  };
  const statement = db.prepare<[number, number, number, number], unknown[]>(
    `SELECT seq, ${list} FROM decisions WHERE seq BETWEEN ? AND ? AND time_ms >= ? AND time_ms < ? ORDER BY seq`,
  ).raw(true);
  const replayer = new Replayer(sets.candidate, sets.baseline, { examples: plan.examples, lookup });
  const row = emptyRow();
  // One read transaction for the whole loop (unless the caller holds one): each query would otherwise take the read lock again.
  const own = !db.inTransaction;
  if (own) db.exec('BEGIN');
  for (;;) {
    const block = Atomics.add(shared, NEXT, 1);
    if (block >= Atomics.load(shared, LIMIT)) break;
    const first = plan.from + block * plan.blockRows;
    const last = Math.min(plan.to, first + plan.blockRows - 1);
    for (let low = first; low <= last; low += CHUNK_ROWS) {
      const high = Math.min(last, low + CHUNK_ROWS - 1);
      const raws = statement.all(low, high, plan.since, plan.until);
      for (let i = 0; i < raws.length; i++) replayer.add(fillRow(row, raws[i] as unknown[]));
      Atomics.add(shared, DONE, raws.length);
    }
    onBlock?.();
  }
  if (own) db.exec('COMMIT');
  return replayer.tally;
}

const ROW_OF_KEYS = 'decisionId,principalId,action,resourceType,resourceId,effect,reason,ruleIds,errors,request,details';
if (REPLAY_KEYS.join(',') !== ROW_OF_KEYS) throw new Error(`fillRow reads the replay columns in the order ${ROW_OF_KEYS}; update it`);

/** A row as the SELECT of replayBlocks returns it (seq, then REPLAY_KEYS in order), into `row`: one object for every row of a loop, which the Replayer does not keep. */
function fillRow(row: Record<keyof ReplayRow, unknown>, raw: unknown[]): ReplayRow {
  row.seq = raw[0];
  row.decisionId = raw[1];
  row.principalId = raw[2];
  row.action = raw[3];
  row.resourceType = raw[4];
  row.resourceId = raw[5];
  row.effect = raw[6];
  row.reason = raw[7];
  row.ruleIds = raw[8];
  row.errors = raw[9];
  row.request = raw[10];
  row.details = raw[11];
  return row as ReplayRow;
}

function emptyRow(): Record<keyof ReplayRow, unknown> {
  return { seq: 0, decisionId: null, principalId: '', action: '', resourceType: '', resourceId: '', effect: '', reason: '', ruleIds: null, errors: '', request: '', details: null };
}

/** Read the log through mmap where SQLite can: a read costs no copy. */
export function useMmap(db: Database.Database): void {
  try {
    db.pragma('mmap_size = 1073741824');
  } catch {
    // Without mmap, ordinary reads.
  }
}

/** Open the plan's log read-only and replay blocks of it (what a worker thread runs), with the plan's sets compiled already or now. */
export function replayBlocksInFile(plan: ReplayPlan, compiled?: { candidate: PolicySet; baseline: PolicySet | null }): ReplayTally {
  const sets = compiled ?? compileSets(plan);
  const db = new Database(plan.path, { readonly: true, fileMustExist: true });
  try {
    useMmap(db);
    return replayBlocks(db, plan, sets);
  } finally {
    db.close();
  }
}
