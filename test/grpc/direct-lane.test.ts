// The direct lane (src/server/grpc/direct-lane.ts) answers the decision methods on
// their HTTP/2 stream, beside grpc-js. Attacked here with a raw HTTP/2 client against
// a real `verdict serve`: every framing a client can get wrong gets a defined gRPC
// status, never an allow, and the server goes on answering. The in-process half checks
// which calls the lane takes and which it leaves to grpc-js.
import http2 from 'node:http2';
import { deflateSync, gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { serviceDefinition } from '../../src/server/grpc/descriptors.js';
import { checkRequest, useShippedServer } from '../helpers/verdict-process.js';
import { checkRequest as fakeCheckRequest, clientFor, startServer, unary, type Harness } from './support.js';

const CHECK = '/verdict.v1.Authorization/Check';
const methods = serviceDefinition('verdict.v1.Authorization');
const encodeCheck = (request: Record<string, unknown>): Buffer => methods.Check!.requestSerialize(request);
const decodeCheckResponse = (bytes: Buffer): Record<string, unknown> => methods.Check!.responseDeserialize(bytes) as Record<string, unknown>;

const allowed = checkRequest({
  principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
  action: 'predict',
  resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'staging', owner: 'dana', classification: 'internal' } },
});
const denied = checkRequest({
  principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
  action: 'predict',
  resource: { type: 'model', id: 'rival-v1', attributes: { org: 'globex', env: 'staging', owner: 'zed', classification: 'internal' } },
});

/** 1 byte flag, 4 bytes big-endian length, then the message. */
function frame(message: Buffer, flag = 0, declaredLength = message.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flag;
  head.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([head, message]);
}

interface RawOutcome {
  readonly httpStatus: number | undefined;
  readonly grpcStatus: number | null;
  readonly grpcMessage: string;
  readonly body: Buffer;
  readonly trailers: http2.IncomingHttpHeaders;
}

const GRPC_HEADERS = { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' };

/** One raw HTTP/2 request: the headers and body chunks as given, the answer as sent. */
function rawCall(port: number, options: { path?: string; headers?: http2.OutgoingHttpHeaders; body?: readonly Buffer[] } = {}): Promise<RawOutcome> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const stream = session.request({ ...GRPC_HEADERS, ':path': options.path ?? CHECK, ...options.headers });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', reject);
    stream.on('close', () => {
      session.close();
      const status = trailers['grpc-status'] ?? headers['grpc-status'];
      resolve({
        httpStatus: headers[':status'] === undefined ? undefined : Number(headers[':status']),
        grpcStatus: status === undefined ? null : Number(status),
        grpcMessage: decodeURIComponent(String(trailers['grpc-message'] ?? headers['grpc-message'] ?? '')),
        body: Buffer.concat(chunks),
        trailers: { ...headers, ...trailers },
      });
    });
    for (const chunk of options.body ?? []) stream.write(chunk);
    stream.end();
  });
}

function effectOf(outcome: RawOutcome): unknown {
  expect(outcome.grpcStatus).toBe(grpc.status.OK);
  expect(outcome.body.readUInt32BE(1)).toBe(outcome.body.length - 5);
  return decodeCheckResponse(outcome.body.subarray(5)).effect;
}

