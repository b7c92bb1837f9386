import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import { freePort, startGatewayVerdict, startModelServer, type GatewayVerdict } from './support.js';

// NGINX (the Debian package) in front of a stand-in model server, asking verdict
// through auth_request. Everything listens on 127.0.0.1; nginx runs from its own
// temporary prefix with its own config, pid file and logs, and is stopped at the end.

const NGINX = ['/usr/sbin/nginx', 'nginx'].find((bin) => spawnSync(bin, ['-v']).status === 0) ?? null;
if (NGINX === null) {
  // CI installs nginx (.ci/run); only a machine without it skips, and says so.
  console.warn('test/gateway/nginx.test.ts: SKIPPED — no nginx binary (Debian: apt-get install nginx)');
}

/** The config docs/gateways.md shows, with test ports and a temp prefix. */
function nginxConfig(dir: string, port: number, verdictHttpPort: number, upstreamPort: number): string {
  return `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;

  upstream verdict { server 127.0.0.1:${verdictHttpPort}; }
  upstream model_server { server 127.0.0.1:${upstreamPort}; }

  # Facts about the model come from the gateway, never from the client. Keyed on
  # $request_uri: inside the auth sub-request $uri is the auth location's.
  map $request_uri $model_org {
    ~^/v1/models/globex-  globex;
    default               acme;
  }
  map $request_uri $model_env {
    ~^/v1/models/churn-   staging;
    default               production;
  }
  map $request_uri $model_classification {
    ~^/v1/models/pricing- restricted;
    default               internal;
  }

  server {
    listen 127.0.0.1:${port};

    location /v1/ {
      auth_request /_verdict;
      auth_request_set $verdict_principal $upstream_http_x_verdict_principal;
      auth_request_set $verdict_decision_id $upstream_http_x_verdict_decision_id;
      proxy_set_header X-Verdict-Principal $verdict_principal;
      proxy_set_header X-Verdict-Decision-Id $verdict_decision_id;
      proxy_set_header X-Request-Id $request_id;
      add_header X-Verdict-Decision-Id $verdict_decision_id always;
      proxy_pass http://model_server;
      auth_request_set $verdict_status $upstream_status;
      auth_request_set $verdict_retry_after $upstream_http_retry_after;
      auth_request_set $verdict_ratelimit $upstream_http_ratelimit;
      auth_request_set $verdict_ratelimit_policy $upstream_http_ratelimit_policy;
      error_page 500 = @verdict_refused;
    }

    location @verdict_refused {
      if ($verdict_status = 429) {
        add_header X-Verdict-Decision-Id $verdict_decision_id always;
        add_header Retry-After $verdict_retry_after always;
        add_header RateLimit $verdict_ratelimit always;
        add_header RateLimit-Policy $verdict_ratelimit_policy always;
        return 429 '{"error":"rate limited"}';
      }
      return 500;
    }

    location = /_verdict {
      internal;
      proxy_pass http://verdict/forward-auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Request-Id $request_id;
      proxy_set_header X-Model-Org $model_org;
      proxy_set_header X-Model-Env $model_env;
      proxy_set_header X-Model-Classification $model_classification;
    }
  }
}
`;
}

