// The decision log's writer thread (see writer-thread.ts): open the log, then
// serve the main thread's rows until it asks to close.
import { parentPort, workerData } from 'node:worker_threads';
import { serveDecisionLog } from './log-host.js';
import { toWire } from './log-protocol.js';
import { openLog, portChannel, type WriterSettings } from './writer-thread.js';

const port = parentPort;
if (port !== null) {
  try {
    const log = openLog(workerData as WriterSettings);
    serveDecisionLog(log, portChannel(port), { forwardCommits: true, closable: true });
  } catch (error) {
    port.postMessage({ t: 'open-failed', error: toWire(error) });
  }
}
