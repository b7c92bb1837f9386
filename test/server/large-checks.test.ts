import http2 from 'node:http2';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { serviceDefinition } from '../../src/server/grpc/descriptors.js';
import { checkRequest, metricValue, shippedAllowedCheck, useShippedServer, verdictClient } from '../helpers/verdict-process.js';

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
      const request = checkRequest({
        principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
        action: 'read',
        resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } },
        context,
      });
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

describe('compressed checks carrying a megabyte each (3.5 KB sent)', () => {
  const shipped = useShippedServer();

  it('300 at once on three connections: inflated at most 32 at a time for one host, the rest waiting with their compressed bytes; every one answered', async () => {
    const { grpcPort, httpPort } = shipped.server;
    const message = encodeCheck(
      checkRequest({
        principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
        action: 'read',
        resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } },
        context,
      }),
    );
    const compressed = gzipSync(message);
    expect(compressed.length).toBeLessThan(message.length / 100);
    const body = Buffer.concat([Buffer.from([1, 0, 0, 0, 0]), compressed]);
    body.writeUInt32BE(compressed.length, 1);
    const sessions = [0, 1, 2].map(() => http2.connect(`http://127.0.0.1:${grpcPort}`));
    try {
      const calls = Promise.all(sessions.flatMap((session) => Array.from({ length: 100 }, () => rawGrpc(session, '/verdict.v1.Authorization/Check', body, { 'grpc-encoding': 'gzip' }))));
      const inflated: number[] = [];
      const waiting: number[] = [];
      let finished = false;
      void calls.finally(() => (finished = true));
      while (!finished) {
        inflated.push(await metricValue(httpPort, 'verdict_compressed_calls_inflated'));
        waiting.push(await metricValue(httpPort, 'verdict_compressed_calls_waiting'));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(await calls).toEqual(Array.from({ length: 300 }, () => grpc.status.OK));
      // One host holds at most half of MAX_COMPRESSED_CALLS_AT_ONCE (64) inflated at once.
      expect(Math.max(...inflated)).toBeGreaterThan(0);
      expect(Math.max(...inflated)).toBeLessThanOrEqual(32);
      expect(Math.max(...waiting)).toBeGreaterThan(0);
      expect(await metricValue(httpPort, 'verdict_compressed_calls_inflated')).toBe(0);
      expect(await metricValue(httpPort, 'verdict_compressed_calls_waiting')).toBe(0);
    } finally {
      for (const session of sessions) session.destroy();
    }
    expect(await shippedAllowedCheck(grpcPort)).toBe('EFFECT_ALLOW');
  }, 120_000);
});
