import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../../src/authn/api-keys.js';
import { defaultKeyPaths } from '../../src/decisions/keys.js';
import { ROOT, ensureBuilt, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';
import { makeTestPki, type TestPki } from '../tls/certs.js';

function opsPort(server: VerdictProcess): number {
  const serving = server.logs.find((l) => l.msg === 'verdict serving')!;
  return Number(String(serving.ops).split(':').pop());
}

function httpsGet(port: number, path: string, pki: TestPki, client: { cert: string; key: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', servername: 'localhost', port, path, ca: readFileSync(pki.ca.cert), cert: readFileSync(client.cert), key: readFileSync(client.key) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const mode = (file: string): string => `0${(statSync(file).mode & 0o777).toString(8)}`;

let pki: TestPki;

beforeAll(() => {
  ensureBuilt();
  pki = makeTestPki();
}, 120_000);

describe('forward-auth over TLS on one port, readiness and metrics on a loopback ops listener', () => {
  let server: VerdictProcess;
  let db: string;

  beforeAll(async () => {
    db = join(mkdtempSync(join(tmpdir(), 'verdict-ops-')), 'logs', 'decisions.db');
    server = await startVerdict({
      policies: join(ROOT, 'policies'),
      db,
      args: ['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-client-ca', pki.ca.cert, '--tls-http', '--ops', '127.0.0.1:0', '--no-watch'],
    });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it('serves /readyz and /metrics on the ops listener, in plain HTTP', async () => {
    const port = opsPort(server);
    expect(port).toBeGreaterThan(0);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { decisionLog: { path: string } }).decisionLog.path).toBe(db);
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('verdict_');
    // No gateway decides through the ops listener.
    expect((await fetch(`http://127.0.0.1:${port}/forward-auth`)).status).toBe(404);
  });

  it('serves forward-auth (and /healthz) on the HTTP port over TLS, and not readiness or metrics', async () => {
    await expect(fetch(`http://127.0.0.1:${server.httpPort}/healthz`)).rejects.toThrow();
    expect(await httpsGet(server.httpPort, '/healthz', pki, pki.cnClient)).toMatchObject({ status: 200 });
    for (const path of ['/readyz', '/metrics']) {
      const res = await httpsGet(server.httpPort, path, pki, pki.cnClient);
      expect(res.status, path).toBe(404);
      expect(res.body).toContain('this port serves /healthz, /forward-auth');
    }
    const forward = await httpsGet(server.httpPort, '/forward-auth', pki, pki.cnClient);
    // Answered by forward-auth (a refusal, since this request carries no original method or URI), not a 404.
    expect(forward.status).not.toBe(404);
  });

  it('creates the decision log, its WAL and the signing key readable by their owner only', () => {
    for (const file of [db, `${db}-wal`, `${db}-shm`, defaultKeyPaths(db).signingKey]) {
      expect(existsSync(file), file).toBe(true);
      expect(mode(file), file).toBe('0600');
    }
  });
});

describe('files with secrets are created mode 0600', () => {
  it('the API key store and its WAL', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'verdict-keys-')), 'nested', 'keys.db');
    const store = ApiKeyStore.open(file);
    try {
      store.create({ owner: 'svc-a' });
      for (const f of [file, `${file}-wal`]) expect(mode(f), f).toBe('0600');
    } finally {
      store.close();
    }
  });
});

describe('the ops listener with --workers', () => {
  it('is served by the workers on the one port the primary reports', async () => {
    const db = join(mkdtempSync(join(tmpdir(), 'verdict-ops-')), 'decisions.db');
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--workers', '2', '--ops', '127.0.0.1:0', '--no-watch'], startTimeoutMs: 60_000 });
    try {
      const port = opsPort(server);
      expect(port).toBeGreaterThan(0);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(ready.status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${server.httpPort}/readyz`)).status).toBe(404);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  }, 90_000);
});
