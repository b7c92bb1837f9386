import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceDefinition } from '../../src/server/grpc/descriptors.js';
import { ROOT, metricValue, shippedAllowedCheck, shippedAllowedRequest, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

// Unfinished request bodies on the gRPC port, as an attacker holds them: streams
// that declare a large message, send part of it and wait, with no deadline. They
// used to be held for as long as the connection stayed (400 on one connection:
// 0.5 → 1.9 GiB). A real server, small limits so the test stays small.

const BODY_TIMEOUT_MS = 1500;
const BUDGET = 256 * 1024;

interface Ended {
  readonly grpcStatus: string | undefined;
  readonly message: string;
  readonly afterMs: number;
}

/** Opens a stream that declares `declared` bytes of message and sends `sent` of them, never ending it. */
/**
 * Two hosts on loopback: 127.0.0.1 holding 200 KB of the budget in two bodies that will not
 * finish (the oldest a Check, the newest a CheckBatch), once the server counts them, and a
 * connection from 127.0.0.2.
 */
async function holderAndOtherHost(grpcPort: number, httpPort: number): Promise<{ holder: http2.ClientHttp2Session; other: http2.ClientHttp2Session; oldest: Promise<Ended>; newest: Promise<Ended> }> {
  const holder = http2.connect(`http://127.0.0.1:${grpcPort}`);
  const other = http2.connect(`http://127.0.0.1:${grpcPort}`, { createConnection: () => net.connect({ host: '127.0.0.1', port: grpcPort, localAddress: '127.0.0.2' }) });
  const oldest = holdBody(holder, '/verdict.v1.Authorization/Check', 200_000, 100_000);
  const newest = holdBody(holder, '/verdict.v1.Authorization/CheckBatch', 200_000, 100_000);
  while ((await metricValue(httpPort, 'verdict_grpc_body_bytes_arriving')) < 200_000) await new Promise((resolve) => setTimeout(resolve, 20));
  return { holder, other, oldest, newest };
}

/** A whole Check of about 80 KB (the shipped allowed request with ten 8,000-character notes) on `session`: its grpc-status and the answer's bytes. */
async function largeCheck(session: http2.ClientHttp2Session): Promise<{ status: string | undefined; body: Buffer }> {
  const context = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`note${i}`, 'n'.repeat(8000)]));
  const message = serviceDefinition('verdict.v1.Authorization').Check!.requestSerialize(shippedAllowedRequest(context));
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  const stream = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc', te: 'trailers' });
  let status: string | undefined;
  const chunks: Buffer[] = [];
  stream.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
  stream.on('trailers', (h) => (status = h['grpc-status'] as string | undefined));
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.end(Buffer.concat([prefix, message]));
  await new Promise((resolve) => stream.once('close', resolve));
  return { status, body: Buffer.concat(chunks) };
}

function holdBody(session: http2.ClientHttp2Session, path: string, declared: number, sent: number): Promise<Ended> {
  const opened = Date.now();
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(declared, 1);
  stream.write(Buffer.concat([prefix, Buffer.alloc(sent, 0x41)]));
  // Resolves on the status, which comes trailers-only: a node client with bytes still queued may not see the reset close the stream.
  return new Promise((resolve) => {
    const ended = (headers: http2.IncomingHttpHeaders): void => {
      const status = headers['grpc-status'];
      const message = headers['grpc-message'];
      if (status === undefined && !stream.closed) return;
      stream.destroy();
      resolve({ grpcStatus: typeof status === 'string' ? status : undefined, message: typeof message === 'string' ? decodeURI(message) : '', afterMs: Date.now() - opened });
    };
    stream.on('response', ended);
    stream.on('trailers', ended);
    stream.on('error', () => undefined);
    stream.once('close', () => ended({}));
  });
}

interface Refused {
  /** The HTTP status of the answer (200 for every gRPC status). */
  readonly httpStatus: number | undefined;
  readonly grpcStatus: string | undefined;
  readonly message: string;
  /** The reset code the stream closed with; undefined while it is open. */
  readonly rstCode: number | undefined;
}

