import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ApiKeyStore } from '../../src/authn/api-keys.js';
import { MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION } from '../../src/server/http.js';
import { ROOT, ensureBuilt, shippedAllowedCheck, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

const TIMEOUT_MS = 1_000;

/** A raw connection to the HTTP port: what was sent back, and once it was closed. */
async function rawHttp(port: number, localAddress = '127.0.0.1'): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => text, closed };
}

/** A server on the shipped policies taking API keys, with one for dana; stopped and removed after the describe block. */
function serverWithDanaKey(name: string, settings: Record<string, unknown> = {}): { readonly verdict: VerdictProcess; readonly key: string } {
  let verdict: VerdictProcess | undefined;
  let dir: string | undefined;
  let key = '';
  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), `verdict-${name}-`));
    const keysDb = join(dir, 'keys.db');
    const store = ApiKeyStore.open(keysDb);
    key = store.create({ owner: 'dana', name: 'dana', roles: [], attributes: {} }).key;
    store.close();
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, stringify({ authn: { apiKeys: { db: keysDb } }, ...settings }));
    verdict = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get verdict(): VerdictProcess {
      return verdict!;
    },
    get key(): string {
      return key;
    },
  };
}

describe('an HTTP request that takes too long to arrive', () => {
  const server = serverWithDanaKey('http-slow', { httpRequestTimeoutMs: TIMEOUT_MS });

  it('is answered 408 and its connection ended: headers never finished, or an AuthZEN body sent in part', async () => {
    const { verdict, key } = server;
    const slowHeaders = await rawHttp(verdict.httpPort);
    slowHeaders.socket.write('GET /healthz HTTP/1.1\r\nHost: verdict\r\nX-Slow: ');
    const body = '{"subject": {"type": "user", "id": "dana"}, "action": {"name": "read"}, "resource": {"type": "model", "id": "fraud-v3"}}';
    const slowBody = await rawHttp(verdict.httpPort);
    slowBody.socket.write(`POST /access/v1/evaluation HTTP/1.1\r\nHost: verdict\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`);
    // Each goes on sending a byte now and then, as a slow client does, until the server ends it.
    const trickle = setInterval(() => {
      if (!slowHeaders.socket.destroyed) slowHeaders.socket.write('x');
    }, 200);
    try {
      for (const connection of [slowHeaders, slowBody]) {
        // Ended by the request timeout (checked every second); Node's own would wait 300 s, past this test's time.
        await connection.closed;
        expect(connection.received()).toMatch(/^HTTP\/1\.1 408 /);
      }
    } finally {
      clearInterval(trickle);
    }
    // Others were answered meanwhile, and still are.
    expect(await shippedAllowedCheck(verdict.grpcPort)).toBe('EFFECT_ALLOW');
    expect((await fetch(`http://127.0.0.1:${verdict.httpPort}/healthz`)).status).toBe(200);
  }, 60_000);
});

