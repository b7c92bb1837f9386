// StreamTable (src/server/grpc/stream-table.ts) stands in for the Map node keeps
// a session's streams in: the same answers as a Map for every operation node
// makes, through growth and deletes during forEach; it is what the sessions of a
// real gRPC port use; and a raw HTTP/2 client that picks colliding stream ids
// against a real gRPC server gets short chains and leaves the server answering.
import http2 from 'node:http2';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StreamTable, useStreamTables } from '../../src/server/grpc/stream-table.js';
import { DEFAULT_STREAM_GUARD_LIMITS } from '../../src/server/grpc/stream-guard.js';
import { checkRequest, clientFor, startServer, unary, type Harness } from './support.js';

describe('StreamTable', () => {
  it('answers get, has, set, delete and size as a Map does, through growth and shrinking', () => {
    const table = new StreamTable();
    const map = new Map<number, string>();
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    // Odd ids as a client opens them, many open at once (past several growths), then drained.
    let nextId = 1;
    for (let step = 0; step < 30_000; step++) {
      const growing = step < 20_000;
      if (map.size === 0 || random(10) < (growing ? 7 : 2)) {
        const id = nextId;
        nextId += 2;
        table.set(id, `s${id}`);
        map.set(id, `s${id}`);
      } else {
        const keys = [...map.keys()];
        const id = random(4) === 0 ? nextId + 2 : keys[random(keys.length)]!;
        expect(table.delete(id)).toBe(map.delete(id));
      }
      if (step % 997 === 0) {
        const probe = 1 + 2 * random(nextId);
        expect(table.get(probe)).toBe(map.get(probe));
        expect(table.has(probe)).toBe(map.has(probe));
      }
      expect(table.size).toBe(map.size);
    }
    for (const [id, value] of map) expect(table.get(id)).toBe(value);
    table.set(1, 'replaced');
    map.set(1, 'replaced');
    expect(table.size).toBe(map.size);
    expect(table.get(1)).toBe('replaced');
  });

  it('forEach visits each stream once and skips one deleted before its turn, as Map.forEach does', () => {
    const table = new StreamTable();
    const ids: number[] = [];
    for (let id = 1; id < 2000; id += 2) {
      table.set(id, id);
      ids.push(id);
    }
    const visited = new Set<number>();
    const deletedUnvisited = new Set<number>();
    let step = 0;
    table.forEach((stream, id) => {
      expect(stream).toBe(id);
      expect(visited.has(id)).toBe(false);
      expect(deletedUnvisited.has(id)).toBe(false);
      visited.add(id);
      // Destroying one stream closing another, now and then: the other is not visited afterwards.
      const other = ids[(step++ * 7919) % ids.length]!;
      if (!visited.has(other) && table.delete(other)) deletedUnvisited.add(other);
      table.delete(id);
    });
    expect(deletedUnvisited.size).toBeGreaterThan(0);
    expect(visited.size + deletedUnvisited.size).toBe(ids.length);
    expect(table.size).toBe(0);
  });

  it('ids a client picks to share low bits do not pile into one bucket', () => {
    for (const spacing of [2, 512, 2 ** 10, 2 ** 17, 2 ** 18]) {
      const table = new StreamTable();
      for (let k = 0; k < 5000; k++) table.set(1 + k * spacing, k);
      expect(table.size).toBe(5000);
      // 5,000 streams in 2,048 buckets: a handful share one; a crafted pile-up would put hundreds or thousands there.
      expect(table.longestChain()).toBeLessThan(16);
      for (let k = 0; k < 5000; k += 97) expect(table.get(1 + k * spacing)).toBe(k);
    }
  });

  it('grows with a burst of streams and shrinks after it; its iterators and clear answer as a Map does', () => {
    const table = new StreamTable();
    const map = new Map<number, number>();
    expect(table.bucketCount).toBe(256);
    for (let id = 1; id < 40_000; id += 2) {
      table.set(id, id * 10);
      map.set(id, id * 10);
    }
    const peak = table.bucketCount;
    expect(peak).toBeGreaterThan(256);
    const sortById = (pairs: Iterable<[number, unknown]>): [number, unknown][] => [...pairs].sort((a, b) => a[0] - b[0]);
    expect(sortById(table.entries())).toEqual(sortById(map.entries()));
    expect(sortById(table)).toEqual(sortById(map));
    expect([...table.keys()].sort((a, b) => a - b)).toEqual([...map.keys()]);
    expect([...table.values()].length).toBe(map.size);
    for (let id = 1; id < 39_900; id += 2) {
      table.delete(id);
      map.delete(id);
    }
    expect(table.size).toBe(map.size);
    // 50 streams left: down to where there is at least one stream per 16 buckets.
    expect(table.bucketCount).toBeLessThan(peak);
    expect(table.bucketCount).toBeLessThanOrEqual(512);
    expect(sortById(table.entries())).toEqual(sortById(map.entries()));
    for (const id of [...map.keys()]) {
      table.delete(id);
      map.delete(id);
    }
    expect(table.bucketCount).toBe(256);
    for (let id = 39_901; id < 40_000; id += 2) {
      table.set(id, id * 10);
      map.set(id, id * 10);
    }
    table.clear();
    expect(table.size).toBe(0);
    expect([...table.entries()]).toEqual([]);
    expect(table.get(39_999)).toBeUndefined();
  });

  it.skipIf(!process.versions.node.startsWith('20.'))('is what a session of an HTTP/2 server uses, and 1,500 concurrent streams on one connection are all answered', async () => {
    const server = http2.createServer();
    let installed = 0;
    expect(useStreamTables(server, () => (installed += 1))).toBe(true);
    const tables: unknown[] = [];
    server.on('session', (session) => {
      const key = Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === 'state')!;
      tables.push((session as unknown as Record<symbol, { streams: unknown }>)[key]!.streams);
    });
    server.on('stream', (stream, headers) => {
      // Answered out of order, so streams leave the table from its middle.
      setTimeout(() => {
        stream.respond({ ':status': 200 });
        stream.end(String(headers['x-n']));
      }, Number(headers['x-n']) % 7);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const client = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const answers = await Promise.all(
        Array.from({ length: 1500 }, (_, n) =>
          new Promise<string>((resolve, reject) => {
            const request = client.request({ ':path': '/', 'x-n': String(n) });
            let body = '';
            request.setEncoding('utf8');
            request.on('data', (chunk: string) => (body += chunk));
            request.on('end', () => resolve(body));
            request.on('error', reject);
            request.end();
          }),
        ),
      );
      expect(answers).toEqual(Array.from({ length: 1500 }, (_, n) => String(n)));
      expect(tables.length).toBe(1);
      expect(installed).toBe(1);
      expect(tables[0]).toBeInstanceOf(StreamTable);
      await new Promise((resolve) => setImmediate(resolve));
      expect((tables[0] as StreamTable).size).toBe(0);
    } finally {
      client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe.skipIf(!process.versions.node.startsWith('20.'))('StreamTable under a client that picks colliding stream ids', () => {
  let harness: Harness;

  beforeAll(async () => {
    // The default of 100 streams per connection would refuse the attack outright; an operator may raise it.
    harness = await startServer({}, { streamLimits: { ...DEFAULT_STREAM_GUARD_LIMITS, maxStreamsPerConnection: 4000 } });
  });
  afterAll(async () => {
    await harness?.close();
  });

  /** One HTTP/2 frame: 3-byte length, type, flags, 31-bit stream id, payload. */
  const frame = (type: number, flags: number, streamId: number, payload: Buffer): Buffer => {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(streamId, 5);
    return Buffer.concat([head, payload]);
  };
  /** HPACK string literal, not Huffman-coded (lengths here are under 127). */
  const literal = (text: string): Buffer => Buffer.concat([Buffer.from([text.length]), Buffer.from(text)]);
  // :method POST (static 3), :scheme http (static 6); :authority (name 1), :path (name 4) and
  // content-type (name 31) as literals; te as a new name.
  const checkHeaders = Buffer.concat([
    Buffer.from([0x83, 0x86, 0x01]),
    literal('127.0.0.1'),
    Buffer.from([0x04]),
    literal('/verdict.v1.Authorization/Check'),
    Buffer.from([0x0f, 0x10]),
    literal('application/grpc'),
    Buffer.from([0x00]),
    literal('te'),
    literal('trailers'),
  ]);

  it('3,000 open streams with ids 2^17 apart share no long chain, and the server goes on answering', async () => {
    const bound = (harness.grpc.server as unknown as { http2Servers: Map<http2.Http2Server, unknown> }).http2Servers;
    const sessions: http2.ServerHttp2Session[] = [];
    for (const http2Server of bound.keys()) http2Server.on('session', (session) => sessions.push(session));
    const socket = connect(harness.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const frames = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0, Buffer.alloc(0))];
    // HEADERS with END_HEADERS and no END_STREAM: each stream stays open, waiting for a body.
    for (let k = 0; k < 3000; k++) frames.push(frame(0x1, 0x4, 1 + k * 2 ** 17, checkHeaders));
    socket.write(Buffer.concat(frames));

    const tableOf = (session: http2.ServerHttp2Session): StreamTable => {
      const key = Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === 'state')!;
      return (session as unknown as Record<symbol, { streams: StreamTable }>)[key]!.streams;
    };
    for (let waited = 0; (sessions.length === 0 || tableOf(sessions[0]!).size < 3000) && waited < 10_000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(sessions.length).toBe(1);
    const table = tableOf(sessions[0]!);
    expect(table).toBeInstanceOf(StreamTable);
    expect(table.size).toBe(3000);
    // With buckets picked by the id's low bits, all 3,000 would share one chain.
    expect(table.longestChain()).toBeLessThan(16);

    const client = clientFor('verdict.v1.Authorization', harness.address);
    try {
      const check = await unary<{ effect: string }>(client, 'Check', checkRequest());
      expect(check.error).toBeNull();
      expect(check.response?.effect).toBe('EFFECT_ALLOW');
    } finally {
      client.close();
    }

    // The attacker goes away: the session's streams are destroyed through the table's forEach.
    socket.destroy();
    for (let waited = 0; table.size > 0 && waited < 10_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(table.size).toBe(0);
  });
});
