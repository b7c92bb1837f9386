// Worker thread entry for replay-threads.ts: load the replay code at once, then wait for a plan, replay blocks of it until none is left and post the tally.
import { parentPort } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import { replayBlocksInFile, type ReplayPlan } from './replay-range.js';

parentPort?.once('message', (plan: ReplayPlan) => {
  try {
    parentPort?.postMessage({ ok: true, tally: replayBlocksInFile(plan) });
  } catch (error) {
    parentPort?.postMessage({ ok: false, error: messageOf(error), code: (error as { code?: unknown }).code });
  }
});
