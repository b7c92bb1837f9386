import { readdirSync, readlinkSync } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { setPriority } from 'node:os';

/**
 * Thread priorities. On a machine with few cores, the thread that answers checks
 * shares them with every other thread of the process; whatever can wait should
 * let it run first. Linux gives each thread its own nice value (a thread's id is
 * the last part of /proc/thread-self, and /proc/self/task lists them all);
 * elsewhere, or without permission, threads keep the process's priority.
 */

/** The nice value of background threads: they still run whenever a core is free. */
export const BACKGROUND_NICE = 10;

/** Lowers the calling thread's priority (a worker thread doing background work calls it first). */
export function runInBackground(): void {
  try {
    const tid = threadIdOf(readlinkSync('/proc/thread-self'));
    if (tid !== null) setPriority(tid, BACKGROUND_NICE);
  } catch {
    // not Linux: the thread keeps the process's priority
  }
}

/**
 * Lowers the priority of node's own helper threads, V8's platform workers (they
 * compile optimized code and help the garbage collector), and returns how many it
 * lowered. A policy reload runs code that V8 then optimizes on those workers, and on
 * two cores the deciding thread waited for a core behind them (README, "Policy
 * reloads"). Called first thing by `verdict serve`, when the process's threads are
 * node's: those it starts before running any JavaScript, then libuv's thread pool,
 * which the module loader starts reading the first module. The pool is left as it
 * is: checks wait on it (WebCrypto runs a JWT's signature check there). It is the
 * last `UV_THREADPOOL_SIZE` threads started, and a job run on it says which thread
 * ran it; when that thread is not among them, the threads are not laid out as
 * expected and nothing is lowered. Threads started later (the decision log's
 * writer) take their starter's priority.
 */
export async function lowerHelperThreads(): Promise<number> {
  let others: number[];
  let poolThread: number | null;
  try {
    const self = threadIdOf(readlinkSync('/proc/thread-self'));
    others = readdirSync('/proc/self/task')
      .map(Number)
      .filter((tid) => Number.isInteger(tid) && tid > 0 && tid !== self)
      .sort((a, b) => a - b);
    // Run on the pool: /proc/thread-self names the thread that resolves it.
    poolThread = threadIdOf(await readlink('/proc/thread-self'));
  } catch {
    return 0;
  }
  const pool = new Set(others.slice(-threadPoolSize()));
  if (poolThread === null || !pool.has(poolThread)) return 0;
  let lowered = 0;
  for (const tid of others) {
    if (pool.has(tid)) continue;
    try {
      setPriority(tid, BACKGROUND_NICE);
      lowered += 1;
    } catch {
      // the thread ended meanwhile
    }
  }
  return lowered;
}

/**
 * The threads of libuv's pool, read from UV_THREADPOOL_SIZE as libuv reads it: 4 when
 * unset; else C's atoi of it, where 0 (or no number) means 1 and the count, unsigned,
 * is at most 1024 (so a negative one is 1024).
 */
export function threadPoolSize(environment: NodeJS.ProcessEnv = process.env): number {
  const value = environment.UV_THREADPOOL_SIZE;
  if (value === undefined) return 4;
  const asked = Number.parseInt(value, 10);
  if (Number.isNaN(asked) || asked === 0) return 1;
  return asked < 0 ? 1024 : Math.min(asked, 1024);
}

/** The thread id at the end of a /proc/thread-self link (`PID/task/TID`). */
function threadIdOf(link: string): number | null {
  const tid = Number(link.split('/').pop());
  return Number.isInteger(tid) && tid > 0 ? tid : null;
}
