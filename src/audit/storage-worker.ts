// Worker thread entry for storage-check.ts: SQLite's integrity check of one log, on a connection of its own.
import { parentPort, workerData } from 'node:worker_threads';
import { openReadOnly } from '../decisions/schema.js';
import { messageOf } from '../errors.js';
import { storageProblem } from './storage-check.js';
import { useMmap } from './verify-range.js';

try {
  const db = openReadOnly((workerData as { path: string }).path, 'unchecked');
  try {
    useMmap(db);
    parentPort?.postMessage({ ok: true, problem: storageProblem(db) });
  } finally {
    db.close();
  }
} catch (error) {
  parentPort?.postMessage({ ok: false, error: messageOf(error) });
}
