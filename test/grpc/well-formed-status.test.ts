import { mkdtempSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { ROOT, ensureBuilt, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

// A refusal quotes what the caller sent and is cut to a length. Cut between the two
// halves of an emoji, it was half a character: recorded as such, and then the gRPC
// status message, percent-encoded with encodeURI, threw on it, outside any handler:
// one 250-byte request with a map key given twice ended the server (exit 5).

/** Protobuf wire format, enough to write what a protobuf library never would: a map key given twice. */
function varint(value: number): Buffer {
  const bytes: number[] = [];
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  bytes.push(value);
  return Buffer.from(bytes);
}
function field(number: number, payload: Buffer | string): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([varint((number << 3) | 2), varint(bytes.length), bytes]);
}

/** A Check whose principal.attributes (a Struct) gives the map key `key` twice. */
function checkWithRepeatedKey(key: string): Buffer {
  const entry = field(1, Buffer.concat([field(1, key), field(2, field(3, 'x'))]));
  const principal = Buffer.concat([field(1, 'maya'), field(3, Buffer.concat([entry, entry]))]);
  return Buffer.concat([field(1, principal), field(2, 'predict'), field(3, field(1, 'model'))]);
}

describe('a refusal quoting an emoji where it is cut', () => {
  let server: VerdictProcess;
  let db: string;

  beforeAll(async () => {
    ensureBuilt();
    const dir = mkdtempSync(join(tmpdir(), 'verdict-well-formed-'));
    db = join(dir, 'decisions.db');
    server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--no-watch'] });
  });
  afterAll(async () => {
    // Still serving: it stops when asked, as it should.
    expect(await server?.stop()).toBe(0);
  });

  it('answers INVALID_ARGUMENT on the direct lane and through grpc-js (gzip), records well-formed text, and keeps serving', async () => {
    const session = http2Connect(`http://127.0.0.1:${server.grpcPort}`);
    session.on('error', () => undefined);
    const call = (message: Buffer, gzip: boolean): Promise<{ status: string | null; message: string | null }> =>
      new Promise((resolve, reject) => {
        const payload = gzip ? gzipSync(message) : message;
        const frame = Buffer.concat([Buffer.from([gzip ? 1 : 0, 0, 0, 0, 0]), payload]);
        frame.writeUInt32BE(payload.length, 1);
        const stream = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc', te: 'trailers', ...(gzip ? { 'grpc-encoding': 'gzip' } : {}) });
        let result: { status: string | null; message: string | null } = { status: null, message: null };
        const take = (headers: Record<string, unknown>): void => {
          if (headers['grpc-status'] !== undefined) result = { status: String(headers['grpc-status']), message: decodeURIComponent(String(headers['grpc-message'] ?? '')) };
        };
        stream.on('response', take);
        stream.on('trailers', take);
        stream.on('data', () => undefined);
        stream.on('error', reject);
        stream.on('close', () => resolve(result));
        stream.end(frame);
      });
    try {
      // Wherever the cut falls, one of these paddings puts it between the emoji's halves.
      const answers: { status: string | null; message: string | null }[] = [];
      for (let padding = 150; padding <= 200; padding++) {
        const message = checkWithRepeatedKey(`${'a'.repeat(padding)}😀`);
        answers.push(await call(message, false), await call(message, true));
      }
      for (const answer of answers) {
        expect(answer.status).toBe('3'); // INVALID_ARGUMENT
        expect(answer.message).toMatch(/^the \d+ bytes sent are not a valid /);
      }
      // An unreadable message is recorded with what could not be read left empty.
      const rows = queryDecisions(db, { limit: 1000 });
      expect(rows).toHaveLength(answers.length);
      for (const row of rows) expect(row.errors[0]!.message.isWellFormed()).toBe(true);
    } finally {
      session.destroy();
    }
  }, 60_000);
});
