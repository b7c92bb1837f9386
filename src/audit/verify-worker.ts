// Worker thread entry for chain-pass.ts: verify blocks of a log until none is left and post the results.
import { parentPort, workerData } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import { verifyBlocksInFile, type VerifyPlan } from './verify-range.js';

try {
  parentPort?.postMessage({ ok: true, results: verifyBlocksInFile(workerData as VerifyPlan) });
} catch (error) {
  parentPort?.postMessage({ ok: false, error: messageOf(error) });
}
