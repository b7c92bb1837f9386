import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { openReadOnly } from '../decisions/schema.js';
import { VerdictError, type ErrorCode } from '../errors.js';
import { startThread } from '../threads.js';
import type { CandidateFiles } from './candidate.js';
import type { ReplayPlan } from './replay-range.js';
import type { ReplayTally } from './replay.js';

/**
 * The worker threads of a replay, started before they have work: a thread
 * spends most of its start-up loading the policy compiler, which it does while
 * the calling thread loads and compiles the candidate itself; given the
 * policy files early (prepare), it compiles them at the same time too. Each
 * thread waits for one plan (replay-range.ts), replays blocks of it and
 * answers with its tally. This module loads nothing heavy, so a command can start the
 * threads first thing.
 */
export interface ReplayThread {
  /** Compile the sets the plan will name, before it comes (the same files as the plan's candidate and baseline). */
  prepare(candidate: CandidateFiles, baseline: CandidateFiles | null): void;
  /** Give the thread its plan; resolves with its tally. Call once. */
  run(plan: ReplayPlan): Promise<ReplayTally>;
  /** Stop the thread (a thread never given a plan, or after a failure). */
  stop(): void;
}

/** Threads a replay uses by default: one per core, at most 4. */
export function defaultReplayThreads(): number {
  return Math.min(4, availableParallelism());
}

/** Below this many rows, starting threads costs more than it saves. */
export const THREADED_FROM_ROWS = 50_000;

/** Start `count` replay threads, waiting for their plans. A thread not yet given a plan never keeps the process alive. */
export function startReplayThreads(count: number): ReplayThread[] {
  return Array.from({ length: count }, () => startReplayThread());
}

/**
 * The threads a replay of the log at `path` will want besides the calling
 * one, started now: `workers - 1` when given, else by the size of the log
 * (the span of its sequence numbers, read at once). None for a small log, or
 * a file that is not a readable log (the replay reports that itself).
 */
export function startReplayThreadsFor(path: string, workers: number | undefined): ReplayThread[] {
  if (workers !== undefined) return startReplayThreads(workers - 1);
  let span: number;
  try {
    const db = openReadOnly(path);
    try {
      const [from, to] = db.prepare<[], [number | null, number | null]>('SELECT min(seq), max(seq) FROM decisions').raw(true).get() ?? [null, null];
      span = from === null || to === null ? 0 : to - from + 1;
    } finally {
      db.close();
    }
  } catch {
    return [];
  }
  return span < THREADED_FROM_ROWS ? [] : startReplayThreads(defaultReplayThreads() - 1);
}

type Answer = { ok: true; tally: ReplayTally } | { ok: false; error: string; code?: ErrorCode };

/** What a replay thread is told (replay-worker.ts): the sets to compile, then its plan. */
export type ReplayThreadMessage = { readonly kind: 'sets'; readonly candidate: CandidateFiles; readonly baseline: CandidateFiles | null } | { readonly kind: 'plan'; readonly plan: ReplayPlan };

function startReplayThread(): ReplayThread {
  const worker: Worker = startThread(import.meta.url, './replay-worker');
  // Until it has a plan, the thread must not hold the process open.
  worker.unref();
  let settle: { resolve: (tally: ReplayTally) => void; reject: (error: Error) => void } | null = null;
  let failure: Error | null = null;
  const fail = (error: Error): void => {
    if (settle !== null) settle.reject(error);
    else failure ??= error;
    settle = null;
  };
  worker.once('message', (answer: Answer) => {
    if (answer.ok) settle?.resolve(answer.tally);
    else fail(new VerdictError(answer.code ?? 'INTERNAL', answer.error));
    settle = null;
  });
  worker.once('error', (error) => fail(new VerdictError('INTERNAL', `a replay thread failed: ${error.message}`, { cause: error })));
  worker.once('exit', (code) => fail(new VerdictError('INTERNAL', `a replay thread exited (${code}) without a result`)));
  const post = (message: ReplayThreadMessage): void => worker.postMessage(message);
  return {
    prepare(candidate, baseline) {
      post({ kind: 'sets', candidate, baseline });
    },
    run(plan) {
      return new Promise<ReplayTally>((resolve, reject) => {
        if (failure !== null) {
          reject(failure);
          return;
        }
        settle = { resolve, reject };
        worker.ref();
        post({ kind: 'plan', plan });
      });
    },
    stop() {
      settle = null;
      void worker.terminate();
    },
  };
}
