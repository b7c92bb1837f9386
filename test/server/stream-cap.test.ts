import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, metricValue, shippedAllowedCheck, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

// The streams one connection may hold on the gRPC port, against a caller that
// ignores what the server advertises. node's own client queues a request past
// SETTINGS_MAX_CONCURRENT_STREAMS until a stream closes, so it could never show
// the server refusing one: this caller writes HTTP/2 frames itself. It holds
// unfinished bodies on every stream it may open, then opens one more. The body
// timeout is long, so whatever ends the streams here is the cap, not the timer.

const MAX_STREAMS = 4;
const BODY_TIMEOUT_MS = 60_000;

const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7 } as const;
const FLAG = { ACK: 0x1, END_HEADERS: 0x4 } as const;
const ERROR = { PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, REFUSED_STREAM: 7 } as const;

interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK block of literal fields, never indexed (names and values under 127 bytes). */
function hpack(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) parts.push(Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value));
  return Buffer.concat(parts);
}

/** A gRPC message prefix declaring `declared` bytes, then `sent` of them. */
function partialBody(declared: number, sent: number): Buffer {
  const body = Buffer.alloc(5 + sent, 0x41);
  body[0] = 0;
  body.writeUInt32BE(declared, 1);
  return body;
}

/** A raw HTTP/2 connection: acknowledges the server's settings as a client must, then does as it is told. */
class RawConnection {
  readonly frames: Frame[] = [];
  closed = false;
  private readonly socket: Socket;
  private pending = Buffer.alloc(0);
  private waiters: Array<() => void> = [];

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
    this.socket.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 9) {
        const length = this.pending.readUIntBE(0, 3);
        if (this.pending.length < 9 + length) break;
        const received: Frame = { type: this.pending[3]!, flags: this.pending[4]!, stream: this.pending.readUInt32BE(5) & 0x7fffffff, payload: this.pending.subarray(9, 9 + length) };
        this.pending = this.pending.subarray(9 + length);
        this.frames.push(received);
        if (received.type === FRAME.SETTINGS && (received.flags & FLAG.ACK) === 0) this.socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      }
      this.notify();
    });
    this.socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(FRAME.SETTINGS, 0, 0)]));
  }

  /** Opens `stream` on a decision method and sends part of a body, never ending it. */
  holdBody(stream: number, declared: number, sent: number): void {
    const headers = hpack([
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', '/verdict.v1.Authorization/Check'],
      [':authority', '127.0.0.1'],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
    ]);
    this.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, stream, headers), frame(FRAME.DATA, 0, stream, partialBody(declared, sent))]));
  }

  /** Resolves once `test` holds for the frames received so far (or the connection closed); rejects after `ms`. */
  until(test: (frames: readonly Frame[]) => boolean, ms: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${what}; frames: ${JSON.stringify(this.frames.map(({ type, flags, stream }) => ({ type, flags, stream })))}`)), ms);
      const check = (): void => {
        if (!test(this.frames) && !this.closed) return;
        this.waiters = this.waiters.filter((waiter) => waiter !== check);
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push(check);
      check();
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

describe('a caller that opens more streams on one connection than the gRPC port advertises', () => {
  let verdict: VerdictProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-stream-cap-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `grpcStreams:\n  maxPerConnection: ${MAX_STREAMS}\n  bodyTimeoutMs: ${BODY_TIMEOUT_MS}\n  maxBufferedBytes: ${1024 * 1024}\n`);
    verdict = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const metric = (line: string): Promise<number> => metricValue(verdict.httpPort, line);
  const waitForMetric = async (line: string, expected: number, ms: number): Promise<void> => {
    const until = Date.now() + ms;
    let value = await metric(line);
    while (value !== expected && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      value = await metric(line);
    }
    expect(value, line).toBe(expected);
  };
  const check = (): Promise<string> => shippedAllowedCheck(verdict.grpcPort);

  it('is refused the stream past the cap, and the bodies it held are let go', async () => {
    const connection = new RawConnection(verdict.grpcPort);
    try {
      // The server's settings name the cap; the acknowledgement makes it binding on this connection.
      await connection.until((frames) => frames.some((f) => f.type === FRAME.SETTINGS && f.flags === 0), 5000, "the server's SETTINGS");
      const advertised = connection.frames.find((f) => f.type === FRAME.SETTINGS && f.flags === 0)!.payload;
      const settings = new Map<number, number>();
      for (let at = 0; at + 6 <= advertised.length; at += 6) settings.set(advertised.readUInt16BE(at), advertised.readUInt32BE(at + 2));
      expect(settings.get(0x3)).toBe(MAX_STREAMS); // SETTINGS_MAX_CONCURRENT_STREAMS
      await connection.until((frames) => frames.some((f) => f.type === FRAME.SETTINGS && f.flags === FLAG.ACK), 5000, 'the SETTINGS acknowledgement');

      // Every stream it may open, each holding 1000 bytes of a 50 000-byte message.
      for (let i = 0; i < MAX_STREAMS; i++) connection.holdBody(1 + 2 * i, 50_000, 1000);
      await waitForMetric('verdict_grpc_body_bytes_arriving', MAX_STREAMS * 1005, 5000);
      // Meanwhile another caller is answered as always.
      expect(await check()).toBe('EFFECT_ALLOW');

      // One stream more than advertised.
      const extra = 1 + 2 * MAX_STREAMS;
      connection.holdBody(extra, 50_000, 1000);
      const refused = (frames: readonly Frame[]): boolean =>
        frames.some((f) => (f.type === FRAME.RST_STREAM && f.stream === extra) || f.type === FRAME.GOAWAY);
      await connection.until(refused, 5000, 'the extra stream to be refused');
      const reset = connection.frames.find((f) => f.type === FRAME.RST_STREAM && f.stream === extra);
      const goaway = connection.frames.find((f) => f.type === FRAME.GOAWAY);
      // Before the cap is acknowledged nghttp2 resets such a stream (REFUSED_STREAM); after, it is a
      // protocol error and node ends the whole connection (GOAWAY, which node sends as INTERNAL_ERROR).
      if (reset !== undefined) expect(reset.payload.readUInt32BE(0)).toBe(ERROR.REFUSED_STREAM);
      else expect([ERROR.PROTOCOL_ERROR, ERROR.INTERNAL_ERROR]).toContain(goaway!.payload.readUInt32BE(4));
      // The extra stream was never answered.
      expect(connection.frames.some((f) => f.type === FRAME.HEADERS && f.stream === extra)).toBe(false);
      expect(connection.frames.some((f) => f.type === FRAME.DATA && f.stream === extra)).toBe(false);

      // It was the cap, not the guard's timer or budget, that ended it.
      expect(await metric('verdict_grpc_streams_ended_total{reason="slow_body"}')).toBe(0);
      expect(await metric('verdict_grpc_streams_ended_total{reason="over_budget"}')).toBe(0);
      if (goaway !== undefined) {
        // The connection is gone, and with it every body it held: long before the body timeout.
        await connection.until(() => false, 5000, 'the server to close the connection');
        expect(connection.closed).toBe(true);
        await waitForMetric('verdict_grpc_body_bytes_arriving', 0, 5000);
      } else {
        // The connection stays, its four bodies held until the timeout; nothing of the fifth is counted.
        expect(await metric('verdict_grpc_body_bytes_arriving')).toBe(MAX_STREAMS * 1005);
      }
      expect(await check()).toBe('EFFECT_ALLOW');
    } finally {
      connection.destroy();
    }
    await waitForMetric('verdict_grpc_body_bytes_arriving', 0, 5000);
  });
});
