import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceDefinition } from '../../src/server/grpc/descriptors.js';
import { ROOT, metricValue, shippedAllowedCheck, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

// Server reflection is a bidi stream: a client (grpcurl, Postman) keeps it open and
// asks again when it needs another file, so its request body never "arrives". The
// stream guard times each message a streaming client sends, from its first byte to
// its last, rather than the whole body: a stream that pauses between messages is
// served, one whose message arrives a byte at a time is still ended.

const BODY_TIMEOUT_MS = 1000;
const BUDGET = 256 * 1024;
const TIMEOUT_MESSAGE = `the request message did not arrive within ${BODY_TIMEOUT_MS} ms (grpcStreams.bodyTimeoutMs); send it whole, at once`;

interface ReflectionResponse {
  readonly listServicesResponse?: { service: { name: string }[] } | null;
  readonly fileDescriptorResponse?: { fileDescriptorProto: Buffer[] } | null;
  readonly errorResponse?: { errorCode: number; errorMessage: string } | null;
}

/** A reflection stream through a plain grpc-js client, as grpcurl's would be: one request, one answer, in order. */
class Reflection {
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<object, ReflectionResponse>;
  private readonly waiting: { resolve: (response: ReflectionResponse) => void; reject: (error: Error) => void }[] = [];
  private ended: grpc.StatusObject | null = null;
  /** The call's status once it has ended. */
  readonly status: Promise<grpc.StatusObject>;

  constructor(port: number, service: string) {
    const Client = grpc.makeGenericClientConstructor(serviceDefinition(service), service);
    this.client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const open = (this.client as unknown as Record<string, () => grpc.ClientDuplexStream<object, ReflectionResponse>>)['ServerReflectionInfo']!;
    this.call = open.call(this.client);
    this.call.on('data', (response: ReflectionResponse) => this.waiting.shift()?.resolve(response));
    this.call.on('error', (error) => {
      for (const waiter of this.waiting.splice(0)) waiter.reject(error);
    });
    this.status = new Promise((resolve) =>
      this.call.on('status', (status: grpc.StatusObject) => {
        this.ended = status;
        resolve(status);
      }),
    );
  }

  ask(request: object): Promise<ReflectionResponse> {
    return new Promise((resolve, reject) => {
      if (this.ended !== null) {
        reject(new Error(`the stream has ended: ${grpc.status[this.ended.code]} ${this.ended.details}`));
        return;
      }
      this.waiting.push({ resolve, reject });
      this.call.write(request);
    });
  }

  end(): void {
    this.call.end();
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

/** The gRPC frame of a reflection request asking for the list of services (field 7, empty). */
const LIST_SERVICES = Buffer.from([0, 0, 0, 0, 2, 0x3a, 0]);

const REFLECTION_PATH = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo';

/** A gRPC stream on `session` whose errors (the resets under test) are expected. */
function rawStream(session: http2.ClientHttp2Session, path = REFLECTION_PATH): http2.ClientHttp2Stream {
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => undefined);
  return stream;
}

/** The 5-byte prefix of an uncompressed message of `bytes` bytes. */
function declare(bytes: number): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(bytes, 1);
  return prefix;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('the gRPC port with streams whose client sends many messages', () => {
  let verdict: VerdictProcess;
  let dir: string;
  const slowBodies = (): Promise<number> => metricValue(verdict.httpPort, 'verdict_grpc_streams_ended_total{reason="slow_body"}');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-bidi-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `grpcStreams:\n  maxPerConnection: 8\n  bodyTimeoutMs: ${BODY_TIMEOUT_MS}\n  maxBufferedBytes: ${BUDGET}\n`);
    verdict = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('keeps a reflection stream (v1 and v1alpha) open across pauses longer than bodyTimeoutMs, answering each request', async () => {
    const before = await slowBodies();
    const streams = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'].map((service) => new Reflection(verdict.grpcPort, service));
    try {
      for (const reflection of streams) {
        const listed = await reflection.ask({ listServices: '' });
        expect(listed.listServicesResponse?.service.map((s) => s.name)).toContain('verdict.v1.Authorization');
      }
      await pause(BODY_TIMEOUT_MS * 2.5);
      for (const reflection of streams) {
        const file = await reflection.ask({ fileContainingSymbol: 'verdict.v1.Authorization' });
        expect(file.fileDescriptorResponse?.fileDescriptorProto.length).toBeGreaterThan(0);
      }
      await pause(BODY_TIMEOUT_MS * 1.5);
      for (const reflection of streams) {
        expect((await reflection.ask({ listServices: '' })).listServicesResponse?.service.length).toBeGreaterThan(0);
        reflection.end();
        expect((await reflection.status).code).toBe(grpc.status.OK);
      }
      expect(await slowBodies()).toBe(before);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_body_bytes_arriving')).toBe(0);
    } finally {
      for (const reflection of streams) reflection.close();
    }
  });

  it('answers a reflection request whose bytes come in many small pieces within bodyTimeoutMs, and several sent in one piece', async () => {
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`);
    try {
      const stream = rawStream(session);
      let answered = 0;
      let pending = Buffer.alloc(0);
      stream.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
          answered += 1;
          pending = pending.subarray(5 + pending.readUInt32BE(1));
        }
      });
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on('trailers', (h) => (trailers = h));
      for (const byte of LIST_SERVICES) {
        stream.write(Buffer.from([byte]));
        await pause(BODY_TIMEOUT_MS / 10);
      }
      await pause(BODY_TIMEOUT_MS * 1.5);
      stream.end(Buffer.concat([LIST_SERVICES, LIST_SERVICES, LIST_SERVICES]));
      await new Promise((resolve) => stream.once('close', resolve));
      expect(answered).toBe(4);
      expect(trailers['grpc-status']).toBe('0');
    } finally {
      session.close();
    }
  });

  it('ends a reflection stream whose next message comes a byte at a time, bodyTimeoutMs after that message began, with a status', async () => {
    const before = await slowBodies();
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`);
    try {
      const stream = rawStream(session);
      let answers = 0;
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on('trailers', (h) => (trailers = h));
      const first = new Promise((resolve) => stream.once('data', resolve));
      stream.on('data', () => (answers += 1));
      stream.write(LIST_SERVICES);
      await first;
      // Idle for longer than the body timeout: a stream between messages holds no bytes and is left alone.
      await pause(BODY_TIMEOUT_MS * 1.5);
      expect(stream.closed).toBe(false);
      // Then a message of 1,000 bytes, declared and sent one byte every 50 ms: it would take 50 s.
      const began = Date.now();
      stream.write(declare(1000));
      const drip = setInterval(() => {
        if (!stream.closed && !stream.destroyed) stream.write(Buffer.from([0x3a]));
      }, 50);
      await new Promise((resolve) => stream.once('close', resolve));
      clearInterval(drip);
      const afterMs = Date.now() - began;
      expect(answers).toBe(1);
      expect(trailers['grpc-status']).toBe('4');
      expect(decodeURI(String(trailers['grpc-message']))).toBe(TIMEOUT_MESSAGE);
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(afterMs).toBeGreaterThanOrEqual(BODY_TIMEOUT_MS - 50);
      // The sweep runs every bodyTimeoutMs / 4.
      expect(afterMs).toBeLessThan(BODY_TIMEOUT_MS * 2);
      expect(await slowBodies()).toBe(before + 1);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_body_bytes_arriving')).toBe(0);
    } finally {
      session.close();
    }
  });

  it('counts a streaming message still arriving against maxBufferedBytes, as any body', async () => {
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`);
    try {
      const stream = rawStream(session);
      stream.on('data', () => undefined);
      let answer: http2.IncomingHttpHeaders = {};
      stream.on('response', (h) => (answer = { ...answer, ...h }));
      stream.on('trailers', (h) => (answer = { ...answer, ...h }));
      stream.write(Buffer.concat([declare(2 * BUDGET), Buffer.alloc(BUDGET + 1024, 0x41)]));
      await new Promise((resolve) => stream.once('close', resolve));
      expect(answer['grpc-status']).toBe('8');
      expect(decodeURI(String(answer['grpc-message']))).toMatch(/^verdict is holding 262144 bytes of request bodies still arriving/);
      expect(await metricValue(verdict.httpPort, 'verdict_grpc_body_bytes_arriving')).toBe(0);
    } finally {
      session.close();
    }
  });

  it('still ends a unary body that does not arrive in time, on the direct lane and through grpc-js', async () => {
    const session = http2.connect(`http://127.0.0.1:${verdict.grpcPort}`);
    try {
      const held = ['/verdict.v1.Authorization/Check', '/verdict.v1.Admin/GetPolicyStatus', '/grpc.health.v1.Health/Check'].map((path) => {
        const stream = rawStream(session, path);
        stream.write(Buffer.concat([declare(100), Buffer.alloc(10)]));
        const opened = Date.now();
        return new Promise<{ status: unknown; message: string; afterMs: number }>((resolve) => {
          stream.on('response', (h) => resolve({ status: h['grpc-status'], message: decodeURI(String(h['grpc-message'] ?? '')), afterMs: Date.now() - opened }));
        });
      });
      expect(await shippedAllowedCheck(verdict.grpcPort)).toBe('EFFECT_ALLOW');
      for (const ended of await Promise.all(held)) {
        expect(ended).toMatchObject({ status: '4', message: TIMEOUT_MESSAGE });
        expect(ended.afterMs).toBeGreaterThanOrEqual(BODY_TIMEOUT_MS - 50);
      }
    } finally {
      session.close();
    }
  });
});
