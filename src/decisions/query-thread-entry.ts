// The query thread (see query-thread.ts): reads the decision log read-only, away
// from the event loop that answers checks.
import { parentPort, workerData } from 'node:worker_threads';
import { VerdictError, messageOf } from '../errors.js';
import { DecisionReader } from './query.js';
import type { QueryRequest, QueryResponse } from './query-thread.js';
import { runInBackground } from '../thread-priority.js';

const port = parentPort;
if (port === null) throw new Error('query-thread-entry.js runs as a worker thread');

// Background work: the thread answering checks gets the CPU first (thread-priority.ts).
runInBackground();

const { path } = workerData as { path: string };
let reader: DecisionReader | null = null;

port.on('message', (request: QueryRequest) => {
  let response: QueryResponse;
  try {
    // Opened on first use and kept: a log that did not exist yet may exist at the next query.
    reader ??= DecisionReader.open(path);
    if (request.kind === 'get') response = { id: request.id, decision: reader.get(request.decisionId) };
    else if (request.kind === 'page') response = { id: request.id, page: reader.page(request.filters, request.options) };
    else if (request.kind === 'counts') response = { id: request.id, counts: reader.counts(request.filters, request.bucketMs, request.exclude) };
    else response = { id: request.id, tail: reader.tail(request.afterSeq, request.limit, request.exclude) };
  } catch (error) {
    if (!(error instanceof VerdictError && error.code === 'USAGE')) {
      // The file or its write-ahead log may have been replaced under the reader: the next query opens it again.
      try {
        reader?.close();
      } catch {
        // closing a broken connection may fail too
      }
      reader = null;
    }
    response = { id: request.id, error: messageOf(error), code: error instanceof VerdictError ? error.code : 'INTERNAL' };
  }
  port.postMessage(response);
});
