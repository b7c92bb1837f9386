import { spawnSync } from 'node:child_process';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions, type StoredDecision } from '../../src/decisions/query.js';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import { BIN, ROOT, checkRequest, ensureBuilt, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';
import { makeShortLivedClient, makeTestPki, type TestPki } from '../tls/certs.js';

const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as { verdict: { v1: Record<string, typeof grpc.Client> } };
type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void;

const TOKEN = 'a'.repeat(20) + '0123456789abcdef0123456789';

interface Caller {
  /** null: plaintext. */
  readonly cert: { cert: string; key: string } | null;
  readonly token?: string;
  /** Metadata a proxy in between would add. */
  readonly proxy?: Record<string, string>;
}

function call<T>(port: number, pki: TestPki | null, who: Caller, service: 'Admin' | 'Authorization', method: string, request: unknown): Promise<T> {
  const credentials = pki
    ? grpc.credentials.createSsl(readFileSync(pki.ca.cert), who.cert ? readFileSync(who.cert.key) : null, who.cert ? readFileSync(who.cert.cert) : null)
    : grpc.credentials.createInsecure();
  const client = new loaded.verdict.v1[service]!(`127.0.0.1:${port}`, credentials, { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Record<string, Unary> & grpc.Client;
  const metadata = new grpc.Metadata();
  if (who.token !== undefined) metadata.set('authorization', `Bearer ${who.token}`);
  for (const [name, value] of Object.entries(who.proxy ?? {})) metadata.set(name, value);
  return new Promise<T>((resolve, reject) => {
    client[method]!.call(client, request, metadata, { deadline: Date.now() + 10_000 }, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve(response as T);
    });
  });
}

const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };
const aCheck = checkRequest({ principal: dana, action: 'predict', resource: fraudModel });

/** The Admin rows of a log, oldest first. */
function adminRows(db: string): StoredDecision[] {
  return queryDecisions(db, { resourceType: 'verdict.admin', limit: 1000 }).reverse();
}

let pki: TestPki;

beforeAll(() => {
  ensureBuilt();
  pki = makeTestPki();
}, 120_000);

describe('Admin over mTLS: an admin list of certificates and an admin token', () => {
  let server: VerdictProcess;
  let db: string;
  const admin = (): Caller => ({ cert: pki.adminClient });
  const gateway = (): Caller => ({ cert: pki.spiffeClient });

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-'));
    db = join(dir, 'decisions.db');
    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `admin:\n  clients: ['uri:spiffe://verdict.test/ns/ops/sa/admin']\n  tokenFile: ${tokenFile}\n`);
    server = await startVerdict({
      policies: join(ROOT, 'policies'),
      db,
      args: ['--config', config, '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-client-ca', pki.ca.cert, '--no-watch'],
    });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it('says at start who may administer', () => {
    const serving = server.logs.find((l) => l.msg === 'verdict serving')!;
    expect(serving.admin).toEqual({ token: true, clients: ['uri:spiffe://verdict.test/ns/ops/sa/admin'], loopback: false });
  });

  it("lets a gateway's certificate ask for decisions but not administer, and records the refusal", async () => {
    const checked = await call<{ effect: string }>(server.grpcPort, pki, gateway(), 'Authorization', 'Check', aCheck);
    expect(checked.effect).toBe('EFFECT_ALLOW');
    for (const [method, request] of [['ListDecisions', { limit: 5 }], ['GetDecision', { decisionId: 'x' }], ['ReloadPolicies', {}], ['GetPolicyStatus', {}]] as const) {
      await expect(call(server.grpcPort, pki, gateway(), 'Admin', method, request), method).rejects.toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
        details: expect.stringContaining('uri:spiffe://verdict.test/ns/edge/sa/gateway may ask for decisions but not administer') as string,
      });
    }
    const refused = adminRows(db).filter((r) => r.principalId === 'uri:spiffe://verdict.test/ns/edge/sa/gateway');
    expect(refused.map((r) => r.action)).toEqual(['ListDecisions', 'GetDecision', 'ReloadPolicies', 'GetPolicyStatus']);
    for (const row of refused) {
      expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED', caller: 'uri:spiffe://verdict.test/ns/edge/sa/gateway', details: { admin: { refused: 'PERMISSION_DENIED' } } });
      expect(row.errors[0]?.ruleId).toBe('admin');
    }
  });

  it('refuses a client without a certificate at the handshake, and a certificate of another CA', async () => {
    await expect(call(server.grpcPort, pki, { cert: null }, 'Admin', 'GetPolicyStatus', {})).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await expect(call(server.grpcPort, pki, { cert: pki.strangerClient }, 'Admin', 'GetPolicyStatus', {})).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await expect(call(server.grpcPort, null, { cert: null }, 'Admin', 'GetPolicyStatus', {})).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it('admits a listed certificate and records the call with its parameters', async () => {
    const listed = await call<{ decisions: unknown[]; nextPageToken: string }>(server.grpcPort, pki, admin(), 'Admin', 'ListDecisions', { principalId: 'dana', limit: 3 });
    expect(listed.decisions.length).toBeGreaterThan(0);
    const row = adminRows(db).at(-1)!;
    expect(row).toMatchObject({
      principalId: 'uri:spiffe://verdict.test/ns/ops/sa/admin',
      caller: 'uri:spiffe://verdict.test/ns/ops/sa/admin',
      action: 'ListDecisions',
      resourceType: 'verdict.admin',
      effect: 'ALLOW',
      reason: 'ALLOWED_BY_RULE',
      ruleIds: ['admin'],
      details: { admin: { method: 'ListDecisions', via: 'certificate', parameters: { principalId: 'dana', limit: 3 } } },
    });
  });

  it('admits the admin token with any accepted certificate, and refuses a wrong token', async () => {
    const status = await call<{ version: string }>(server.grpcPort, pki, { cert: pki.spiffeClient, token: TOKEN }, 'Admin', 'GetPolicyStatus', {});
    expect(status.version).not.toBe('');
    expect(adminRows(db).at(-1)).toMatchObject({ principalId: 'admin-token', caller: 'uri:spiffe://verdict.test/ns/edge/sa/gateway', effect: 'ALLOW', details: { admin: { via: 'token' } } });
    // A wrong token is refused even with a listed certificate: a credential presented is never ignored.
    await expect(call(server.grpcPort, pki, { cert: pki.adminClient, token: `${TOKEN}x` }, 'Admin', 'GetPolicyStatus', {})).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: 'admin: the admin token was not accepted' });
    expect(adminRows(db).at(-1)).toMatchObject({ effect: 'DENY', details: { admin: { refused: 'UNAUTHENTICATED' } } });
  });

  it('records invalid Admin calls too, before refusing them', async () => {
    await expect(call(server.grpcPort, pki, admin(), 'Admin', 'GetDecision', {})).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(call(server.grpcPort, pki, admin(), 'Admin', 'ListDecisions', { pageToken: 'forged' })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    const [get, list] = adminRows(db).slice(-2);
    expect(get).toMatchObject({ action: 'GetDecision', effect: 'ALLOW' });
    expect(list).toMatchObject({ action: 'ListDecisions', details: { admin: { parameters: { pageToken: 'forged' } } } });
  });

  it('keeps the chain whole: the log with its Admin rows verifies', async () => {
    await server.stop();
    const verify = spawnSync(process.execPath, [BIN, 'audit', 'verify', '--db', db], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
    server = await startVerdict({
      policies: join(ROOT, 'policies'),
      db,
      args: ['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-client-ca', pki.ca.cert, '--no-watch'],
    });
  });
});