describe('direct lane against a real verdict serve', () => {
  const shipped = useShippedServer();

  it('logs no warning that the lane could not be installed', () => {
    expect(shipped.server.logs.some((line) => String(line.msg).includes('direct lane'))).toBe(false);
  });

  it('answers a plain gRPC Check: allow, deny, and the decision recorded with the x-request-id header', async () => {
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))], headers: { 'x-request-id': 'lane-allow-1' } }))).toBe('EFFECT_ALLOW');
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(denied))] }))).toBe('EFFECT_DENY');
    const row = queryDecisions(shipped.db, { principalId: 'dana', limit: 50 }).find((decision) => decision.requestId === 'lane-allow-1');
    expect(row?.effect).toBe('ALLOW');
    expect(row?.caller).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('answers with gRPC headers and trailers only (no date header), on success and on refusal', async () => {
    const ok = await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))] });
    expect(effectOf(ok)).toBe('EFFECT_ALLOW');
    expect(Object.keys(ok.trailers).sort()).toEqual([':status', 'content-type', 'grpc-accept-encoding', 'grpc-encoding', 'grpc-message', 'grpc-status']);
    const refused = await rawCall(shipped.server.grpcPort, { body: [] });
    expect(refused.grpcStatus).toBe(grpc.status.UNIMPLEMENTED);
    expect(refused.trailers.date).toBeUndefined();
  });

  it('records each connection as its own caller, for every call on it', async () => {
    const callOn = (session: http2.ClientHttp2Session, requestId: string): Promise<void> =>
      new Promise((resolve, reject) => {
        const stream = session.request({ ...GRPC_HEADERS, ':path': CHECK, 'x-request-id': requestId });
        stream.on('error', reject);
        stream.on('data', () => {});
        stream.on('close', () => resolve());
        stream.end(frame(encodeCheck(allowed)));
      });
    const sessions = [0, 1].map(() => http2.connect(`http://127.0.0.1:${shipped.server.grpcPort}`));
    try {
      for (const [k, session] of sessions.entries()) for (const n of [1, 2]) await callOn(session, `peer-${k}-${n}`);
    } finally {
      for (const session of sessions) session.close();
    }
    const rows = queryDecisions(shipped.db, { principalId: 'dana', limit: 1000 });
    const callerOf = (id: string): string | null | undefined => rows.find((row) => row.requestId === id)?.caller;
    expect(callerOf('peer-0-1')).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(callerOf('peer-0-2')).toBe(callerOf('peer-0-1'));
    expect(callerOf('peer-1-2')).toBe(callerOf('peer-1-1'));
    expect(callerOf('peer-1-1')).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(callerOf('peer-1-1')).not.toBe(callerOf('peer-0-1'));
  });

  it('drops an x-request-id that is not printable ASCII, as grpc-js does, rather than record its bytes as latin1', async () => {
    for (const id of ['caf\u00e9-lane', 'tab\there-lane']) {
      const before = queryDecisions(shipped.db, { principalId: 'dana', limit: 1000 }).length;
      expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))], headers: { 'x-request-id': id } }))).toBe('EFFECT_ALLOW');
      const rows = queryDecisions(shipped.db, { principalId: 'dana', limit: 1000 });
      expect(rows.length).toBe(before + 1);
      expect(rows[0]!.requestId).toBeNull();
    }
  });

  it('reads a message split across many DATA frames', async () => {
    const bytes = frame(encodeCheck(allowed));
    const pieces = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: pieces }))).toBe('EFFECT_ALLOW');
  });

  const broken: ReadonlyArray<readonly [string, () => Buffer[], number, string]> = [
    ['no message at all', () => [], grpc.status.UNIMPLEMENTED, 'no request message'],
    ['a prefix cut short', () => [Buffer.from([0, 0, 0])], grpc.status.INTERNAL, 'truncated'],
    ['a length past the bytes sent', () => [frame(encodeCheck(allowed), 0, 5000)], grpc.status.INTERNAL, 'truncated'],
    ['two messages in a unary call', () => [frame(encodeCheck(allowed)), frame(encodeCheck(allowed))], grpc.status.UNIMPLEMENTED, 'second request message'],
    ['the compressed flag with grpc-encoding identity', () => [frame(encodeCheck(allowed), 1)], grpc.status.INTERNAL, 'compressed'],
  ];
  it.each(broken)('%s: a defined status, nothing allowed, nothing recorded as allowed', async (_what, body, code, words) => {
    const before = queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length;
    const outcome = await rawCall(shipped.server.grpcPort, { body: body() });
    expect(outcome.httpStatus).toBe(200);
    expect(outcome.grpcStatus).toBe(code);
    expect(outcome.grpcMessage).toContain(words);
    expect(outcome.body.length).toBe(0);
    expect(queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length).toBe(before);
  });

  // The lane reads gzip and deflate calls too, with the same framing: exactly one message, flag 0 or 1.
  const gzipped = (): Buffer => gzipSync(encodeCheck(allowed));
  const brokenGzip: ReadonlyArray<readonly [string, () => Buffer[]]> = [
    // grpc-js takes only flag 1 for compressed: these were decided as plain messages.
    ['flag 2 before a plain message', () => [frame(encodeCheck(allowed), 2)]],
    ['flag 0x80 before a plain message', () => [frame(encodeCheck(allowed), 0x80)]],
    ['flag 2 before a compressed message', () => [frame(gzipped(), 2)]],
    ['a message and 3 stray bytes', () => [frame(gzipped(), 1), Buffer.from([0, 0, 0])]],
    ['two messages', () => [frame(gzipped(), 1), frame(gzipped(), 1)]],
    ['a length past the bytes sent', () => [frame(gzipped(), 1, 5000)]],
  ];
  it.each(brokenGzip)('a gzip call with %s: not answered OK, nothing allowed', async (_what, body) => {
    const before = queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length;
    const outcome = await rawCall(shipped.server.grpcPort, { body: body(), headers: { 'grpc-encoding': 'gzip' } }).catch((error: unknown) => ({ grpcStatus: null, error }));
    expect(outcome.grpcStatus).not.toBe(grpc.status.OK);
    expect(queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length).toBe(before);
  });
  it('records a CheckBatch with no items whose shared principal is invalid, once, and names the decision', async () => {
    const before = queryDecisions(shipped.db, { limit: 10_000 }).length;
    const batch = methods.CheckBatch!.requestSerialize({ principal: { id: '' }, items: [], requestId: 'empty-batch-bad-principal' });
    const outcome = await rawCall(shipped.server.grpcPort, { path: '/verdict.v1.Authorization/CheckBatch', body: [frame(batch)] });
    expect(outcome.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
    expect(outcome.grpcMessage).toContain('principal.id');
    const rows = queryDecisions(shipped.db, { limit: 10_000 });
    expect(rows.length).toBe(before + 1);
    expect(rows[0]).toMatchObject({ requestId: 'empty-batch-bad-principal', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    expect(outcome.trailers['verdict-decision-id']).toBe(rows[0]!.decisionId);
  });

  it('answers a well-framed gzip call', async () => {
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(gzipped(), 1)], headers: { 'grpc-encoding': 'gzip' } }))).toBe('EFFECT_ALLOW');
  });

  it('reads a call with grpc-timeout given twice itself, compressed or not: one reading of the deadline, never grpc-js\'s', async () => {
    // node hands the two values over as one, "5S, 1n": not a timeout, so refused before anything is decided.
    for (const [body, encoding] of [[frame(gzipped(), 1), 'gzip'], [frame(encodeCheck(allowed)), 'identity']] as const) {
      const before = queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length;
      const outcome = await rawCall(shipped.server.grpcPort, { body: [body], headers: { 'grpc-encoding': encoding, 'grpc-timeout': ['5S', '1n'] } });
      expect(outcome.grpcStatus).toBe(grpc.status.INTERNAL);
      expect(outcome.grpcMessage).toContain('grpc-timeout');
      expect(queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length).toBe(before);
    }
  });

  it('answers deflate calls, and a plain message (flag 0) sent under grpc-encoding gzip, as grpc-js would', async () => {
    const port = shipped.server.grpcPort;
    expect(effectOf(await rawCall(port, { body: [frame(deflateSync(encodeCheck(allowed)), 1)], headers: { 'grpc-encoding': 'deflate' } }))).toBe('EFFECT_ALLOW');
    expect(effectOf(await rawCall(port, { body: [frame(deflateSync(encodeCheck(denied)), 1)], headers: { 'grpc-encoding': 'deflate' } }))).toBe('EFFECT_DENY');
    expect(effectOf(await rawCall(port, { body: [frame(encodeCheck(allowed), 0)], headers: { 'grpc-encoding': 'gzip' } }))).toBe('EFFECT_ALLOW');
  });

  const badlyCompressed: ReadonlyArray<readonly [string, () => Buffer, string, number, string]> = [
    // 64 MiB of zeros in 64 KiB: only the first 4 MiB and a byte (the hard ceiling) are ever put out.
    ['a gzip bomb (64 MiB of zeros in 64 KiB)', () => gzipSync(Buffer.alloc(64 * 1024 * 1024)), 'gzip', grpc.status.RESOURCE_EXHAUSTED, 'decompresses to a size larger than'],
    ['a deflate bomb', () => deflateSync(Buffer.alloc(64 * 1024 * 1024)), 'deflate', grpc.status.RESOURCE_EXHAUSTED, 'decompresses to a size larger than'],
    ['gzip bytes that are not gzip', () => encodeCheck(allowed), 'gzip', grpc.status.INTERNAL, 'Failed to decompress'],
    ['a gzip stream cut short', () => gzipped().subarray(0, 20), 'gzip', grpc.status.INTERNAL, 'Failed to decompress'],
    ['deflate bytes under grpc-encoding gzip', () => deflateSync(encodeCheck(allowed)), 'gzip', grpc.status.INTERNAL, 'Failed to decompress'],
    ['bytes after the end of a deflate stream', () => Buffer.concat([deflateSync(encodeCheck(allowed)), encodeCheck(allowed)]), 'deflate', grpc.status.INTERNAL, 'bytes after the end of the compressed stream'],
    ['bytes after the end of a gzip stream', () => Buffer.concat([gzipped(), Buffer.from([0x1f, 0x8b])]), 'gzip', grpc.status.INTERNAL, 'Failed to decompress'],
  ];
  it.each(badlyCompressed)('%s: a defined status, nothing allowed, and the server goes on', async (_what, message, encoding, code, words) => {
    const before = queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length;
    const outcome = await rawCall(shipped.server.grpcPort, { body: [frame(message(), 1)], headers: { 'grpc-encoding': encoding } });
    expect(outcome.grpcStatus).toBe(code);
    expect(outcome.grpcMessage).toContain(words);
    expect(outcome.body.length).toBe(0);
    expect(queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length).toBe(before);
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))] }))).toBe('EFFECT_ALLOW');
  });

  it('refuses a compressed or large message on a decision call grpc-js would read (another grpc content type, another method): grpc-js would inflate any number at once', async () => {
    const before = queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length;
    const large = frame(encodeCheck(checkRequest({ principal: { id: 'dana', roles: ['data_scientist'] }, action: 'read', resource: { type: 'model', id: 'x' }, context: { note: 'n'.repeat(70_000) } })));
    const variants: ReadonlyArray<{ body: Buffer; headers: http2.OutgoingHttpHeaders }> = [
      { body: frame(gzipped(), 1), headers: { 'grpc-encoding': 'gzip', 'content-type': 'application/grpc+x' } },
      { body: frame(gzipped(), 1), headers: { 'grpc-encoding': 'gzip', 'content-type': 'application/grpc; charset=utf-8' } },
      { body: frame(gzipped(), 1), headers: { 'grpc-encoding': 'gzip', ':method': 'PUT' } },
      { body: large, headers: { 'content-type': 'application/grpc+x' } },
    ];
    for (const { body, headers } of variants) {
      const outcome = await rawCall(shipped.server.grpcPort, { body: [body], headers }).catch((error: unknown) => ({ grpcStatus: null, error }));
      expect(outcome.grpcStatus).not.toBe(grpc.status.OK);
    }
    expect(queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length).toBe(before);
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(gzipped(), 1)], headers: { 'grpc-encoding': 'gzip' } }))).toBe('EFFECT_ALLOW');
  });

  it('refuses an encoding it does not read (the stream is reset before grpc-js could inflate it), nothing allowed', async () => {
    const before = queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length;
    const outcome = await rawCall(shipped.server.grpcPort, { body: [frame(gzipped(), 1)], headers: { 'grpc-encoding': 'br' } }).catch((error: unknown) => ({ grpcStatus: null, error }));
    expect(outcome.grpcStatus).not.toBe(grpc.status.OK);
    expect(queryDecisions(shipped.db, { effect: 'ALLOW', limit: 10_000 }).length).toBe(before);
  });

  it('refuses a message past the hard ceiling unread (RESOURCE_EXHAUSTED) and goes on serving', async () => {
    // Default limit 1 MiB; past 4 MiB the bytes are not even kept.
    const huge = Buffer.alloc(4 * 1024 * 1024 + 64 * 1024, 0x41);
    const outcome = await rawCall(shipped.server.grpcPort, { body: [frame(huge)] });
    expect(outcome.grpcStatus).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))] }))).toBe('EFFECT_ALLOW');
  });

  it('an invalid grpc-timeout is INTERNAL; one already spent is DEADLINE_EXCEEDED; neither allows', async () => {
    const invalid = await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))], headers: { 'grpc-timeout': 'soon' } });
    expect(invalid.grpcStatus).toBe(grpc.status.INTERNAL);
    expect(invalid.grpcMessage).toContain('grpc-timeout');
    const spent = await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))], headers: { 'grpc-timeout': '1n' } });
    expect(spent.grpcStatus).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(spent.body.length).toBe(0);
  });

  it('a generous grpc-timeout is honoured like none, even one past what a timer can hold', async () => {
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))], headers: { 'grpc-timeout': '5S' } }))).toBe('EFFECT_ALLOW');
    // 99,999,999 hours: a node timer that long would fire at once.
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))], headers: { 'grpc-timeout': '99999999H' } }))).toBe('EFFECT_ALLOW');
  });

  it('a prefix declaring more than the hard ceiling is refused before the bytes arrive', async () => {
    const outcome = await rawCall(shipped.server.grpcPort, { body: [frame(Buffer.alloc(16), 0, 0xffffffff)] });
    expect(outcome.grpcStatus).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(outcome.grpcMessage).toContain('larger than max');
  });

  it('streams reset by the client mid-message leave the server answering', async () => {
    const session = http2.connect(`http://127.0.0.1:${shipped.server.grpcPort}`);
    const half = frame(encodeCheck(allowed)).subarray(0, 20);
    for (let i = 0; i < 200; i++) {
      const stream = session.request({ ...GRPC_HEADERS, ':path': CHECK });
      stream.on('error', () => undefined);
      stream.write(half);
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    session.close();
    expect(effectOf(await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))] }))).toBe('EFFECT_ALLOW');
  });

  it('a stream the lane does not read is grpc-js\'s: a non-gRPC content type gets 415', async () => {
    const plain = await rawCall(shipped.server.grpcPort, { body: [frame(encodeCheck(allowed))], headers: { 'content-type': 'text/plain' } });
    expect(plain.httpStatus).toBe(415);
    expect(plain.grpcStatus).toBe(null);
  });
});

