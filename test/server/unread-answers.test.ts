import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, checkRequest, metricValue, shippedAllowedCheck, startVerdict, verdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

// Callers that never read their answers: an HTTP/2 client may keep its receive window
// shut, and every answer written to it then stays in the server's memory for as long
// as the connection lasts (a hundred CheckBatch calls on one connection held most of a
// gigabyte). Real servers, a raw HTTP/2 client with a window of 0, small limits so the
// test stays small.

const protoRoot = new protobuf.Root();
protoRoot.resolvePath = (_origin, target) => join(ROOT, 'proto', target);
protoRoot.loadSync('verdict/v1/authorization.proto', { keepCase: false });
const CheckBatchRequest = protoRoot.lookupType('verdict.v1.CheckBatchRequest');

const ITEMS = 1000;
/** Echoed in each of the batch's results: about 2 MB of answer from a 30 kB request. */
const REQUEST_ID = 'r'.repeat(2000);
const ANSWER_AT_LEAST = ITEMS * REQUEST_ID.length;

const batchFrame = (() => {
  const message = CheckBatchRequest.encode(
    CheckBatchRequest.fromObject({
      principal: { id: 'dana', roles: ['data_scientist'] },
      requestId: REQUEST_ID,
      items: Array.from({ length: ITEMS }, (_, i) => ({ action: 'read', resource: { type: 'model', id: `m${i}` } })),
    }),
  ).finish();
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return frame;
})();

/** A connection that reads nothing: every stream's window is 0, so no answer byte can be sent to it. */
function deafConnection(port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 0 } });
  session.on('error', () => undefined);
  return session;
}

interface Sent {
  /** Resolves once the answer's headers arrived: the batch was decided and its answer written. */
  readonly answered: Promise<void>;
  /** The gRPC status of an answer that came as headers only (a refusal), read from its headers. */
  readonly status: Promise<{ code: string; message: string }>;
  /** Resolves with the stream's reset code when it closes (0 when it was not reset). */
  readonly closed: Promise<number>;
}

function sendBatch(session: http2.ClientHttp2Session): Sent {
  const stream = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/CheckBatch', 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => undefined);
  stream.end(batchFrame);
  return {
    answered: new Promise((resolve) => stream.once('response', () => resolve())),
    status: new Promise((resolve) =>
      stream.once('response', (headers) => resolve({ code: String(headers['grpc-status']), message: decodeURIComponent(String(headers['grpc-message'] ?? '')) })),
    ),
    closed: new Promise((resolve) => stream.once('close', () => resolve(stream.rstCode ?? 0))),
  };
}

const sessionClosed = (session: http2.ClientHttp2Session): Promise<void> =>
  new Promise((resolve) => (session.closed || session.destroyed ? resolve() : session.once('close', () => resolve())));

/** Polls `/metrics` until `line` reads at least `atLeast`. */
async function metricReaches(httpPort: number, line: string, atLeast: number, timeoutMs = 10_000): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await metricValue(httpPort, line);
    if (value >= atLeast || Date.now() > until) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Every decision answered so far, whatever its effect and reason. */
async function decisionsAnswered(httpPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  let total = 0;
  for (const match of text.matchAll(/^verdict_decisions_total\{[^}]*\} (\d+)$/gm)) total += Number(match[1]);
  return total;
}

const SEND_TIMEOUT_MS = 1500;