describe('Admin without TLS', () => {
  const start = async (args: string[]): Promise<{ server: VerdictProcess; db: string; dir: string }> => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-'));
    const db = join(dir, 'decisions.db');
    return { server: await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--no-watch', ...args] }), db, dir };
  };

  it('admits loopback callers by default, and records them as loopback', async () => {
    const { server, db } = await start([]);
    try {
      expect(server.logs.find((l) => l.msg === 'verdict serving')!.admin).toEqual({ token: false, clients: [], loopback: true });
      await call(server.grpcPort, null, { cert: null }, 'Admin', 'GetPolicyStatus', {});
      expect(adminRows(db)).toMatchObject([{ principalId: 'loopback', effect: 'ALLOW', details: { admin: { via: 'loopback' } } }]);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('refuses a loopback call that came through a proxy on this host (it carries x-forwarded-for, x-real-ip, forwarded, via, or what Envoy adds by default), and records it', async () => {
    const { server, db } = await start([]);
    // Envoy with use_remote_address: false (its default) adds no x-forwarded-for, but these.
    const proxies: Record<string, string>[] = [{ 'x-forwarded-for': '203.0.113.9' }, { 'x-real-ip': '203.0.113.9' }, { forwarded: 'for=203.0.113.9' }, { via: '1.1 proxy' }, { 'x-forwarded-proto': 'https' }, { 'x-envoy-expected-rq-timeout-ms': '15000' }];
    try {
      for (const proxy of proxies) {
        const refused = await call(server.grpcPort, null, { cert: null, proxy }, 'Admin', 'GetPolicyStatus', {}).then(() => null, (e: grpc.ServiceError) => e);
        expect(refused?.code, Object.keys(proxy)[0]).toBe(grpc.status.UNAUTHENTICATED);
        expect(refused?.details).toMatch(new RegExp(`came through a proxy \\(it carries ${Object.keys(proxy)[0]}\\), so its loopback address does not admit it`));
      }
      expect(adminRows(db)).toHaveLength(proxies.length);
      for (const row of adminRows(db)) expect(row).toMatchObject({ effect: 'DENY', details: { admin: { refused: 'UNAUTHENTICATED' } } });
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('with an admin token, refuses a plaintext client without it (loopback too) and admits one with it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-'));
    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
    const { server, db } = await start(['--admin-token-file', tokenFile]);
    try {
      expect(server.logs.some((l) => l.msg.startsWith('the admin token travels in plaintext'))).toBe(true);
      await expect(call(server.grpcPort, null, { cert: null }, 'Admin', 'ListDecisions', {})).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      await expect(call(server.grpcPort, null, { cert: null, token: 'guess' }, 'Admin', 'ReloadPolicies', {})).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      const ok = await call<{ reloaded: boolean }>(server.grpcPort, null, { cert: null, token: TOKEN }, 'Admin', 'ReloadPolicies', {});
      expect(ok.reloaded).toBe(true);
      // A refused call is recorded before it is read: 1 MB of decision id used to be 1 MB of row.
      await expect(call(server.grpcPort, null, { cert: null, token: 'guess' }, 'Admin', 'GetDecision', { decisionId: 'x'.repeat(1 << 20) })).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      expect(adminRows(db).map((r) => [r.action, r.effect, r.principalId])).toEqual([
        ['ListDecisions', 'DENY', expect.stringMatching(/^127\.0\.0\.1:\d+$/)],
        ['ReloadPolicies', 'DENY', expect.stringMatching(/^127\.0\.0\.1:\d+$/)],
        ['ReloadPolicies', 'ALLOW', 'admin-token'],
        ['GetDecision', 'DENY', expect.stringMatching(/^127\.0\.0\.1:\d+$/)],
      ]);
      expect(adminRows(db).at(-1)!.resourceId).toBe(`${'x'.repeat(256)}…`);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('is off with admin.loopback: false and nothing else configured', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, 'admin:\n  loopback: false\n');
    const { server } = await start(['--config', config]);
    try {
      await expect(call(server.grpcPort, null, { cert: null }, 'Admin', 'GetPolicyStatus', {})).rejects.toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
        details: expect.stringContaining('administration is not enabled on this server') as string,
      });
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('refuses to start with a token file that is missing or too short, naming it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-'));
    const short = join(dir, 'short.token');
    writeFileSync(short, 'secret\n');
    for (const [file, expected] of [[short, `admin.tokenFile: ${short} must hold one token of at least 32 characters`], [join(dir, 'nope'), 'admin.tokenFile: cannot read']] as const) {
      const result = spawnSync(process.execPath, [BIN, 'serve', '--policies', join(ROOT, 'policies'), '--db', join(dir, 'd.db'), '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'silent', '--admin-token-file', file], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(result.stderr).toContain(expected);
      expect(result.status).toBe(2);
    }
  });
});

describe('the console over mTLS', () => {
  it("refuses a listed operator certificate's request from another site (a browser sends the certificate with it), and admits it from its own page", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-console-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, "admin:\n  clients: ['uri:spiffe://verdict.test/ns/ops/sa/admin']\n");
    const server = await startVerdict({
      policies: join(ROOT, 'policies'),
      db: join(dir, 'decisions.db'),
      args: ['--config', config, '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-client-ca', pki.ca.cert, '--tls-http', '--no-watch'],
    });
    const get = (headers: Record<string, string>): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          { host: '127.0.0.1', port: server.httpPort, path: '/console/api/policy', ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.adminClient.cert), key: readFileSync(pki.adminClient.key), headers },
          (res) => {
            let body = '';
            res.on('data', (chunk: Buffer) => (body += chunk.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    try {
      expect((await get({ 'sec-fetch-site': 'same-origin' })).status).toBe(200);
      const crossSite = await get({ 'sec-fetch-site': 'cross-site' });
      expect(crossSite.status).toBe(401);
      expect(crossSite.body).toMatch(/answers its own page only/);
      const rows = queryDecisions(join(dir, 'decisions.db'), { action: 'ConsolePolicy', limit: 10 });
      expect(rows.map((r) => r.effect).sort()).toEqual(['ALLOW', 'DENY']);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
  it('stands for nobody once its dates have passed, on a connection opened while it was valid: the live tail and WatchAlerts end then, and its connections are ended', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-expiry-'));
    const uri = 'spiffe://verdict.test/ns/ops/sa/short-lived';
    const short = makeShortLivedClient(pki, 'short-lived-admin', uri, 6_000);
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `admin:\n  clients: ['uri:${uri}']\n`);
    const server = await startVerdict({
      policies: join(ROOT, 'policies'),
      db: join(dir, 'decisions.db'),
      args: ['--config', config, '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-client-ca', pki.ca.cert, '--tls-http', '--no-watch'],
    });
    // One kept-alive TLS connection for every request: its handshake is the only time TLS looks at the dates.
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: readFileSync(pki.ca.cert), cert: readFileSync(short.cert), key: readFileSync(short.key) });
    const get = (path: string): Promise<{ status: number; body: string; reused: boolean }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port: server.httpPort, path, agent, headers: { 'sec-fetch-site': 'same-origin' } }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          // A stream cut with its connection closes without an end.
          res.on('close', () => resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end();
      });
    const channel = new loaded.verdict.v1['Admin']!(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createSsl(readFileSync(pki.ca.cert), readFileSync(short.key), readFileSync(short.cert)), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Record<string, Unary> & grpc.Client;
    const status = (): Promise<grpc.ServiceError | null> =>
      new Promise((resolve) => channel['GetPolicyStatus']!.call(channel, {}, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (error) => resolve(error)));
    try {
      expect((await get('/console/api/policy')).status).toBe(200);
      expect(await status()).toBeNull();
      // A WatchAlerts stream, admitted by the certificate while it is valid, ends when it expires.
      const watch = (channel as unknown as { WatchAlerts(request: unknown, metadata: grpc.Metadata): grpc.ClientReadableStream<unknown> }).WatchAlerts({ types: [] }, new grpc.Metadata());
      const watchEnded = new Promise<{ error: grpc.ServiceError; at: number }>((resolve) => watch.on('error', (error: grpc.ServiceError) => resolve({ error, at: Date.now() })));
      watch.on('data', () => undefined);
      // The tail, opened while the certificate is valid, ends when it expires (the page then opens another).
      const tail = await get('/console/api/tail');
      expect(tail.status).toBe(200);
      expect(Date.now()).toBeGreaterThanOrEqual(short.validTo.getTime() - 50);
      // Bounded, so a stream that never ends fails here and the server is still stopped.
      const watchEnd = await Promise.race([watchEnded, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('WatchAlerts did not end within 10 s of the expiry')), Math.max(0, short.validTo.getTime() - Date.now()) + 10_000))]);
      // It ends with its connection, cut at the expiry.
      expect(watchEnd.error.code).toBe(grpc.status.UNAVAILABLE);
      expect(watchEnd.at).toBeGreaterThanOrEqual(short.validTo.getTime() - 50);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      // Both connections were ended at the expiry. A new one resumes no TLS session (which would carry the expired
      // certificate unlooked-at): its full handshake fails.
      await expect(get('/console/api/policy')).rejects.toThrow();
      expect(await status()).toMatchObject({ code: grpc.status.UNAVAILABLE });
    } finally {
      agent.destroy();
      channel.close();
      expect(await server.stop()).toBe(0);
    }
  }, 30_000);
});

