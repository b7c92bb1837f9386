// Worker thread entry for verify.ts: verify one range of a log and post the result.
import { parentPort, workerData } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import { verifyRangeFile, type RangeJob } from './verify-range.js';

try {
  parentPort?.postMessage({ ok: true, result: verifyRangeFile(workerData as RangeJob) });
} catch (error) {
  parentPort?.postMessage({ ok: false, error: messageOf(error) });
}