describe('a connection that takes none of its answers', () => {
  let verdict: VerdictProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-unread-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `grpcStreams:\n  sendTimeoutMs: ${SEND_TIMEOUT_MS}\n`);
    verdict = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch', '--decision-log', 'async'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is closed after sendTimeoutMs, and others are answered meanwhile', async () => {
    const deaf = deafConnection(verdict.grpcPort);
    try {
      const batch = sendBatch(deaf);
      await batch.answered;
      const held = Date.now();
      expect(await metricReaches(verdict.httpPort, 'verdict_grpc_answer_bytes_unsent', ANSWER_AT_LEAST)).toBeGreaterThanOrEqual(ANSWER_AT_LEAST);
      expect(await shippedAllowedCheck(verdict.grpcPort)).toBe('EFFECT_ALLOW');
      await sessionClosed(deaf);
      // Closed by the sweep once the timeout had passed: not before, and not much after.
      expect(Date.now() - held).toBeGreaterThanOrEqual(SEND_TIMEOUT_MS - 600);
      const line = await verdict.waitForLog((l) => l.msg.startsWith('closed a gRPC connection that took none of its answers in 1500 ms'));
      expect(line).toMatchObject({ reason: 'send_timeout' });
      expect(line['unsentBytes']).toBeGreaterThanOrEqual(ANSWER_AT_LEAST);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_connections_closed_unread_total{reason="send_timeout"}')).toBe(1);
      expect(await metricReaches(verdict.httpPort, 'verdict_grpc_answer_bytes_unsent', 0)).toBe(0);
    } finally {
      deaf.destroy();
    }
  }, 20_000);

  it('PINGs sent meanwhile are no progress: the connection is closed all the same', async () => {
    // Their acknowledgements are bytes the server writes, while not one byte of the answer is taken.
    const deaf = deafConnection(verdict.grpcPort);
    const pinger = setInterval(() => {
      if (!deaf.closed && !deaf.destroyed) deaf.ping(() => undefined);
    }, 2);
    try {
      await sendBatch(deaf).answered;
      const held = Date.now();
      await sessionClosed(deaf);
      expect(Date.now() - held).toBeLessThan(4 * SEND_TIMEOUT_MS);
    } finally {
      clearInterval(pinger);
      deaf.destroy();
    }
  }, 20_000);

  it('a caller that takes its answer slowly, a little at a time, is not closed however long it takes', async () => {
    // 16 kB of window: the answer (about 2 MB) can only leave as fast as the caller reads.
    const slow = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`, { settings: { initialWindowSize: 16 * 1024 } });
    slow.on('error', () => undefined);
    try {
      const stream = slow.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/CheckBatch', 'content-type': 'application/grpc', te: 'trailers' });
      stream.on('error', () => undefined);
      stream.pause();
      stream.end(batchFrame);
      await new Promise((resolve) => stream.once('response', resolve));
      let taken = 0;
      // Four times sendTimeoutMs, reading a little every 100 ms.
      const until = Date.now() + 4 * SEND_TIMEOUT_MS;
      while (Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        for (let chunk = stream.read() as Buffer | null; chunk !== null; chunk = stream.read() as Buffer | null) taken += chunk.length;
        expect(slow.closed || slow.destroyed).toBe(false);
      }
      expect(taken).toBeGreaterThan(0);
      expect(taken).toBeLessThan(ANSWER_AT_LEAST);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_connections_closed_unread_total{reason="send_timeout"}')).toBe(2);
    } finally {
      slow.destroy();
    }
  }, 20_000);

  it('a caller reading its answers, twenty large batches at once, is never cut off', async () => {
    const client = verdictClient(verdict.grpcPort, { ownConnection: true });
    try {
      const request = {
        principal: checkRequest({ principal: { id: 'dana', roles: ['data_scientist'] }, action: 'read', resource: { type: 'model' } })['principal'],
        requestId: REQUEST_ID,
        items: Array.from({ length: ITEMS }, (_, i) => ({ action: 'read', resource: { type: 'model', id: `m${i}` } })),
      };
      const answers = await Promise.all(Array.from({ length: 20 }, () => client.call<{ results: unknown[] }>('Authorization', 'CheckBatch', request, { deadline: Date.now() + 30_000 })));
      expect(answers.map((a) => a.results.length)).toEqual(Array.from({ length: 20 }, () => ITEMS));
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_connections_closed_unread_total{reason="over_budget"}')).toBe(0);
    } finally {
      client.close();
    }
  }, 60_000);
});

describe('answers nobody reads, past the budgets', () => {
  let verdict: VerdictProcess;
  let dir: string;
  const MiB = 1024 * 1024;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-unread-'));
    const config = join(dir, 'verdict.yaml');
    // Two answers (about 4 MB) put one connection past its 3 MiB; three, on any connections, all past 5 MiB.
    writeFileSync(config, `grpcStreams:\n  sendTimeoutMs: 60000\n  maxUnsentBytesPerConnection: ${3 * MiB}\n  maxUnsentBytes: ${5 * MiB}\n`);
    verdict = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch', '--decision-log', 'async'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a new stream on a connection holding more than maxUnsentBytesPerConnection, before reading it; closes it when it stays over; the largest holder goes when all are past maxUnsentBytes', async () => {
    const first = deafConnection(verdict.grpcPort);
    const second = deafConnection(verdict.grpcPort);
    const extra: http2.ClientHttp2Session[] = [];
    try {
      const held = [sendBatch(first), sendBatch(first)];
      await Promise.all(held.map((b) => b.answered));
      const decisions = await decisionsAnswered(verdict.httpPort);
      expect(decisions).toBeGreaterThanOrEqual(2 * ITEMS);
      // Once a sweep has seen them held, the third stream on the first connection is refused unread.
      expect(await metricReaches(verdict.httpPort, 'verdict_grpc_answer_bytes_unsent', 2 * ANSWER_AT_LEAST)).toBeGreaterThanOrEqual(2 * ANSWER_AT_LEAST);
      const third = sendBatch(first);
      expect(await third.status).toEqual({ code: '8', message: `this connection holds more than ${3 * MiB} bytes of answers it has not read (grpcStreams.maxUnsentBytesPerConnection); read them, then ask again` });
      expect(await decisionsAnswered(verdict.httpPort)).toBe(decisions);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_streams_refused_unread_total')).toBe(1);
      // Still over at the next check, having taken nothing: closed (what it had been admitted to could go on writing).
      await sessionClosed(first);
      const closed = await verdict.waitForLog((l) => l.msg.startsWith(`closed a gRPC connection holding more than ${3 * MiB} bytes of answers it did not take`));
      expect(closed['unsentBytes']).toBeGreaterThanOrEqual(2 * ANSWER_AT_LEAST);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_connections_closed_unread_total{reason="connection_budget"}')).toBe(1);

      // Three connections holding one answer each, each under its own limit, all together past 5 MiB: one is closed.
      const others = [second, deafConnection(verdict.grpcPort), deafConnection(verdict.grpcPort)];
      extra.push(...others);
      await Promise.all(others.map((session) => sendBatch(session).answered));
      const line = await verdict.waitForLog((l) => l.msg.startsWith('closed the gRPC connection holding the most unsent answers'));
      expect(line['unsentBytes']).toBeGreaterThanOrEqual(ANSWER_AT_LEAST);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_connections_closed_unread_total{reason="over_budget"}')).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(others.filter((session) => session.closed || session.destroyed)).toHaveLength(1);
      expect(await shippedAllowedCheck(verdict.grpcPort)).toBe('EFFECT_ALLOW');
    } finally {
      first.destroy();
      second.destroy();
      for (const session of extra) session.destroy();
    }
  }, 30_000);

  // node's own per-session memory limit counts a stream's unsent bytes and never gives them back when the client
  // resets the stream: behind it, a connection whose callers give up on large answers now and then ends up with
  // every new stream refused. The sweep measures what is held now, so such a connection keeps being served.
  it('keeps serving a connection whose callers reset streams holding unsent answers', async () => {
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`, { settings: { initialWindowSize: 1024 } });
    session.on('error', () => undefined);
    try {
      for (let i = 0; i < 6; i++) {
        const stream = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/CheckBatch', 'content-type': 'application/grpc', te: 'trailers' });
        stream.on('error', () => undefined);
        stream.end(batchFrame);
        const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
        expect(headers['grpc-status'], `batch ${i}`).toBeUndefined();
        stream.close(http2.constants.NGHTTP2_CANCEL);
        await new Promise((resolve) => stream.once('close', resolve));
      }
      // About 12 MB of answers were reset unsent on this connection, four times its 3 MiB; a new stream is still served.
      await new Promise((resolve) => setTimeout(resolve, 1200));
      const last = sendBatch(session);
      await last.answered;
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_streams_refused_unread_total')).toBe(1);
      expect(session.closed || session.destroyed).toBe(false);
    } finally {
      session.destroy();
    }
  }, 30_000);
});
