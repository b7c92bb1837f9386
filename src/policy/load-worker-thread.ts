import { parentPort } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import { encodeCheckedFile } from './checked-codec.js';
import type { LoadRequest, LoadResponse } from './load-worker.js';
import { decodeText } from './stages/read.js';
import { checkFile } from './stages/schema.js';
import { gitCommitIfCleanAsync } from './version.js';
import { runInBackground } from '../thread-priority.js';

// The load thread (see load-worker.ts): parses and checks policy files and asks git, away from the event loop that answers checks.
const port = parentPort;
if (port === null) throw new Error('load-worker-thread.js runs as a worker thread');

// Background work: the thread answering checks gets the CPU first (thread-priority.ts).
runInBackground();

port.on('message', (request: LoadRequest) => {
  if (request.kind === 'git') {
    gitCommitIfCleanAsync(request.dir).then(
      (commit) => port.postMessage({ id: request.id, commit } satisfies LoadResponse),
      (error: unknown) => port.postMessage({ id: request.id, error: messageOf(error) } satisfies LoadResponse),
    );
    return;
  }
  let response: LoadResponse;
  let transfer: ArrayBuffer[] = [];
  try {
    const encoded = encodeCheckedFile(checkFile(request.file, decodeText(request.bytes)));
    response = { id: request.id, encoded: encoded.encoded };
    transfer = encoded.transfer;
  } catch (error) {
    response = { id: request.id, error: messageOf(error) };
  }
  port.postMessage(response, transfer);
});
