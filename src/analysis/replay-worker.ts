// Worker thread entry for replay-log.ts: replay blocks of a log until none is left and post the tally.
import { parentPort, workerData } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import { replayBlocksInFile, type ReplayPlan } from './replay-range.js';

try {
  parentPort?.postMessage({ ok: true, tally: replayBlocksInFile(workerData as ReplayPlan) });
} catch (error) {
  parentPort?.postMessage({ ok: false, error: messageOf(error), code: (error as { code?: unknown }).code });
}