describe('direct lane in process: which calls it takes', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startServer();
  });
  afterAll(async () => {
    await harness?.close();
  });

  it('is installed, and takes Check, CheckBatch and Settle from a grpc-js client', async () => {
    expect(harness.grpc.directLane.installed).toBe(true);
    const client = clientFor('verdict.v1.Authorization', harness.address);
    const before = harness.grpc.directLane.calls;
    const check = await unary<{ effect: string }>(client, 'Check', fakeCheckRequest());
    expect(check.error).toBeNull();
    expect(check.response?.effect).toBe('EFFECT_ALLOW');
    const batch = await unary<{ results: Array<{ effect: string }> }>(client, 'CheckBatch', {
      principal: fakeCheckRequest()['principal'],
      items: [
        { action: 'read', resource: { type: 'model', id: 'm1' } },
        { action: 'delete', resource: { type: 'model', id: 'm1' } },
      ],
    });
    expect(batch.error).toBeNull();
    expect(batch.response?.results.map((result) => result.effect)).toEqual(['EFFECT_ALLOW', 'EFFECT_DENY']);
    const settle = await unary(client, 'Settle', { decisionId: 'd-x', actualUnits: 1 });
    expect(settle.error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(harness.grpc.directLane.calls).toBe(before + 3);
    // The client's session keeps its streams in a StreamTable (stream-table.ts), on the node release it was checked against.
    if (process.versions.node.startsWith('20.')) expect(harness.grpc.directLane.streamTableSessions).toBeGreaterThan(0);
    client.close();
  });

  it('leaves Admin calls to grpc-js, and reads gzip-compressed checks itself', async () => {
    const before = harness.grpc.directLane.calls;
    const admin = clientFor('verdict.v1.Admin', harness.address);
    const status = await unary<{ version: string }>(admin, 'GetPolicyStatus', {});
    expect(status.response?.version).toBe('v-test');
    admin.close();
    expect(harness.grpc.directLane.calls).toBe(before);
    // A grpc-js client compressing with gzip: the lane inflates the message itself, in its turn.
    const Constructor = clientFor('verdict.v1.Authorization', harness.address).constructor as new (address: string, credentials: grpc.ChannelCredentials, options: object) => grpc.Client;
    const gzip = new Constructor(harness.address, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2, 'grpc.use_local_subchannel_pool': 1 });
    const check = await unary<{ effect: string }>(gzip, 'Check', fakeCheckRequest());
    expect(check.error).toBeNull();
    expect(check.response?.effect).toBe('EFFECT_ALLOW');
    gzip.close();
    expect(harness.grpc.directLane.calls).toBe(before + 1);
    expect(harness.grpc.directLane.largeMessages).toEqual({ inFlight: 0, waiting: 0, waitingBytes: 0, refusedWaiting: 0 });
  });
});
