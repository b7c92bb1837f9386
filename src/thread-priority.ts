import { readdirSync, readlinkSync } from 'node:fs';
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
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, BACKGROUND_NICE);
  } catch {
    // not Linux: the thread keeps the process's priority
  }
}

/**
 * Lowers the priority of every thread the process has now except the calling one,
 * and returns how many it lowered. Called first thing by `verdict serve`, when those
 * are node's own helpers: V8's platform workers, which compile optimized code and
 * help the garbage collector, and libuv's thread pool if it started. A policy
 * reload runs code that V8 then optimizes on those helpers, and on two cores the
 * deciding thread waited for a core behind them, a check with it (`bench/reload.mjs`,
 * README "Policy reloads"). Threads started later by the calling thread (the
 * decision log's writer) keep its priority; background ones lower their own.
 */
export function lowerHelperThreads(): number {
  let self: string;
  let tasks: string[];
  try {
    self = readlinkSync('/proc/thread-self').split('/').pop() ?? '';
    tasks = readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  let lowered = 0;
  for (const task of tasks) {
    const tid = Number(task);
    if (task === self || !Number.isInteger(tid) || tid <= 0) continue;
    try {
      setPriority(tid, BACKGROUND_NICE);
      lowered += 1;
    } catch {
      // the thread ended meanwhile
    }
  }
  return lowered;
}