describe('admin.clientsFile: revoking an operator certificate on a running server', () => {
  it('admits the identities the file lists, refuses one removed from the next call, ends the streams it opened, and admits nothing through an unusable file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-clients-'));
    const clientsFile = join(dir, 'admin-clients');
    const OPERATOR = 'uri:spiffe://verdict.test/ns/ops/sa/admin';
    // Rewritten the way an operator (or a secret mount) does: a new file renamed over the old one.
    const rewrite = (text: string): void => {
      writeFileSync(join(dir, 'next'), text);
      renameSync(join(dir, 'next'), clientsFile);
    };
    rewrite(`# operators\n${OPERATOR}\ncn:someone-else\n`);
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `admin:\n  clientsFile: ${clientsFile}\n`);
    const db = join(dir, 'decisions.db');
    const server = await startVerdict({
      policies: join(ROOT, 'policies'),
      db,
      args: ['--config', config, '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-client-ca', pki.ca.cert, '--no-watch'],
    });
    const channel = new loaded.verdict.v1['Admin']!(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createSsl(readFileSync(pki.ca.cert), readFileSync(pki.adminClient.key), readFileSync(pki.adminClient.cert)), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Record<string, Unary> & grpc.Client;
    const status = (): Promise<grpc.ServiceError | null> =>
      new Promise((resolve) => channel['GetPolicyStatus']!.call(channel, {}, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (error) => resolve(error)));
    try {
      expect(server.logs.find((l) => l.msg === 'verdict serving')?.admin).toEqual({ token: false, clients: [], clientsFile, loopback: false });
      expect(await status()).toBeNull();
      const watch = (channel as unknown as { WatchAlerts(request: unknown, metadata: grpc.Metadata): grpc.ClientReadableStream<unknown> }).WatchAlerts({ types: [] }, new grpc.Metadata());
      const watchEnded = new Promise<grpc.ServiceError>((resolve) => watch.on('error', (error: grpc.ServiceError) => resolve(error)));
      watch.on('data', () => undefined);
      // A change that keeps the operator leaves its stream open.
      rewrite(`${OPERATOR}\n`);
      expect(await status()).toBeNull();
      // Revoked: the very next call is refused, without waiting for the file to be looked at again.
      rewrite('cn:someone-else\n');
      expect(await status()).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringContaining('list it in admin.clients or admin.clientsFile') as string });
      const ended = await Promise.race([watchEnded, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('WatchAlerts did not end within 5 s of the revocation')), 5_000))]);
      expect(ended).toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringContaining('removed from admin.clientsFile') as string });
      // Listed again, then the file broken: a line that is not an identity admits nobody through the file.
      rewrite(`${OPERATOR}\n`);
      expect(await status()).toBeNull();
      rewrite(`${OPERATOR}\nspiffe://verdict.test/ns/ops/sa/forgot-the-prefix\n`);
      expect(await status()).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      await server.waitForLog((l) => l.msg.startsWith('admin certificates file cannot be used') && String(l.problem).includes(`${clientsFile}:2: "spiffe://verdict.test/ns/ops/sa/forgot-the-prefix" is not a certificate identity`));
      // Every call, admitted or refused, is in the log.
      expect(adminRows(db).map((row) => [row.action, row.effect])).toEqual([
        ['GetPolicyStatus', 'ALLOW'],
        ['WatchAlerts', 'ALLOW'],
        ['GetPolicyStatus', 'ALLOW'],
        ['GetPolicyStatus', 'DENY'],
        ['GetPolicyStatus', 'ALLOW'],
        ['GetPolicyStatus', 'DENY'],
      ]);
    } finally {
      channel.close();
      expect(await server.stop()).toBe(0);
    }
  }, 30_000);

  it('refuses to start with a clients file that is missing or lists something else than identities, naming the file and line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-clients-'));
    const bad = join(dir, 'bad');
    writeFileSync(bad, 'uri:spiffe://ok\n\n  ops-admin\n');
    for (const [file, expected] of [
      [bad, `admin.clientsFile: ${bad}:3: "ops-admin" is not a certificate identity; write one as verdict records callers: uri:…, dns:…, cn:…`],
      [join(dir, 'nope'), `admin.clientsFile: cannot read ${join(dir, 'nope')}: ENOENT`],
    ]) {
      const config = join(dir, 'verdict.yaml');
      writeFileSync(config, `admin:\n  clientsFile: ${file}\n`);
      const result = spawnSync(process.execPath, [BIN, 'serve', '--policies', join(ROOT, 'policies'), '--db', join(dir, 'd.db'), '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'silent', '--config', config], { encoding: 'utf8', timeout: 30_000 });
      expect(result.status).toBe(2);
      expect(result.stderr).toContain(expected);
    }
  });
});
