import type Database from 'better-sqlite3';
import type { Worker } from 'node:worker_threads';
import { VerdictError, messageOf } from '../errors.js';
import { startThread } from '../threads.js';

/**
 * SQLite's integrity check of a log's file, for `verdict audit verify`: an index
 * that disagrees with its table (left stale by editing sqlite_schema) makes a
 * query by principal, action or time show other rows than the chain holds, while
 * every row still verifies. About 2 s a million rows here, so a large log runs it
 * in a thread of its own beside the chain pass.
 */

/** The most problems SQLite's integrity check lists in a report. */
const MAX_STORAGE_PROBLEMS = 3;

/** What the integrity check found wrong, as one sentence; null when it passed. */
export function storageProblem(db: Database.Database): string | null {
  const found = db.pragma(`integrity_check(${MAX_STORAGE_PROBLEMS})`) as { integrity_check: string }[];
  const problems = found.map((row) => row.integrity_check);
  if (problems.length === 1 && problems[0] === 'ok') return null;
  return `SQLite's integrity check fails (${problems.join('; ')}): queries that read through an index may show other rows than the chain holds; restore the log from a backup or an export`;
}

/** The integrity check running in a thread: its finding, or `cancel` when it is no longer wanted. */
export interface StorageCheck {
  readonly result: Promise<string | null>;
  cancel(): Promise<void>;
}

/** Start the integrity check of the log at `path` in a worker thread of its own (storage-worker.ts). */
export function startStorageCheck(path: string): StorageCheck {
  const worker: Worker = startThread(import.meta.url, './storage-worker', { workerData: { path } });
  let settled = false;
  const result = new Promise<string | null>((resolve, reject) => {
    worker.once('message', (message: { ok: true; problem: string | null } | { ok: false; error: string }) => {
      settled = true;
      if (message.ok) resolve(message.problem);
      else reject(new VerdictError('DECISION_LOG_CORRUPT', `cannot check the storage of the decision log ${path}: ${message.error}`));
    });
    worker.once('error', (error) => {
      settled = true;
      reject(new VerdictError('INTERNAL', `the storage check thread failed: ${messageOf(error)}`, { cause: error }));
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new VerdictError('INTERNAL', `the storage check thread exited with code ${code}`));
    });
  });
  // A check cancelled before it answered must not surface as an unhandled rejection.
  result.catch(() => undefined);
  return {
    result,
    cancel: async () => {
      settled = true;
      await worker.terminate();
    },
  };
}