describe('HTTP/1.1 requests pipelined on one connection', () => {
  const server = serverWithDanaKey('http-pipelined');

  const answers = (text: string): number => text.match(/HTTP\/1\.1 \d{3} /g)?.length ?? 0;

  it(`are answered up to ${MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION} in flight, in order`, async () => {
    const { verdict, key } = server;
    const connection = await rawHttp(verdict.httpPort);
    connection.socket.write('GET /healthz HTTP/1.1\r\nHost: verdict\r\n\r\n'.repeat(MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION));
    for (let i = 0; i < 100 && answers(connection.received()) < MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(answers(connection.received())).toBe(MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION);
    expect(connection.socket.destroyed).toBe(false);
    connection.socket.destroy();
  });

  it('close a connection that sends more before reading (twenty AuthZEN calls of 200 evaluations each), and others are answered', async () => {
    const { verdict, key } = server;
    const evaluation = { subject: { type: 'user', id: 'dana' }, action: { name: 'read' }, resource: { type: 'model', id: 'fraud-v3' } };
    const body = JSON.stringify({ evaluations: Array.from({ length: 200 }, () => evaluation) });
    const request = `POST /access/v1/evaluations HTTP/1.1\r\nHost: verdict\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const connection = await rawHttp(verdict.httpPort);
    connection.socket.write(request.repeat(20));
    await connection.closed;
    // Closed when the ninth arrived, before any answer was due: 20 would have been decided and held.
    expect(answers(connection.received())).toBeLessThanOrEqual(MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION);
    expect((await fetch(`http://127.0.0.1:${verdict.httpPort}/healthz`)).status).toBe(200);
    expect(await shippedAllowedCheck(verdict.grpcPort)).toBe('EFFECT_ALLOW');
  }, 60_000);
});

describe('HTTP connections held open', () => {
  // Idle connections opened faster than the request timeout ends them took every file descriptor
  // of the process: new gRPC connections from gateways failed until they were closed.
  it('are capped by httpMaxConnections: one more is closed as it arrives; gRPC and, once they go, HTTP are answered', async () => {
    ensureBuilt();
    const dir = mkdtempSync(join(tmpdir(), 'verdict-http-cap-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, stringify({ httpMaxConnections: 3, maxConnectionsPerClient: 3 }));
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch'] });
    try {
      const held = [await rawHttp(server.httpPort), await rawHttp(server.httpPort), await rawHttp(server.httpPort)];
      const extra = await rawHttp(server.httpPort);
      extra.socket.write('GET /healthz HTTP/1.1\r\nHost: verdict\r\n\r\n');
      await extra.closed;
      expect(extra.received()).toBe('');
      expect(await shippedAllowedCheck(server.grpcPort)).toBe('EFFECT_ALLOW');
      for (const connection of held) connection.socket.destroy();
      await Promise.all(held.map((connection) => connection.closed));
      // The server counts a connection gone once it has seen it close, a moment after the client.
      let status = 0;
      for (let attempt = 0; attempt < 100 && status !== 200; attempt++) {
        status = await fetch(`http://127.0.0.1:${server.httpPort}/healthz`).then(
          (response) => response.status,
          () => new Promise<number>((resolve) => setTimeout(() => resolve(0), 50)),
        );
      }
      expect(status).toBe(200);
    } finally {
      expect(await server.stop()).toBe(0);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('connections from one client address', () => {
  // Under the listener's cap alone, one address holding idle or half-sent requests took
  // every slot, and gateways connecting meanwhile were refused.
  it('are capped per address on the HTTP and gRPC ports: another address, and calls already connected, are answered', async () => {
    ensureBuilt();
    const dir = mkdtempSync(join(tmpdir(), 'verdict-per-client-'));
    const config = join(dir, 'verdict.yaml');
    // A quarter of 8 for each address by default.
    writeFileSync(config, stringify({ httpMaxConnections: 8, grpcMaxConnections: 8 }));
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch'] });
    const opened: { socket: Socket; closed: Promise<void> }[] = [];
    try {
      for (const port of [server.httpPort, server.grpcPort]) {
        const held = [await rawHttp(port, '127.0.0.2'), await rawHttp(port, '127.0.0.2')];
        opened.push(...held);
        const extra = await rawHttp(port, '127.0.0.2');
        opened.push(extra);
        await extra.closed;
        expect(extra.received(), `port ${port}`).toBe('');
        // The two held are still open: only the one past the address's share was closed.
        expect(held.every((connection) => !connection.socket.destroyed), `port ${port}`).toBe(true);
      }
      // Another address is served on both ports.
      const other = await rawHttp(server.httpPort, '127.0.0.3');
      opened.push(other);
      other.socket.write('GET /healthz HTTP/1.1\r\nHost: verdict\r\nConnection: close\r\n\r\n');
      await other.closed;
      expect(other.received()).toMatch(/^HTTP\/1\.1 200 /);
      expect(await shippedAllowedCheck(server.grpcPort)).toBe('EFFECT_ALLOW');
    } finally {
      for (const connection of opened) connection.socket.destroy();
      expect(await server.stop()).toBe(0);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
