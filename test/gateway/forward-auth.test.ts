import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision } from '../../src/decisions/query.js';
import { loadPolicies } from '../../src/policy/load.js';
import { BIN, ROOT, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';
import { ensureBuilt } from '../helpers/verdict-process.js';
import { EXAMPLE_POLICIES, PRINCIPALS, startGatewayVerdict, type GatewayVerdict, type PrincipalName } from './support.js';

// The forward-auth endpoint of the real server, called the way Traefik ForwardAuth
// and Caddy forward_auth call it (X-Forwarded-*), and the way NGINX does (X-Original-*).

describe('forward-auth on the operator HTTP port, forwardAuth.style traefik', () => {
  let server: GatewayVerdict;
  let url: string;
  let base: string;

  beforeAll(async () => {
    server = await startGatewayVerdict({ forwardAuthStyle: 'traefik' });
    base = `http://127.0.0.1:${server.verdict.httpPort}`;
    url = `${base}/forward-auth`;
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('answers Traefik: GET with X-Forwarded-Method and -Uri; 200 with the principal and decision id headers', async () => {
    const response = await fetch(url, {
      headers: {
        'x-forwarded-method': 'POST',
        'x-forwarded-uri': '/v1/models/fraud-detector-v3/predict',
        'x-forwarded-host': 'models.example.com',
        'x-forwarded-for': '198.51.100.1, 203.0.113.9',
        'x-api-key': server.keys.dana,
        'x-model-org': 'acme',
        'x-model-classification': 'internal',
      },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-verdict-principal')).toBe('dana');
    expect(await response.text()).toBe('');
    const row = getDecision(server.db, response.headers.get('x-verdict-decision-id')!)!;
    expect(row).toMatchObject({ principalId: 'dana', action: 'predict', resourceId: 'fraud-detector-v3', effect: 'ALLOW' });
    expect(row.caller).toMatch(/^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):\d+$/);
  });

  it('refuses, and records, a Traefik request that also carries X-Original-*: only a client can have put it there', async () => {
    // Traefik and Caddy pass the client's headers on: preferring X-Original-* would let a client name the request decided.
    const method = await fetch(url, {
      method: 'GET',
      headers: { 'x-forwarded-method': 'DELETE', 'x-forwarded-uri': '/v1/models/fraud-detector-v3', 'x-original-method': 'GET', 'x-api-key': server.keys.ada, 'x-model-org': 'acme', 'x-model-env': 'staging' },
    });
    expect(method.status).toBe(403);
    const body = (await method.json()) as { reason: string; detail: string };
    expect(body.reason).toBe('DENIED_INVALID_REQUEST');
    expect(body.detail).toMatch(/carries X-Original-Method, which a traefik gateway does not set/);
    const row = getDecision(server.db, method.headers.get('x-verdict-decision-id')!)!;
    expect(row).toMatchObject({ principalId: 'ada', action: 'DELETE', resourceType: 'http_route', resourceId: '/v1/models/fraud-detector-v3', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    expect(row.details).toEqual({ http: { method: 'DELETE', path: '/v1/models/fraud-detector-v3' } });

    const uri = await fetch(url, { headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/v1/admin/secret', 'x-original-uri': '/v1/models/fraud-detector-v3', 'x-api-key': server.keys.vic, 'x-model-org': 'acme' } });
    expect(uri.status).toBe(403);
    expect(((await uri.json()) as { detail: string }).detail).toMatch(/carries X-Original-URI/);
  });

  it('ignores a request body', async () => {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/v1/models/fraud-detector-v3/predict', 'x-api-key': server.keys.dana, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
      body: 'x'.repeat(256 * 1024),
    });
    expect(response.status).toBe(200);
  });

  it('answers 403 for a policy deny, without saying which rule, and 401 with the reason for a bad credential', async () => {
    const denied = await fetch(url, { headers: { 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/v1/models/pricing-v9/predict', 'x-api-key': server.keys.carl, 'x-model-org': 'acme', 'x-model-classification': 'secret' } });
    expect(denied.status).toBe(403);
    const decisionId = denied.headers.get('x-verdict-decision-id')!;
    expect(denied.headers.get('x-verdict-principal')).toBeNull();
    expect(await denied.json()).toEqual({ error: 'forbidden', reason: 'DENIED_BY_RULE', decisionId });
    expect(getDecision(server.db, decisionId)!.ruleIds).toEqual(['restricted-models-employees-only']);

    const unauthenticated = await fetch(url, { headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/v1/models/m1', 'x-api-key': server.revokedKey } });
    expect(unauthenticated.status).toBe(401);
    const body = (await unauthenticated.json()) as { error: string; reason: string; detail: string; decisionId: string };
    expect(body).toMatchObject({ error: 'unauthenticated', reason: 'DENIED_UNAUTHENTICATED', decisionId: unauthenticated.headers.get('x-verdict-decision-id') });
    expect(body.detail).toMatch(/^REVOKED: /);
  });

  it('denies, and records, a sub-request that does not say which request it is about', async () => {
    const response = await fetch(url, { headers: { 'x-api-key': server.keys.dana } });
    expect(response.status).toBe(403);
    const body = (await response.json()) as { reason: string; detail: string };
    expect(body.reason).toBe('DENIED_INVALID_REQUEST');
    expect(body.detail).toMatch(/no X-Forwarded-Method header \(forwardAuth.style is traefik/);
    expect(getDecision(server.db, response.headers.get('x-verdict-decision-id')!)).toMatchObject({ principalId: 'dana', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });

    const method = await fetch(url, { headers: { 'x-api-key': server.keys.dana, 'x-forwarded-method': 'P O S T', 'x-forwarded-uri': '/v1/models/m/predict' } });
    expect(method.status).toBe(403);
    expect(((await method.json()) as { detail: string }).detail).toMatch(/not an HTTP method/);
  });

  // The example set's http cases, end to end the way Traefik asks, each principal a real API key.
  describe('the example policy set http cases', () => {
    const loaded = loadPolicies(EXAMPLE_POLICIES);
    if (!loaded.ok) throw new Error('the example policies are invalid');
    const cases = loaded.policies.tests.filter((t) => t.http !== undefined && t.request.principal.id in PRINCIPALS);
    it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, testCase) => {
      const http = testCase.http!;
      const response = await fetch(url, {
        headers: { ...http.headers, 'x-forwarded-method': http.method, 'x-forwarded-uri': http.path, 'x-api-key': server.keys[testCase.request.principal.id as PrincipalName] },
      });
      expect(response.status).toBe(testCase.expect.effect === 'ALLOW' ? 200 : 403);
      const row = getDecision(server.db, response.headers.get('x-verdict-decision-id')!)!;
      if (testCase.expect.reason) expect(row.reason).toBe(testCase.expect.reason);
      if (testCase.expect.rules) expect([...row.ruleIds].sort()).toEqual([...testCase.expect.rules].sort());
    });
  });

  it('keeps /healthz, /readyz and /metrics as they were', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/verdict_/);
    expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(405);
    const missing = await fetch(`${base}/forward-auth/x`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toMatch(/\/forward-auth/);
  });
});

describe('forward-auth with a trusted identity proxy in front (trustedPrincipal)', () => {
  let verdict: VerdictProcess;
  let dir: string;

  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'verdict-trusted-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(
      config,
      stringify({
        trustedPrincipal: { idHeader: 'X-Auth-Request-User', rolesHeader: 'x-auth-request-groups', attributeHeaders: { org: 'x-auth-request-org' } },
        forwardAuth: { style: 'caddy' },
      }),
    );
    verdict = await startVerdict({ policies: EXAMPLE_POLICIES, db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const ask = (headers: Record<string, string>) =>
    fetch(`http://127.0.0.1:${verdict.httpPort}/forward-auth`, {
      headers: { 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/v1/models/fraud-detector-v3/predict', 'x-model-org': 'acme', 'x-model-classification': 'internal', ...headers },
    });

  it('takes the principal, its roles and attributes from the proxy headers', async () => {
    const response = await ask({ 'x-auth-request-user': 'dana', 'x-auth-request-groups': 'data_scientist, analyst', 'x-auth-request-org': 'acme' });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-verdict-principal')).toBe('dana');
    const row = getDecision(join(dir, 'decisions.db'), response.headers.get('x-verdict-decision-id')!)!;
    expect(row.request.principal).toEqual({ roles: ['data_scientist', 'analyst'], attributes: { org: 'acme' } });
  });

  it("refuses an id or attribute header sent twice (a proxy that appends its own beside the client's), recorded", async () => {
    // Sent as separate header lines, as a client's copy and an appending proxy's arrive.
    const raw = (lines: string[][]): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const base = [['host', '127.0.0.1'], ['x-forwarded-method', 'POST'], ['x-forwarded-uri', '/v1/models/fraud-detector-v3/predict'], ['x-model-org', 'acme'], ['x-model-classification', 'internal']];
        const req = httpRequest({ host: '127.0.0.1', port: verdict.httpPort, path: '/forward-auth', headers: [...base, ...lines].flat() });
        req.on('response', (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    for (const [lines, header] of [
      [[['x-auth-request-user', 'x'], ['x-auth-request-user', 'leo'], ['x-auth-request-org', 'acme']], 'x-auth-request-user'],
      [[['x-auth-request-user', 'dana'], ['x-auth-request-org', 'acme'], ['x-auth-request-org', 'evil']], 'x-auth-request-org'],
    ] as const) {
      const answer = await raw(lines.map((l) => [...l]));
      expect(answer.status, `${header}: ${answer.body}`).toBe(401);
      expect((JSON.parse(answer.body) as { detail: string }).detail, header).toMatch(new RegExp(`^MALFORMED_CREDENTIAL: the ${header} header came more than once`));
    }
    // Each header once: decided as before.
    expect((await raw([['x-auth-request-user', 'dana'], ['x-auth-request-groups', 'data_scientist'], ['x-auth-request-org', 'acme']])).status).toBe(200);
  });

  it('is unauthenticated (401) without the id header, and never trusts a credential instead', async () => {
    const response = await ask({ authorization: 'Bearer whatever', 'x-auth-request-groups': 'admin' });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { detail: string }).detail).toMatch(/^MISSING_CREDENTIAL: no x-auth-request-user header/);
  });

  it('refuses to start when authn is configured as well, naming both', () => {
    const config = join(dir, 'both.yaml');
    writeFileSync(config, stringify({ trustedPrincipal: { idHeader: 'remote-user' }, authn: { apiKeys: { db: join(dir, 'keys.db') } } }));
    const result = spawnSync(process.execPath, [BIN, 'serve', '--config', config, '--policies', EXAMPLE_POLICIES, '--db', join(dir, 'x.db')], { cwd: ROOT, encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/trustedPrincipal and authn \(jwt, apiKeys\) exclude each other/);
  });
});

describe('forward-auth with forwardAuth.style nginx (the default)', () => {
  let server: GatewayVerdict;
  let url: string;

  beforeAll(async () => {
    server = await startGatewayVerdict();
    url = `http://127.0.0.1:${server.verdict.httpPort}/forward-auth`;
  });
  afterAll(async () => {
    await server?.stop();
  });

  const nginx = { 'x-original-method': 'DELETE', 'x-original-uri': '/v1/models/churn-v1?reason=cleanup', 'x-real-ip': '203.0.113.9', 'x-model-org': 'acme', 'x-model-env': 'staging' };

  /** The nginx sub-request for ada with `more` header lines after its own, sent as given (fetch would join repeats). */
  const sendRawHeaders = (more: string[]): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const headers = ['host', '127.0.0.1', ...Object.entries({ ...nginx, 'x-api-key': server.keys.ada }).flat(), ...more];
      const req = httpRequest(url, { headers }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });

  it('reads X-Original-Method, X-Original-URI and X-Real-IP, whatever the sub-request itself is', async () => {
    const response = await fetch(url, { method: 'GET', headers: { ...nginx, 'x-api-key': server.keys.ada, 'x-request-id': 'nginx-req-77' } });
    expect(response.status).toBe(200);
    const row = getDecision(server.db, response.headers.get('x-verdict-decision-id')!)!;
    expect(row).toMatchObject({ principalId: 'ada', action: 'delete', resourceId: 'churn-v1', requestId: 'nginx-req-77', ruleIds: ['role:admin:manage-own-org'] });
  });

  it.each([
    ['X-Forwarded-Uri', { 'x-forwarded-uri': '/v1/models/fraud-detector-v3' }, /carries X-Forwarded-Uri, which a nginx gateway does not set/],
    ['X-Forwarded-Method', { 'x-forwarded-method': 'GET' }, /carries X-Forwarded-Method/],
    ['a method override', { 'x-http-method-override': 'GET' }, /carries X-HTTP-Method-Override, which asks the upstream for another method/],
  ] as const)('refuses, and records, a request that also carries %s', async (_label, extra, why) => {
    const response = await fetch(url, { headers: { ...nginx, ...extra, 'x-api-key': server.keys.ada } });
    expect(response.status).toBe(403);
    const body = (await response.json()) as { reason: string; detail: string };
    expect(body.reason).toBe('DENIED_INVALID_REQUEST');
    expect(body.detail).toMatch(why);
    expect(getDecision(server.db, response.headers.get('x-verdict-decision-id')!)).toMatchObject({ principalId: 'ada', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', resourceType: 'http_route', resourceId: '/v1/models/churn-v1' });
  });

  it('refuses a sub-request without X-Original-Method (the gateway must set it), or with it twice', async () => {
    const { 'x-original-method': _method, ...noMethod } = nginx;
    const missing = await fetch(url, { method: 'DELETE', headers: { ...noMethod, 'x-api-key': server.keys.ada } });
    expect(missing.status).toBe(403);
    expect(((await missing.json()) as { detail: string }).detail).toMatch(/no X-Original-Method header \(forwardAuth.style is nginx/);

    const twice = await sendRawHeaders(['x-original-method', 'GET']);
    expect(twice.status).toBe(403);
    expect(twice.body).toMatch(/X-Original-Method header more than once/);
  });

  it('sees the second X-Original-Method behind 2,000 other header lines (node read only the first 2,000 lines)', async () => {
    const padding = Array.from({ length: 2_000 }, () => ['a', '']).flat();
    const padded = await sendRawHeaders([...padding, 'x-original-method', 'GET']);
    expect(padded.status).toBe(403);
    expect(padded.body).toMatch(/X-Original-Method header more than once/);
  });

  it('refuses to start with an unknown style, naming the key and the styles', () => {
    const result = spawnSync(process.execPath, [BIN, 'serve', '--forward-auth-style', 'haproxy', '--policies', EXAMPLE_POLICIES, '--db', join(server.dir, 'x.db')], { cwd: ROOT, encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/flags: forwardAuth.style: expected one of nginx, traefik, caddy/);
    const fromEnv = spawnSync(process.execPath, [BIN, 'serve', '--policies', EXAMPLE_POLICIES, '--db', join(server.dir, 'x.db')], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, VERDICT_FORWARD_AUTH_STYLE: 'envoy' },
    });
    expect(fromEnv.status).toBe(2);
    expect(fromEnv.stderr).toMatch(/environment: forwardAuth.style: expected one of nginx, traefik, caddy/);
  });
});