/**
 * Opens a stream, sends `first`, and goes on sending a chunk every 100 ms without
 * ending it, as a client that ignores its refusal would; resolves once the server has
 * closed it, or with `rstCode` undefined if it is still open after `patienceMs`.
 */
function keepSending(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, first: Buffer, patienceMs: number): Promise<Refused> {
  const stream = session.request({ ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers', ...headers });
  let answer: http2.IncomingHttpHeaders = {};
  stream.on('response', (h) => (answer = { ...answer, ...h }));
  stream.on('trailers', (h) => (answer = { ...answer, ...h }));
  stream.on('error', () => undefined);
  stream.write(first);
  const more = setInterval(() => {
    if (!stream.closed && !stream.destroyed) stream.write(Buffer.alloc(1024, 0x41));
  }, 100);
  const outcome = (): Refused => {
    const message = answer['grpc-message'];
    return { httpStatus: answer[':status'] as number | undefined, grpcStatus: answer['grpc-status'] as string | undefined, message: typeof message === 'string' ? decodeURI(message) : '', rstCode: stream.closed ? stream.rstCode : undefined };
  };
  return new Promise((resolve) => {
    const patience = setTimeout(() => {
      clearInterval(more);
      resolve(outcome());
      stream.destroy();
    }, patienceMs);
    stream.once('close', () => {
      clearInterval(more);
      clearTimeout(patience);
      resolve(outcome());
    });
  });
}

describe('the gRPC port bounds unfinished request bodies', () => {
  let verdict: VerdictProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-streams-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `grpcStreams:\n  maxPerConnection: 4\n  bodyTimeoutMs: ${BODY_TIMEOUT_MS}\n  maxBufferedBytes: ${BUDGET}\n`);
    verdict = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const check = (): Promise<string> => shippedAllowedCheck(verdict.grpcPort);

  it('advertises the streams one connection may open', async () => {
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`);
    try {
      await new Promise((resolve) => session.once('remoteSettings', resolve));
      expect(session.remoteSettings.maxConcurrentStreams).toBe(4);
    } finally {
      session.close();
    }
  });

  it('ends a body that does not arrive in time (DEADLINE_EXCEEDED), on the direct lane and through grpc-js alike, and keeps answering others', async () => {
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`);
    try {
      const held = [holdBody(session, '/verdict.v1.Authorization/Check', 50_000, 10), holdBody(session, '/verdict.v1.Admin/ListDecisions', 50_000, 10), holdBody(session, '/envoy.service.auth.v3.Authorization/Check', 50_000, 10)];
      // While they are held, another caller is answered as always.
      expect(await check()).toBe('EFFECT_ALLOW');
      for (const ended of await Promise.all(held)) {
        expect(ended.grpcStatus).toBe('4');
        expect(ended.message).toBe(`the request message did not arrive within ${BODY_TIMEOUT_MS} ms (grpcStreams.bodyTimeoutMs); send it whole, at once`);
        expect(ended.afterMs).toBeGreaterThanOrEqual(BODY_TIMEOUT_MS - 50);
      }
    } finally {
      session.close();
    }
  });

  it('refuses a stream whose bytes would take unfinished bodies past the budget (RESOURCE_EXHAUSTED), whichever connection they came on', async () => {
    const sessions = [0, 1, 2].map(() => http2.connect(`http://127.0.0.1:${verdict.grpcPort}`));
    try {
      // Three bodies of 100 KB on three connections: the third takes the total past 256 KiB.
      const first = holdBody(sessions[0]!, '/verdict.v1.Authorization/Check', 200_000, 100_000);
      const second = holdBody(sessions[1]!, '/verdict.v1.Authorization/CheckBatch', 200_000, 100_000);
      // Long enough for both to be read, well inside the body timeout.
      await new Promise((resolve) => setTimeout(resolve, 400));
      const third = await holdBody(sessions[2]!, '/verdict.v1.Authorization/Check', 200_000, 100_000);
      expect(third.grpcStatus).toBe('8');
      expect(third.message).toBe(`verdict is holding ${BUDGET} bytes of request bodies still arriving (grpcStreams.maxBufferedBytes); send the whole message promptly, or retry`);
      expect(third.afterMs).toBeLessThan(BODY_TIMEOUT_MS);
      expect(await check()).toBe('EFFECT_ALLOW');
      // The other two are ended by the timeout, and their bytes let go: a fourth, after them, is held (and timed out) again.
      expect((await first).grpcStatus).toBe('4');
      expect((await second).grpcStatus).toBe('4');
      const after = await holdBody(sessions[2]!, '/verdict.v1.Authorization/Check', 200_000, 100_000);
      expect(after.grpcStatus).toBe('4');
    } finally {
      for (const session of sessions) session.close();
    }
  });

  it('counts the streams it ended in the metrics, and gives every counted byte back', async () => {
    const value = (line: string): Promise<number> => metricValue(verdict.httpPort, line);
    // The tests above: six slow bodies (three, then three in the budget test) and one over the budget.
    expect(await value('verdict_grpc_streams_ended_total{reason="slow_body"}')).toBe(6);
    expect(await value('verdict_grpc_streams_ended_total{reason="over_budget"}')).toBe(1);
    expect(await value('verdict_grpc_body_bytes_arriving')).toBe(0);
  });

  it('leaves a whole message sent slowly but in time alone', async () => {
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`);
    try {
      const body = Buffer.from('0a060a0464616e61120472656164', 'hex'); // principal {id: "dana"}, action "read"
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(body.length, 1);
      const stream = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc', te: 'trailers' });
      let status: string | undefined;
      stream.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
      stream.on('trailers', (h) => (status = h['grpc-status'] as string | undefined));
      stream.on('data', () => undefined);
      stream.write(prefix);
      await new Promise((resolve) => setTimeout(resolve, BODY_TIMEOUT_MS / 3));
      stream.end(body);
      await new Promise((resolve) => stream.once('close', resolve));
      // Decided (an invalid request: no resource type), not cut off.
      expect(status).toBe('3');
    } finally {
      session.close();
    }
  });

  it('resets a stream the direct lane refused before its body had come, so it frees its slot of the connection at once', async () => {
    // All four of the connection's streams refused early, each client going on sending: they used to be
    // drained with no timeout, holding the connection's four slots for as long as the client liked.
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`);
    try {
      const declare = (bytes: number): Buffer => {
        const prefix = Buffer.alloc(5);
        prefix.writeUInt32BE(bytes, 1);
        return prefix;
      };
      const message = Buffer.from('0a060a0464616e61120472656164', 'hex');
      const whole = Buffer.concat([declare(message.length), message]);
      // Longer than the body timeout: a stream still open by then was not closed by the refusal, nor by the guard.
      const patience = BODY_TIMEOUT_MS * 3;
      const refused = await Promise.all([
        keepSending(session, { ':path': '/verdict.v1.Authorization/Check' }, declare(8 * 1024 * 1024), patience),
        keepSending(session, { ':path': '/verdict.v1.Authorization/CheckBatch' }, declare(8 * 1024 * 1024), patience),
        keepSending(session, { ':path': '/verdict.v1.Authorization/Check', 'grpc-timeout': 'soon' }, declare(100), patience),
        keepSending(session, { ':path': '/envoy.service.auth.v3.Authorization/Check' }, Buffer.concat([whole, whole]), patience),
      ]);
      expect(refused.map((r) => r.grpcStatus)).toEqual(['8', '8', '13', '12']);
      expect(refused[0]!.message).toContain('Received message larger than max');
      expect(refused[3]!.message).toContain('second request message');
      expect(refused.map((r) => r.rstCode)).toEqual(Array(4).fill(http2.constants.NGHTTP2_NO_ERROR));
      // The slots are free: the same connection's next stream is read and decided (invalid: no resource type).
      const next = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc', te: 'trailers' });
      let status: string | undefined;
      next.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
      next.on('trailers', (h) => (status = h['grpc-status'] as string | undefined));
      next.on('data', () => undefined);
      next.end(whole);
      await new Promise((resolve) => next.once('close', resolve));
      expect(status).toBe('3');
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_body_bytes_arriving')).toBe(0);
    } finally {
      session.close();
    }
  });

  it('resets a stream grpc-js refused before its body had come, so it frees its slot at once rather than at the body timeout', async () => {
    // Methods and calls the direct lane leaves to grpc-js, each refused by grpc-js before its body has all come,
    // each client going on sending: the guard went on counting them, and they held all four slots of their
    // connection, until the body timeout ended them.
    const sweptBefore = await metricValue(verdict.httpPort, 'verdict_grpc_streams_ended_total{reason="slow_body"}');
    const sessions = [0, 1].map(() => http2.connect(`http://127.0.0.1:${verdict.grpcPort}`));
    try {
      const declare = (bytes: number): Buffer => {
        const prefix = Buffer.alloc(5);
        prefix.writeUInt32BE(bytes, 1);
        return prefix;
      };
      const emptyMessage = declare(0);
      // Longer than the body timeout: a stream still open by then was not closed by the refusal, nor by the guard.
      const patience = BODY_TIMEOUT_MS * 3;
      const refused = await Promise.all([
        keepSending(sessions[0]!, { ':path': '/verdict.v1.Nowhere/Missing' }, emptyMessage, patience),
        keepSending(sessions[0]!, { ':path': '/verdict.v1.Admin/ListDecisions' }, declare(8 * 1024 * 1024), patience),
        keepSending(sessions[0]!, { ':path': '/verdict.v1.Admin/GetPolicyStatus', 'grpc-timeout': 'soon' }, emptyMessage, patience),
        keepSending(sessions[0]!, { ':path': '/verdict.v1.Admin/GetPolicyStatus' }, Buffer.concat([emptyMessage, emptyMessage]), patience),
        keepSending(sessions[1]!, { ':path': '/verdict.v1.Admin/GetPolicyStatus', 'content-type': 'text/plain' }, emptyMessage, patience),
        // A decision call in a content type the lane does not read: grpc-js reads it.
        keepSending(sessions[1]!, { ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc+json', 'grpc-timeout': 'soon' }, declare(60_000), patience),
        keepSending(sessions[1]!, { ':path': '/verdict.v1.Admin/GetPolicyStatus', 'grpc-timeout': '1m' }, declare(100), patience),
        keepSending(sessions[1]!, { ':path': '/grpc.health.v1.Health/Check' }, Buffer.concat([emptyMessage, emptyMessage]), patience),
      ]);
      // The answers are grpc-js's own, as before.
      expect(refused.map((r) => r.httpStatus)).toEqual([200, 200, 200, 200, 415, 200, 200, 200]);
      expect(refused.map((r) => r.grpcStatus)).toEqual(['12', '8', '13', '12', undefined, '13', '4', '12']);
      expect(refused[1]!.message).toContain('Received message larger than max');
      expect(refused[3]!.message).toContain('second request message');
      expect(refused[6]!.message).toBe('Deadline exceeded');
      expect(refused.map((r) => r.rstCode)).toEqual(Array(8).fill(http2.constants.NGHTTP2_NO_ERROR));
      // Reset by the refusal, not by the body timeout.
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_streams_ended_total{reason="slow_body"}')).toBe(sweptBefore);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_body_bytes_arriving')).toBe(0);
      // Each connection's next stream is read and decided (invalid: no resource type).
      const message = Buffer.from('0a060a0464616e61120472656164', 'hex');
      for (const session of sessions) {
        const next = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc', te: 'trailers' });
        let status: string | undefined;
        next.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
        next.on('trailers', (h) => (status = h['grpc-status'] as string | undefined));
        next.on('data', () => undefined);
        next.end(Buffer.concat([declare(message.length), message]));
        await new Promise((resolve) => next.once('close', resolve));
        expect(status).toBe('3');
      }
    } finally {
      for (const session of sessions) session.close();
    }
  });

  it('resets a streaming call grpc-js ended early with trailers once the trailers have gone', async () => {
    // Reflection (bidi, read by grpc-js) answers a first request, then a second declared past the ceiling is
    // refused: the status goes in trailers, after the answer already sent, and the client goes on sending.
    const sweptBefore = await metricValue(verdict.httpPort, 'verdict_grpc_streams_ended_total{reason="slow_body"}');
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', 'content-type': 'application/grpc', te: 'trailers' });
      stream.on('error', () => undefined);
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on('trailers', (h) => (trailers = h));
      const answered = new Promise((resolve) => stream.once('data', resolve));
      stream.on('data', () => undefined);
      // list_services: "" (field 7, empty).
      stream.write(Buffer.from([0, 0, 0, 0, 2, 0x3a, 0]));
      await answered;
      const over = Buffer.alloc(5);
      over.writeUInt32BE(8 * 1024 * 1024, 1);
      stream.write(over);
      const more = setInterval(() => {
        if (!stream.closed && !stream.destroyed) stream.write(Buffer.alloc(1024, 0x41));
      }, 100);
      await new Promise((resolve) => stream.once('close', resolve));
      clearInterval(more);
      expect(trailers['grpc-status']).toBe('8');
      expect(decodeURI(String(trailers['grpc-message']))).toContain('Received message larger than max');
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_streams_ended_total{reason="slow_body"}')).toBe(sweptBefore);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_body_bytes_arriving')).toBe(0);
    } finally {
      session.close();
    }
  });

  it('when one host holds the budget with slow bodies, another host\'s large check makes room: the holder loses its newest body, the check is decided', async () => {
    // 127.0.0.1 holds 200 KB of the 256 KiB in two bodies that will not finish; 127.0.0.2 (another host on
    // loopback) sends a whole check of about 80 KB, well under its fair share (half, with two hosts). Without
    // the fair share it was refused over the budget, as every other host's large checks were while the first held it.
    const { holder, other, oldest, newest } = await holderAndOtherHost(verdict.grpcPort, verdict.httpPort);
    try {
      const { status, body } = await largeCheck(other);
      expect(status).toBe('0');
      const answer = serviceDefinition('verdict.v1.Authorization').Check!.responseDeserialize(body.subarray(5)) as { effect: string };
      expect(answer.effect).toBe('EFFECT_ALLOW');
      // The holder's newest body made the room; its oldest is left to its body timeout.
      const ended = await newest;
      expect(ended.grpcStatus).toBe('8');
      expect(ended.message).toBe(`verdict is holding ${BUDGET} bytes of request bodies still arriving (grpcStreams.maxBufferedBytes), the most of them from this host, and another host's message needed room; send fewer large messages at once, and each promptly`);
      expect((await oldest).grpcStatus).toBe('4');
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_streams_ended_total{reason="over_share"}')).toBe(1);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_body_bytes_arriving')).toBe(0);
    } finally {
      holder.close();
      other.close();
    }
  });

  it('making room, leaves alone a stream of the holder that has sent no bytes yet: ending it would free nothing', async () => {
    const endedBefore = await metricValue(verdict.httpPort, 'verdict_grpc_streams_ended_total{reason="over_share"}');
    const { holder, other, oldest, newest } = await holderAndOtherHost(verdict.grpcPort, verdict.httpPort);
    try {
      // The holder's newest stream: its headers have come, its message not yet (a gateway's check a moment old).
      const idle = holder.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc', te: 'trailers' });
      idle.on('error', () => undefined);
      let idleStatus: string | undefined;
      idle.on('response', (h) => (idleStatus ??= h['grpc-status'] as string | undefined));
      idle.on('trailers', (h) => (idleStatus ??= h['grpc-status'] as string | undefined));
      const idleClosed = new Promise((resolve) => idle.once('close', resolve));
      // The server has the stream once a ping sent after it comes back.
      await new Promise((resolve) => holder.ping(resolve));
      expect((await largeCheck(other)).status).toBe('0');
      // The body with bytes made the room, one stream ended for it.
      expect((await newest).grpcStatus).toBe('8');
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_streams_ended_total{reason="over_share"}')).toBe(endedBefore + 1);
      // Left to its body timeout: never ended to make room.
      await idleClosed;
      expect(idleStatus).toBe('4');
      expect((await oldest).grpcStatus).toBe('4');
    } finally {
      holder.close();
      other.close();
    }
  });
});
