import http2 from 'node:http2';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { serviceDefinition } from '../../src/server/grpc/descriptors.js';
import { metricValue, shippedAllowedCheck, shippedAllowedRequest, useShippedServer, verdictClient } from '../helpers/verdict-process.js';

// Each Check within the limits may carry about a megabyte of context, and its row
// records it. The writer used to be handed up to 256 rows at once whatever their
// size: one connection's hundred such checks put about 100 MB in one transaction,
// in front of every other caller's next commit (another caller's checks went from
// 3 ms to 850 ms at the median). Now it is handed at most about a megabyte of rows
// at once, so a transaction holds one such row and the small rows beside it.

const STRINGS = 110;
/** About 880,000 characters of context, each string under the 8,192 allowed. */
const context = Object.fromEntries(Array.from({ length: STRINGS }, (_, i) => [`note${i}`, `${i}:`.padEnd(8000, 'abcdefghij')]));
const LARGE_CHECKS = 40;
const encodeCheck = (request: Record<string, unknown>): Buffer => serviceDefinition('verdict.v1.Authorization').Check!.requestSerialize(request);

describe('checks carrying a megabyte of context each', () => {
  const shipped = useShippedServer();

  it('forty at once on one connection: every one answered, and no decision-log transaction holds more than one of their rows and a small one', async () => {
    const { grpcPort, httpPort } = shipped.server;
    const bucket = (le: string): Promise<number> => metricValue(httpPort, `verdict_decision_log_batch_rows_bucket{le="${le}"}`);
    const transactions = (): Promise<number> => metricValue(httpPort, 'verdict_decision_log_batch_rows_count');
    const before = { twoOrFewer: await bucket('2'), all: await transactions() };
    const client = verdictClient(grpcPort, { ownConnection: true });
    try {
      const request = shippedAllowedRequest(context);
      const answers = await Promise.all(
        Array.from({ length: LARGE_CHECKS }, () => client.call<{ effect: string }>('Authorization', 'Check', request, { deadline: Date.now() + 60_000 })),
      );
      expect(answers.map((answer) => answer.effect)).toEqual(Array.from({ length: LARGE_CHECKS }, () => 'EFFECT_ALLOW'));
    } finally {
      client.close();
    }
    expect(await shippedAllowedCheck(grpcPort)).toBe('EFFECT_ALLOW');
    const after = { twoOrFewer: await bucket('2'), all: await transactions() };
    // At least one transaction per large row, and every transaction since held two rows or fewer.
    expect(after.all - before.all).toBeGreaterThanOrEqual(LARGE_CHECKS);
    expect(after.all - before.all).toBe(after.twoOrFewer - before.twoOrFewer);
  }, 60_000);
});

/** One raw gRPC call of `body` (framed) on `session`: its grpc-status, null when the stream failed. */
function rawGrpc(session: http2.ClientHttp2Session, path: string, body: Buffer, headers: http2.OutgoingHttpHeaders): Promise<number | null> {
  return new Promise((resolve) => {
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let grpcStatus: number | null = null;
    const note = (h: http2.IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined) grpcStatus = Number(h['grpc-status']);
    };
    stream.on('response', note);
    stream.on('trailers', note);
    stream.on('data', () => undefined);
    stream.on('error', () => resolve(null));
    stream.on('close', () => resolve(grpcStatus));
    stream.end(body);
  });
}

describe('many checks with large messages at once: decided in turns', () => {
  const shipped = useShippedServer();
  const message = encodeCheck(
    shippedAllowedRequest(context),
  );
  const framed = (flag: number, bytes: Buffer): Buffer => {
    const head = Buffer.from([flag, 0, 0, 0, 0]);
    head.writeUInt32BE(bytes.length, 1);
    return Buffer.concat([head, bytes]);
  };

  /** `count` calls of `body` spread over `connections` connections, with the large-message gauges sampled until all are answered. */
  async function flood(body: Buffer, headers: http2.OutgoingHttpHeaders, connections: number, count: number): Promise<{ statuses: (number | null)[]; inFlight: number[]; waiting: number[] }> {
    const { grpcPort, httpPort } = shipped.server;
    const sessions = Array.from({ length: connections }, () => http2.connect(`http://127.0.0.1:${grpcPort}`));
    try {
      const calls = Promise.all(Array.from({ length: count }, (_, i) => rawGrpc(sessions[i % connections]!, '/verdict.v1.Authorization/Check', body, headers)));
      const inFlight: number[] = [];
      const waiting: number[] = [];
      let finished = false;
      void calls.finally(() => (finished = true));
      while (!finished) {
        inFlight.push(await metricValue(httpPort, 'verdict_large_messages_in_flight'));
        waiting.push(await metricValue(httpPort, 'verdict_large_messages_waiting'));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      return { statuses: await calls, inFlight, waiting };
    } finally {
      for (const session of sessions) session.destroy();
    }
  }

  it('300 gzip checks of a megabyte each (3.5 KB sent) on three connections: at most 32 inflated at a time for one host, the rest waiting with their compressed bytes; every one answered', async () => {
    const compressed = gzipSync(message);
    expect(compressed.length).toBeLessThan(message.length / 100);
    const { statuses, inFlight, waiting } = await flood(framed(1, compressed), { 'grpc-encoding': 'gzip' }, 3, 300);
    expect(statuses).toEqual(Array.from({ length: 300 }, () => grpc.status.OK));
    // One host holds at most half of MAX_LARGE_MESSAGES_AT_ONCE (64) at once.
    expect(Math.max(...inFlight)).toBeGreaterThan(0);
    expect(Math.max(...inFlight)).toBeLessThanOrEqual(32);
    expect(Math.max(...waiting)).toBeGreaterThan(0);
    expect(await metricValue(shipped.server.httpPort, 'verdict_large_messages_in_flight')).toBe(0);
    expect(await metricValue(shipped.server.httpPort, 'verdict_large_messages_waiting')).toBe(0);
    expect(await shippedAllowedCheck(shipped.server.grpcPort)).toBe('EFFECT_ALLOW');
  }, 120_000);

  it('60 plain checks of a megabyte each on two connections: the same bound', async () => {
    // 60 bodies of 0.9 MB arriving at once stay within the 64 MiB the stream guard lets arrive together.
    const { statuses, inFlight, waiting } = await flood(framed(0, message), {}, 2, 60);
    expect(statuses).toEqual(Array.from({ length: 60 }, () => grpc.status.OK));
    expect(Math.max(...inFlight)).toBeGreaterThan(0);
    expect(Math.max(...inFlight)).toBeLessThanOrEqual(32);
    expect(Math.max(...waiting)).toBeGreaterThan(0);
    expect(await metricValue(shipped.server.httpPort, 'verdict_large_messages_in_flight')).toBe(0);
    expect(await shippedAllowedCheck(shipped.server.grpcPort)).toBe('EFFECT_ALLOW');
  }, 60_000);
});