describe.skipIf(NGINX === null)('NGINX auth_request in front of a model server', () => {
  let verdict: GatewayVerdict;
  let upstream: Awaited<ReturnType<typeof startModelServer>>;
  let nginx: ChildProcess;
  let nginxExited: Promise<number | null>;
  let dir: string;
  let base: string;

  beforeAll(async () => {
    verdict = await startGatewayVerdict();
    upstream = await startModelServer();
    dir = mkdtempSync(join(tmpdir(), 'verdict-nginx-'));
    mkdirSync(join(dir, 'tmp'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, verdict.verdict.httpPort, upstream.port));
    nginx = spawn(NGINX!, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    nginx.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    nginx.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    nginxExited = new Promise((resolve) => nginx.once('exit', (code) => resolve(code)));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (nginx.exitCode !== null) throw new Error(`nginx exited ${nginx.exitCode}: ${output}\n${readIfExists(join(dir, 'error.log'))}`);
      try {
        await fetch(`${base}/`);
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`nginx did not start: ${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });

  afterAll(async () => {
    if (nginx && nginx.exitCode === null) {
      nginx.kill('SIGQUIT');
      const timer = setTimeout(() => nginx.kill('SIGKILL'), 5000);
      await nginxExited;
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => (upstream ? upstream.server.close(() => resolve()) : resolve()));
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const predict = (model: string, headers: Record<string, string>, body = '{"inputs":[[1,2,3]]}') =>
    fetch(`${base}/v1/models/${model}/predict`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

  it('answers a rate-limited predict 429 with Retry-After and the RateLimit headers; it never reaches the model server', async () => {
    const before = upstream.seen.length;
    let response: Response | null = null;
    let allowed = 0;
    // ada's key: 100/minute with a burst of 20 (policies/limits.yaml); ask until refused, within a bound.
    for (let i = 0; i < 60; i++) {
      response = await predict('fraud-detector-v3', { 'x-api-key': verdict.keys.ada });
      if (response.status !== 200) break;
      await response.arrayBuffer();
      allowed++;
    }
    expect(allowed).toBeGreaterThanOrEqual(20);
    expect(allowed).toBeLessThan(40);
    expect(response!.status).toBe(429);
    expect(response!.headers.get('retry-after')).toBe('1');
    expect(response!.headers.get('ratelimit-policy')).toBe('"predict-per-key-owner";q=100;w=60');
    expect(response!.headers.get('ratelimit')).toBe('"predict-per-key-owner";r=0;t=1');
    expect(await response!.json()).toEqual({ error: 'rate limited' });
    expect(upstream.seen.length).toBe(before + allowed);
    const row = getDecision(verdict.db, response!.headers.get('x-verdict-decision-id')!)!;
    expect(row).toMatchObject({ principalId: 'ada', action: 'predict', effect: 'DENY', reason: 'DENIED_BY_RATE_LIMIT', details: { limit: { id: 'predict-per-key-owner' } } });
  });

  it('lets an allowed predict reach the model server, telling it who called and under which decision', async () => {
    const before = upstream.seen.length;
    const response = await predict('fraud-detector-v3', { authorization: `Bearer ${verdict.keys.dana}`, 'x-verdict-principal': 'mallory' });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ prediction: 0.97, model: '/v1/models/fraud-detector-v3/predict' });
    expect(upstream.seen.length).toBe(before + 1);
    const reached = upstream.seen.at(-1)!;
    expect(reached.body).toBe('{"inputs":[[1,2,3]]}');
    // verdict's answer replaces whatever the client claimed.
    expect(reached.headers['x-verdict-principal']).toBe('dana');
    const decisionId = String(reached.headers['x-verdict-decision-id']);
    expect(response.headers.get('x-verdict-decision-id')).toBe(decisionId);

    const row = getDecision(verdict.db, decisionId)!;
    expect(row).toMatchObject({ principalId: 'dana', action: 'predict', resourceType: 'model', resourceId: 'fraud-detector-v3', effect: 'ALLOW' });
    expect(row.caller).toMatch(/^127\.0\.0\.1:\d+$/); // nginx, the gateway that asked
    expect(row.requestId).toBe(reached.headers['x-request-id']);
    expect(row.request.resource.attributes).toEqual({ org: 'acme', classification: 'internal' });
  });

  it('stops a forbidden predict with 403: it never reaches the model server, and the client gets the decision id', async () => {
    const before = upstream.seen.length;
    const response = await predict('fraud-detector-v3', { 'x-api-key': verdict.keys.vic });
    expect(response.status).toBe(403);
    expect(upstream.seen.length).toBe(before);
    const decisionId = response.headers.get('x-verdict-decision-id')!;
    expect(getDecision(verdict.db, decisionId)).toMatchObject({ principalId: 'vic', action: 'predict', effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
    expect(getDecision(verdict.db, decisionId)!.caller).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it("takes the model's organisation from the gateway, not from the client", async () => {
    const before = upstream.seen.length;
    // dana (acme) claims the globex model is acme's; nginx's map says otherwise.
    const response = await predict('globex-ranker', { authorization: `Bearer ${verdict.keys.dana}`, 'x-model-org': 'acme' });
    expect(response.status).toBe(403);
    expect(upstream.seen.length).toBe(before);
    const row = getDecision(verdict.db, response.headers.get('x-verdict-decision-id')!)!;
    expect(row).toMatchObject({ principalId: 'dana', resourceId: 'globex-ranker', effect: 'DENY' });
    expect(row.request.resource.attributes).toEqual({ org: 'globex', classification: 'internal' });
  });

  it.each([
    ['a missing credential', {}, /^MISSING_CREDENTIAL/],
    ['an unknown API key', { 'x-api-key': 'vk_doesnotexist00000000000000000000000000' }, /^(UNKNOWN_KEY|MALFORMED_CREDENTIAL)/],
    ['a revoked API key', 'revoked', /^REVOKED/],
    ['a garbled bearer token', { authorization: 'Bearer not.a.jwt' }, /^MALFORMED_CREDENTIAL/],
  ] as const)('answers %s with 401, never reaching the model server, and records why', async (_label, credential, why) => {
    const before = upstream.seen.length;
    const headers = credential === 'revoked' ? { 'x-api-key': verdict.revokedKey } : credential;
    const response = await predict('fraud-detector-v3', headers);
    expect(response.status).toBe(401);
    expect(upstream.seen.length).toBe(before);
    const row = getDecision(verdict.db, response.headers.get('x-verdict-decision-id')!)!;
    expect(row).toMatchObject({ principalId: '', action: 'predict', resourceId: 'fraud-detector-v3', effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED' });
    expect(row.errors[0]!.message).toMatch(why);
    expect(row.caller).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('routes GET and DELETE too, and denies a path no route knows', async () => {
    const read = await fetch(`${base}/v1/models/fraud-detector-v3`, { headers: { 'x-api-key': verdict.keys.vic } });
    expect(read.status).toBe(200);
    // nginx's maps say churn-v1 is acme's staging model: its admin may delete it; production models nobody deletes.
    const remove = await fetch(`${base}/v1/models/churn-v1`, { method: 'DELETE', headers: { 'x-api-key': verdict.keys.ada } });
    expect(remove.status).toBe(200);
    const production = await fetch(`${base}/v1/models/fraud-detector-v3`, { method: 'DELETE', headers: { 'x-api-key': verdict.keys.ada, 'x-model-env': 'staging' } });
    expect(production.status).toBe(403);
    expect(getDecision(verdict.db, production.headers.get('x-verdict-decision-id')!)).toMatchObject({ ruleIds: ['no-delete-production-models'] });
    const unknown = await fetch(`${base}/v1/secrets`, { headers: { 'x-api-key': verdict.keys.ada } });
    expect(unknown.status).toBe(403);
    expect(getDecision(verdict.db, unknown.headers.get('x-verdict-decision-id')!)).toMatchObject({
      principalId: 'ada',
      action: 'GET',
      resourceType: 'http_route',
      resourceId: '/v1/secrets',
      reason: 'DENIED_BY_DEFAULT',
    });
  });

  it("refuses a percent-encoded unreserved character: NGINX's map reads the raw path, the upstream decodes it", async () => {
    // %67 is "g": to NGINX's map this is not a globex- model (so org=acme), to the upstream it is globex-secret.
    const before = upstream.seen.length;
    const response = await predict('%67lobex-secret', { authorization: `Bearer ${verdict.keys.dana}` });
    expect(response.status).toBe(403);
    expect(upstream.seen.length).toBe(before);
    const row = getDecision(verdict.db, response.headers.get('x-verdict-decision-id')!)!;
    expect(row).toMatchObject({ principalId: 'dana', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', resourceType: 'http_route' });
    expect(row.errors[0]!.message).toMatch(/encoded unreserved character \("%67"/);
    expect(row.details).toEqual({ http: { method: 'POST', path: '/v1/models/%67lobex-secret/predict' } });
    // The plain spelling is the globex model, which dana (acme) may not call.
    expect((await predict('globex-secret', { authorization: `Bearer ${verdict.keys.dana}` })).status).toBe(403);
  });

  it("decides the request NGINX forwards, not the one a client names in X-Original-* or X-Forwarded-* headers", async () => {
    // proxy_set_header replaces the client's X-Original-Method: the DELETE is what is decided (and denied).
    const before = upstream.seen.length;
    const method = await fetch(`${base}/v1/models/fraud-detector-v3`, { method: 'DELETE', headers: { 'x-api-key': verdict.keys.ada, 'x-original-method': 'GET' } });
    expect(method.status).toBe(403);
    expect(getDecision(verdict.db, method.headers.get('x-verdict-decision-id')!)).toMatchObject({ action: 'delete', ruleIds: ['no-delete-production-models'] });
    const uri = await fetch(`${base}/v1/admin/secret`, { headers: { 'x-api-key': verdict.keys.vic, 'x-original-uri': '/v1/models/fraud-detector-v3' } });
    expect(uri.status).toBe(403);
    expect(getDecision(verdict.db, uri.headers.get('x-verdict-decision-id')!)).toMatchObject({ action: 'GET', resourceType: 'http_route', resourceId: '/v1/admin/secret' });
    // The other family, which NGINX passes on untouched, is refused outright (forwardAuth.style: nginx).
    const forwarded = await fetch(`${base}/v1/admin/secret`, { headers: { 'x-api-key': verdict.keys.vic, 'x-forwarded-uri': '/v1/models/fraud-detector-v3', 'x-forwarded-method': 'GET' } });
    expect(forwarded.status).toBe(403);
    const row = getDecision(verdict.db, forwarded.headers.get('x-verdict-decision-id')!)!;
    expect(row).toMatchObject({ principalId: 'vic', reason: 'DENIED_INVALID_REQUEST', resourceId: '/v1/admin/secret' });
    expect(row.errors[0]!.message).toMatch(/carries X-Forwarded-(Method|Uri), which a nginx gateway does not set/);
    expect(upstream.seen.length).toBe(before);
  });

  it("records every gateway decision's HTTP method and path in details.http", async () => {
    const allowed = await predict('fraud-detector-v3', { authorization: `Bearer ${verdict.keys.dana}` });
    // dana's key is rate-limited (policies/limits.yaml): the limit's state is recorded beside the request.
    expect(getDecision(verdict.db, allowed.headers.get('x-verdict-decision-id')!)!.details).toEqual({
      http: { method: 'POST', path: '/v1/models/fraud-detector-v3/predict' },
      limit: { id: 'predict-per-key-owner', remaining: expect.any(Number), retryAfterMs: 0 },
    });
    const unknown = await fetch(`${base}/v1/secrets?x=1`, { headers: { 'x-api-key': verdict.keys.ada } });
    expect(getDecision(verdict.db, unknown.headers.get('x-verdict-decision-id')!)!.details).toEqual({ http: { method: 'GET', path: '/v1/secrets' } });
    const unauthenticated = await predict('fraud-detector-v3', {});
    expect(getDecision(verdict.db, unauthenticated.headers.get('x-verdict-decision-id')!)!.details).toEqual({ http: { method: 'POST', path: '/v1/models/fraud-detector-v3/predict' } });
  });

  it('refuses a request whose header that a route reads is repeated (NGINX passes both copies on)', async () => {
    // The delete route reads x-incident-ticket, which the gateway does not set: the client's copies reach verdict.
    const before = upstream.seen.length;
    const response = await rawRequest(`${base}/v1/models/churn-v1`, 'DELETE', ['host', '127.0.0.1', 'x-api-key', verdict.keys.ada, 'x-incident-ticket', 'INC-1', 'x-incident-ticket', 'INC-2']);
    expect(response.status).toBe(403);
    expect(upstream.seen.length).toBe(before);
    const row = getDecision(verdict.db, response.decisionId)!;
    expect(row).toMatchObject({ principalId: 'ada', action: 'delete', reason: 'DENIED_INVALID_REQUEST' });
    expect(row.errors[0]!.message).toMatch(/x-incident-ticket header more than once/);
  });

  it("takes the model's classification from the gateway: a contractor claiming a restricted model is internal is denied", async () => {
    const before = upstream.seen.length;
    const response = await predict('pricing-v9', { 'x-api-key': verdict.keys.carl, 'x-model-classification': 'internal' });
    expect(response.status).toBe(403);
    expect(upstream.seen.length).toBe(before);
    const row = getDecision(verdict.db, response.headers.get('x-verdict-decision-id')!)!;
    expect(row).toMatchObject({ principalId: 'carl', reason: 'DENIED_BY_RULE', ruleIds: ['restricted-models-employees-only'] });
    expect(row.request.resource.attributes).toEqual({ org: 'acme', classification: 'restricted' });
  });

  it('has every answer in the decision log, each with nginx as its caller', () => {
    const rows = queryDecisions(verdict.db, { limit: 1000 });
    expect(rows.length).toBeGreaterThanOrEqual(10);
    for (const row of rows) expect(row.caller).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(new Set(rows.map((r) => r.effect))).toEqual(new Set(['ALLOW', 'DENY']));
  });
});

/** One request with raw header lines (a name may repeat), as fetch cannot send. */
function rawRequest(url: string, method: string, rawHeaders: string[]): Promise<{ status: number; decisionId: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: rawHeaders }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, decisionId: String(res.headers['x-verdict-decision-id']) }));
    });
    req.on('error', reject);
    req.end();
  });
}

function readIfExists(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
