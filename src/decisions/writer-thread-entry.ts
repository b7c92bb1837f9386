// The decision log's writer thread (see writer-thread.ts): open the writer,
// then serve the deciding thread's rows until it asks to close.
import { parentPort, workerData } from 'node:worker_threads';
import { serveWriter } from './log-host.js';
import { portChannel, toWire } from './log-protocol.js';
import { openWriter, type WriterSettings } from './writer-thread.js';

const port = parentPort;
if (port !== null) {
  try {
    serveWriter(openWriter(workerData as WriterSettings), portChannel(port), { forwardCommits: true, closable: true });
  } catch (error) {
    port.postMessage({ t: 'open-failed', error: toWire(error) });
  }
}
