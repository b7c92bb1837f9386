import http2 from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type Harness } from './support.js';

// The direct lane counts its own streams' bytes for the guard; with
// grpc.max_connection_idle_ms set, every call goes through grpc-js (no lane) and the
// guard listens for every stream itself. Either way a body that stops arriving is
// ended, one over the budget refused, and the bytes counted are given back.

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

function hold(port: number, declared: number, sent: number): Promise<{ status: string | undefined; message: string }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const stream = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc', te: 'trailers' });
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(declared, 1);
  stream.write(Buffer.concat([prefix, Buffer.alloc(sent, 0x41)]));
  stream.on('error', () => undefined);
  return new Promise((resolve) => {
    const ended = (headers: http2.IncomingHttpHeaders): void => {
      const status = headers['grpc-status'];
      if (status === undefined && !stream.closed) return;
      session.destroy();
      resolve({ status: typeof status === 'string' ? status : undefined, message: decodeURI(String(headers['grpc-message'] ?? '')) });
    };
    stream.on('response', ended);
    stream.on('trailers', ended);
    stream.once('close', () => ended({}));
  });
}

/** Asks reflection for its services on one stream, pauses `pauseMs`, asks again, and ends: the answers read and the final grpc-status. */
async function reflectTwice(port: number, pauseMs: number): Promise<{ answers: number; status: string | undefined }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const stream = session.request({ ':method': 'POST', ':path': '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo', 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => undefined);
    let answers = 0;
    let status: string | undefined;
    stream.on('trailers', (h) => (status = h['grpc-status'] as string | undefined));
    const listServices = Buffer.from([0, 0, 0, 0, 2, 0x3a, 0]);
    const answered = (): Promise<unknown> => new Promise((resolve) => stream.once('data', () => resolve((answers += 1))));
    stream.write(listServices);
    await answered();
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
    if (!stream.closed) {
      stream.end(listServices);
      await answered();
    }
    await new Promise((resolve) => (stream.closed ? resolve(undefined) : stream.once('close', resolve)));
    return { answers, status };
  } finally {
    session.destroy();
  }
}

describe('the stream guard, with the direct lane and without', () => {
  it('ends a body that does not arrive in time, and refuses one over the budget', async () => {
    harness = await startServer({}, { channelOptions: { 'grpc.max_connection_idle_ms': 60_000 }, streamLimits: { maxStreamsPerConnection: 10, bodyTimeoutMs: 400, maxBufferedBytes: 64 * 1024, maxWaitingBytes: 64 * 1024 * 1024 } });
    expect(harness.grpc.directLane.installed).toBe(false);
    expect(harness.grpc.streamGuard.installed).toBe(true);
    const slow = await hold(harness.port, 1000, 10);
    expect(slow).toEqual({ status: '4', message: 'the request message did not arrive within 400 ms (grpcStreams.bodyTimeoutMs); send it whole, at once' });
    const large = await hold(harness.port, 200_000, 100_000);
    expect(large.status).toBe('8');
    expect(large.message).toMatch(/^verdict is holding 65536 bytes of request bodies still arriving/);
    expect(harness.grpc.streamGuard).toMatchObject({ slowBodies: 1, overBudget: 1, bufferedBytes: 0 });
    // A reflection stream that pauses between its requests is timed per message, not cut.
    expect(await reflectTwice(harness.port, 1000)).toEqual({ answers: 2, status: '0' });
    expect(harness.grpc.streamGuard.slowBodies).toBe(1);
  });

  it('on the direct lane, the same, and every byte it counted is given back', async () => {
    harness = await startServer({}, { streamLimits: { maxStreamsPerConnection: 10, bodyTimeoutMs: 400, maxBufferedBytes: 64 * 1024, maxWaitingBytes: 64 * 1024 * 1024 } });
    expect(harness.grpc.directLane.installed).toBe(true);
    expect((await hold(harness.port, 1000, 10)).status).toBe('4');
    expect((await hold(harness.port, 200_000, 100_000)).status).toBe('8');
    expect(harness.grpc.directLane.calls).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(harness.grpc.streamGuard).toMatchObject({ slowBodies: 1, overBudget: 1, bufferedBytes: 0 });
    expect(await reflectTwice(harness.port, 1000)).toEqual({ answers: 2, status: '0' });
    expect(harness.grpc.streamGuard).toMatchObject({ slowBodies: 1, bufferedBytes: 0 });
  });
});
