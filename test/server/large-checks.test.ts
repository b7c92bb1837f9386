import http2 from 'node:http2';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceDefinition } from '../../src/server/grpc/descriptors.js';
import { ROOT, ensureBuilt, metricValue, shippedAllowedCheck, shippedAllowedRequest, startVerdict, useShippedServer, verdictClient, type VerdictProcess } from '../helpers/verdict-process.js';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';

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
function rawGrpc(session: http2.ClientHttp2Session, path: string, body: Buffer, headers: http2.OutgoingHttpHeaders, onMessage: (text: string | null) => void = () => undefined): Promise<number | null> {
  return new Promise((resolve) => {
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let grpcStatus: number | null = null;
    const note = (h: http2.IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined) grpcStatus = Number(h['grpc-status']);
      if (typeof h['grpc-message'] === 'string') onMessage(decodeURIComponent(h['grpc-message']));
    };
    stream.on('response', note);
    stream.on('trailers', note);
    stream.on('data', () => undefined);
    stream.on('error', () => resolve(null));
    stream.on('close', () => resolve(grpcStatus));
    stream.end(body);
  });
}

const message = encodeCheck(shippedAllowedRequest(context));
const framed = (flag: number, bytes: Buffer): Buffer => {
  const head = Buffer.from([flag, 0, 0, 0, 0]);
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
};

interface Flooded {
  readonly statuses: (number | null)[];
  readonly messages: (string | null)[];
  readonly inFlight: number[];
  readonly waiting: number[];
  readonly waitingBytes: number[];
}

/** `count` calls of `body` to `server` spread over `connections` connections, with the large-message gauges sampled until all are answered. */
async function flood(server: VerdictProcess, body: Buffer, headers: http2.OutgoingHttpHeaders, connections: number, count: number): Promise<Flooded> {
  const { grpcPort, httpPort } = server;
  const sessions = Array.from({ length: connections }, () => http2.connect(`http://127.0.0.1:${grpcPort}`));
  try {
    const messages: (string | null)[] = [];
    const calls = Promise.all(Array.from({ length: count }, (_, i) => rawGrpc(sessions[i % connections]!, '/verdict.v1.Authorization/Check', body, headers, (text) => (messages[i] = text))));
    const inFlight: number[] = [];
    const waiting: number[] = [];
    const waitingBytes: number[] = [];
    let finished = false;
    void calls.finally(() => (finished = true));
    while (!finished) {
      inFlight.push(await metricValue(httpPort, 'verdict_large_messages_in_flight'));
      waiting.push(await metricValue(httpPort, 'verdict_large_messages_waiting'));
      waitingBytes.push(await metricValue(httpPort, 'verdict_large_messages_waiting_bytes'));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return { statuses: await calls, messages, inFlight, waiting, waitingBytes };
  } finally {
    for (const session of sessions) session.destroy();
  }
}

describe('many checks with large messages at once: decided in turns', () => {
  const shipped = useShippedServer();

  it('300 gzip checks of a megabyte each (3.5 KB sent) on three connections: at most 32 inflated at a time for one host, the rest waiting with their compressed bytes; every one answered', async () => {
    const compressed = gzipSync(message);
    expect(compressed.length).toBeLessThan(message.length / 100);
    const { statuses, inFlight, waiting } = await flood(shipped.server, framed(1, compressed), { 'grpc-encoding': 'gzip' }, 3, 300);
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
    const { statuses, inFlight, waiting } = await flood(shipped.server, framed(0, message), {}, 2, 60);
    expect(statuses).toEqual(Array.from({ length: 60 }, () => grpc.status.OK));
    expect(Math.max(...inFlight)).toBeGreaterThan(0);
    expect(Math.max(...inFlight)).toBeLessThanOrEqual(32);
    expect(Math.max(...waiting)).toBeGreaterThan(0);
    expect(await metricValue(shipped.server.httpPort, 'verdict_large_messages_in_flight')).toBe(0);
    expect(await shippedAllowedCheck(shipped.server.grpcPort)).toBe('EFFECT_ALLOW');
  }, 60_000);
});

describe('large messages waiting for their turn hold at most grpcStreams.maxWaitingBytes', () => {
  let server: VerdictProcess;
  beforeAll(async () => {
    ensureBuilt();
    const dir = makeTempDir();
    const config = join(dir, 'verdict.yaml');
    // 2 MiB for all waiting messages, 1 MiB for one host: one 0.9 MB message may wait at a time.
    writeFileSync(config, `grpcStreams:\n  maxWaitingBytes: ${2 * 1024 * 1024}\n`);
    server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'd.db'), args: ['--config', config] });
  }, 60_000);
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
    removeTempDirs();
  });

  it('60 plain checks of a megabyte each on two connections: those that would wait past the bound are refused RESOURCE_EXHAUSTED, the rest answered, nothing held after', async () => {
    const { statuses, messages, waitingBytes } = await flood(server, framed(0, message), {}, 2, 60);
    const refused = statuses.flatMap((code, i) => (code === grpc.status.RESOURCE_EXHAUSTED ? [messages[i]] : []));
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused)).toEqual(new Set(['too many large messages are waiting to be decided (more than 2097152 bytes of them, or 1048576 from one host: grpcStreams.maxWaitingBytes); retry later, or send fewer at once']));
    expect(statuses.filter((code) => code === grpc.status.OK).length).toBe(60 - refused.length);
    expect(Math.max(...waitingBytes)).toBeLessThanOrEqual(1024 * 1024);
    expect(await metricValue(server.httpPort, 'verdict_large_messages_refused_waiting_total')).toBe(refused.length);
    expect(await metricValue(server.httpPort, 'verdict_large_messages_waiting_bytes')).toBe(0);
    expect(await shippedAllowedCheck(server.grpcPort)).toBe('EFFECT_ALLOW');
  }, 60_000);
});
