import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInSlices, type StageRun } from '../../src/policy/pipeline.js';

// A client in a thread of its own, so that its requests arrive while the test's
// thread is inside a slice, as a gateway's checks do during a reload.
const CLIENT = `
const http2 = require('node:http2');
const { parentPort, workerData } = require('node:worker_threads');
const session = http2.connect('http://127.0.0.1:' + workerData.port);
session.on('error', () => undefined);
let sent = 0, finished = 0, failed = 0;
const timer = setInterval(() => {
  if (sent === workerData.requests) return clearInterval(timer);
  sent++;
  const stream = session.request({ ':method': 'POST', ':path': '/check', 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => { failed++; });
  stream.on('data', () => undefined);
  stream.on('close', () => {
    if (++finished === workerData.requests) { session.close(); parentPort.postMessage({ failed }); }
  });
  stream.end(Buffer.from([0, 0, 0, 0, 0]));
}, workerData.intervalMs);
`;

describe('a sliced run lets the answers of its pauses leave before the next slice', () => {
  let server: http2.Http2Server;
  let port = 0;
  let slicesStarted = 0;
  const answers: { held: boolean }[] = [];

  beforeAll(async () => {
    server = http2.createServer();
    // Answered as verdict's gRPC lane answers a check: headers, the message, then the status as trailers once the stream asks for them.
    server.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.resume();
      stream.once('end', () => {
        const answer = { held: false };
        const answeredIn = slicesStarted;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        // 'close' follows the END_STREAM of the trailers going out.
        stream.once('close', () => {
          answer.held = slicesStarted > answeredIn;
          answers.push(answer);
        });
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('a check answered between two slices is on the wire before the second starts', async () => {
    const requests = 150;
    const client = new Worker(CLIENT, { eval: true, workerData: { port, requests, intervalMs: 3 } });
    let clientDone = false;
    const result = new Promise<{ failed: number }>((resolve, reject) => {
      client.once('message', (message: { failed: number }) => {
        clientDone = true;
        resolve(message);
      });
      client.once('error', reject);
    });
    // Slices of 4 ms of busy work, paused after each one (budget 1 ms, a rest of 1 ms), like a reload's.
    function* busy(): StageRun {
      for (let i = 0; i < 2_000 && !clientDone; i++) {
        slicesStarted += 1;
        const until = performance.now() + 4;
        while (performance.now() < until);
        yield;
      }
    }
    await runInSlices(busy(), 1, { restMs: 1 });
    const { failed } = await result;
    await client.terminate();
    expect(failed).toBe(0);
    expect(answers).toHaveLength(requests);
    expect(slicesStarted).toBeGreaterThan(20);
    // Answered in a pause and held until after the next slice: only a check that
    // arrives in the instant between the pause's last turns and the slice (2 of 150
    // in each of three runs here). When a pause resumed after one turn, 27–35% were.
    const held = answers.filter((a) => a.held).length;
    expect(held / answers.length).toBeLessThan(0.1);
  });
});
