// StreamTable (src/server/grpc/stream-table.ts) stands in for the Map node keeps
// a session's streams in: the same answers as a Map for every operation node
// makes, through growth and deletes during forEach; and it is what the sessions
// of a real gRPC port use.
import http2 from 'node:http2';
import { describe, expect, it } from 'vitest';
import { StreamTable, useStreamTables } from '../../src/server/grpc/stream-table.js';

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
    for (let id = 1; id < 2000; id += 2) table.set(id, id);
    const visited: number[] = [];
    table.forEach((stream, id) => {
      expect(stream).toBe(id);
      visited.push(id);
      // Destroying one stream closing another: the other is not visited afterwards.
      if (id % 4 === 1) table.delete(id + 2);
      table.delete(id);
    });
    expect(new Set(visited).size).toBe(visited.length);
    expect(visited.every((id) => id % 4 === 1)).toBe(true);
    expect(visited.length).toBe(500);
    expect(table.size).toBe(0);
  });

  it('is what a session of an HTTP/2 server uses, and 1,500 concurrent streams on one connection are all answered', async () => {
    const server = http2.createServer();
    expect(useStreamTables(server)).toBe(true);
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
      expect(tables[0]).toBeInstanceOf(StreamTable);
      await new Promise((resolve) => setImmediate(resolve));
      expect((tables[0] as StreamTable).size).toBe(0);
    } finally {
      client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
