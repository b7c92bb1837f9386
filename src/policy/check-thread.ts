import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import { encodeCheckedFile } from './checked-codec.js';
import type { CheckRequest, CheckResponse } from './file-checker.js';
import { decodeText } from './stages/read.js';
import { checkFile } from './stages/schema.js';

// The schema stage's thread: parses and checks policy files away from the event loop that answers checks.
const port = parentPort;
if (port === null) throw new Error('check-thread.js runs as a worker thread');

// Background work: on a busy machine the thread answering checks should get the CPU first. Linux
// gives each thread its own nice value (the thread id is the last part of /proc/thread-self);
// elsewhere, or without permission, the thread keeps the process's priority.
try {
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  if (Number.isInteger(tid) && tid > 0) setPriority(tid, 10);
} catch {
  // not Linux: nothing to do
}

port.on('message', ({ id, file, bytes }: CheckRequest) => {
  let response: CheckResponse;
  let transfer: ArrayBuffer[] = [];
  try {
    const encoded = encodeCheckedFile(checkFile(file, decodeText(bytes)));
    response = { id, encoded: encoded.encoded };
    transfer = encoded.transfer;
  } catch (error) {
    response = { id, error: messageOf(error) };
  }
  port.postMessage(response, transfer);
});
