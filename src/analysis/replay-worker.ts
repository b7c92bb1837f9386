// Worker thread entry for replay-threads.ts: load the replay code at once, compile the sets when told them, then replay blocks of the plan until none is left and post the tally.
import { parentPort } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import type { PolicySet } from '../policy/policy-set.js';
import { compileSets, replayBlocksInFile } from './replay-range.js';
import type { ReplayThreadMessage } from './replay-threads.js';

let sets: { candidate: PolicySet; baseline: PolicySet | null } | Error | null = null;

function answer(message: ReplayThreadMessage): void {
  if (message.kind === 'sets') {
    try {
      sets = compileSets(message);
    } catch (error) {
      sets = error instanceof Error ? error : new Error(messageOf(error));
    }
    return;
  }
  parentPort?.off('message', answer);
  try {
    if (sets instanceof Error) throw sets;
    parentPort?.postMessage({ ok: true, tally: replayBlocksInFile(message.plan, sets ?? undefined) });
  } catch (error) {
    parentPort?.postMessage({ ok: false, error: messageOf(error), code: (error as { code?: unknown }).code });
  }
}

parentPort?.on('message', answer);
