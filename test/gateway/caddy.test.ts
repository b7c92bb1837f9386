import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import { freePort, startGatewayVerdict, startModelServer, type GatewayVerdict } from './support.js';

// Caddy (the Debian package) in front of a stand-in model server, asking verdict
// through forward_auth, configured as docs/gateways.md says, with verdict's
// forwardAuth.style set to caddy. Caddy passes the client's own headers on to the
// auth request: these tests send the attacks a client can make with them.

const CADDY = ['/usr/bin/caddy', 'caddy'].find((bin) => spawnSync(bin, ['version']).status === 0) ?? null;
if (CADDY === null) {
  // CI installs caddy (.ci/run); only a machine without it skips, and says so.
  console.warn('test/gateway/caddy.test.ts: SKIPPED — no caddy binary (Debian: apt-get install caddy)');
}

/** The Caddyfile docs/gateways.md shows, with test ports and everything Caddy keeps in a temporary directory. */
function caddyfile(dir: string, port: number, verdictHttpPort: number, upstreamPort: number): string {
  return `
{
	admin off
	auto_https off
	storage file_system ${dir}/data
}

http://127.0.0.1:${port} {
	# Facts about the model come from the gateway, never from the client.
	map {path} {model_org} {model_env} {model_classification} {
		~(?i)^/v1/models/globex- globex production internal
		~(?i)^/v1/models/churn-  acme   staging    internal
		~(?i)^/v1/models/pricing- acme  production restricted
		default              acme   production internal
	}
	forward_auth 127.0.0.1:${verdictHttpPort} {
		uri /forward-auth
		header_up X-Model-Org {model_org}
		header_up X-Model-Env {model_env}
		header_up X-Model-Classification {model_classification}
		copy_headers X-Verdict-Principal X-Verdict-Decision-Id
	}
	reverse_proxy 127.0.0.1:${upstreamPort}
}
`;
}

describe.skipIf(CADDY === null)('Caddy forward_auth in front of a model server', () => {
  let verdict: GatewayVerdict;
  let upstream: Awaited<ReturnType<typeof startModelServer>>;
  let caddy: ChildProcess;
  let caddyExited: Promise<number | null>;
  let dir: string;
  let base: string;

  beforeAll(async () => {
    verdict = await startGatewayVerdict({ forwardAuthStyle: 'caddy' });
    upstream = await startModelServer();
    dir = mkdtempSync(join(tmpdir(), 'verdict-caddy-'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    writeFileSync(join(dir, 'Caddyfile'), caddyfile(dir, port, verdict.verdict.httpPort, upstream.port));
    caddy = spawn(CADDY!, ['run', '--config', join(dir, 'Caddyfile'), '--adapter', 'caddyfile'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, 'xdg'), XDG_CONFIG_HOME: join(dir, 'xdg') },
    });
    let output = '';
    caddy.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    caddy.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    caddyExited = new Promise((resolve) => caddy.once('exit', (code) => resolve(code)));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (caddy.exitCode !== null) throw new Error(`caddy exited ${caddy.exitCode}: ${output}`);
      try {
        await fetch(`${base}/`);
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`caddy did not start: ${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });

  afterAll(async () => {
    if (caddy && caddy.exitCode === null) {
      caddy.kill('SIGTERM');
      const timer = setTimeout(() => caddy.kill('SIGKILL'), 5000);
      await caddyExited;
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => (upstream ? upstream.server.close(() => resolve()) : resolve()));
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const decisionOf = (response: Response) => getDecision(verdict.db, response.headers.get('x-verdict-decision-id')!)!;

  it('lets an allowed request through, telling the upstream who called and under which decision', async () => {
    const before = upstream.seen.length;
    const response = await fetch(`${base}/v1/models/fraud-v3/predict`, {
      method: 'POST',
      headers: { 'x-api-key': verdict.keys.dana, 'x-verdict-principal': 'mallory', 'content-type': 'application/json' },
      body: '{"inputs":[[1]]}',
    });
    expect(response.status).toBe(200);
    expect(upstream.seen.length).toBe(before + 1);
    const reached = upstream.seen.at(-1)!;
    expect(reached).toMatchObject({ method: 'POST', url: '/v1/models/fraud-v3/predict', body: '{"inputs":[[1]]}' });
    expect(reached.headers['x-verdict-principal']).toBe('dana');
    const row = getDecision(verdict.db, String(reached.headers['x-verdict-decision-id']))!;
    expect(row).toMatchObject({ principalId: 'dana', action: 'predict', resourceId: 'fraud-v3', effect: 'ALLOW' });
    expect(row.request.resource.attributes).toEqual({ org: 'acme', classification: 'internal' });
    // dana's key is rate-limited (policies/limits.yaml): the limit's state is recorded beside the request.
    expect(row.details).toEqual({ http: { method: 'POST', path: '/v1/models/fraud-v3/predict' }, limit: { id: 'predict-per-key-owner', remaining: expect.any(Number), retryAfterMs: 0, backend: 'memory' } });
  });

  it('denies DELETE of a production model, and a DELETE claiming to be a GET in X-Original-Method: 403, never reaching the upstream', async () => {
    const before = upstream.seen.length;
    const plain = await fetch(`${base}/v1/models/fraud-v3`, { method: 'DELETE', headers: { 'x-api-key': verdict.keys.ada } });
    expect(plain.status).toBe(403);
    expect(decisionOf(plain)).toMatchObject({ principalId: 'ada', action: 'delete', ruleIds: ['no-delete-production-models'] });

    // The attack: Caddy passes X-Original-Method on; read first, it made this DELETE a "read" and let it through.
    const disguised = await fetch(`${base}/v1/models/fraud-v3`, { method: 'DELETE', headers: { 'x-api-key': verdict.keys.ada, 'x-original-method': 'GET' } });
    expect(disguised.status).toBe(403);
    const row = decisionOf(disguised);
    expect(row).toMatchObject({ principalId: 'ada', action: 'DELETE', resourceType: 'http_route', resourceId: '/v1/models/fraud-v3', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    expect(row.errors[0]!.message).toMatch(/carries X-Original-Method, which a caddy gateway does not set/);
    expect(row.details).toEqual({ http: { method: 'DELETE', path: '/v1/models/fraud-v3' } });
    expect(upstream.seen.length).toBe(before);
  });

  it('denies GET /v1/admin/secret, and the same GET naming a model in X-Original-URI: 403, never reaching the upstream', async () => {
    const before = upstream.seen.length;
    const plain = await fetch(`${base}/v1/admin/secret`, { headers: { 'x-api-key': verdict.keys.vic } });
    expect(plain.status).toBe(403);
    expect(decisionOf(plain)).toMatchObject({ principalId: 'vic', action: 'GET', resourceType: 'http_route', resourceId: '/v1/admin/secret', reason: 'DENIED_BY_DEFAULT' });

    const disguised = await fetch(`${base}/v1/admin/secret`, { headers: { 'x-api-key': verdict.keys.vic, 'x-original-uri': '/v1/models/fraud-v3' } });
    expect(disguised.status).toBe(403);
    const row = decisionOf(disguised);
    expect(row).toMatchObject({ principalId: 'vic', resourceId: '/v1/admin/secret', reason: 'DENIED_INVALID_REQUEST' });
    expect(row.errors[0]!.message).toMatch(/carries X-Original-URI/);
    expect(upstream.seen.length).toBe(before);
  });

  it('refuses what an upstream may read as another method, caller or path (X_HTTP_Method_Override, ?.method=, X_Verdict_Principal, %25 in a segment): 403, never reaching the upstream', async () => {
    const before = upstream.seen.length;
    // Each is a POST ada may make; an upstream reading the override would act on it as a DELETE.
    const asked: [string, Record<string, string>, RegExp][] = [
      ['/v1/models/fraud-v3/predict', { X_HTTP_Method_Override: 'DELETE' }, /carries x_http_method_override, which an upstream reads as X-HTTP-Method-Override/],
      ['/v1/models/fraud-v3/predict?.method=DELETE', {}, /query parameter _method \(as "\.method"/],
      ['/v1/models/fraud-v3/predict?+_method=DELETE', {}, /query parameter _method \(as " _method"/],
      ['/v1/models/fraud-v3/predict?%20_method=DELETE', {}, /query parameter _method \(as " _method"/],
      ['/v1/models/fraud-v3/predict?_METHOD[]=DELETE', {}, /query parameter _method \(as "_METHOD\[\]"/],
      // Caddy passes underscore headers on: a CGI upstream would read the client's X_Verdict_Principal beside Caddy's X-Verdict-Principal.
      ['/v1/models/fraud-v3/predict', { X_Verdict_Principal: 'olga' }, /carries x_verdict_principal, which an upstream reads as one of the X-Verdict- headers the gateway sets for it/],
      ['/v1/models/fraud-v3/predict', { x_verdict_decision_id: 'made-up' }, /carries x_verdict_decision_id, which an upstream reads as one of the X-Verdict- headers/],
      // Decoded once by verdict (`%63redit-risk-v2`, an unknown model) and once more by an upstream that decodes twice (`credit-risk-v2`).
      ['/v1/models/%2566raud-v3/predict', {}, /encoded "%" in segment 3/],
    ];
    for (const [path, headers, why] of asked) {
      const response = await fetch(`${base}${path}`, { method: 'POST', headers: { 'x-api-key': verdict.keys.ada, 'content-type': 'application/json', ...headers }, body: '{}' });
      expect(response.status, path).toBe(403);
      const row = decisionOf(response);
      expect(row, path).toMatchObject({ principalId: 'ada', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
      expect(row.errors[0]!.message, path).toMatch(why);
    }
    expect(upstream.seen.length).toBe(before);
  });

  it('decides the method and path Caddy forwards, whatever X-Forwarded-Method or -Uri the client sent', async () => {
    // forward_auth sets X-Forwarded-Method and -Uri itself, replacing the client's.
    const response = await fetch(`${base}/v1/models/fraud-v3`, {
      method: 'DELETE',
      headers: { 'x-api-key': verdict.keys.ada, 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/v1/models/churn-v1' },
    });
    expect(response.status).toBe(403);
    expect(decisionOf(response)).toMatchObject({ action: 'delete', resourceId: 'fraud-v3', ruleIds: ['no-delete-production-models'] });
  });

  it("reads the model's facts Caddy sets after 2,000 header lines of the client's (node read only the first 2,000 lines)", async () => {
    // Caddy sends headers sorted by name: the client's 2,000 X-L lines come after X-Forwarded-* and before X-Model-*.
    const padding = Array.from({ length: 2_000 }, () => ['x-l', '']).flat();
    const before = upstream.seen.length;
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${base}/v1/models/churn-v1`, { method: 'DELETE', headers: ['host', '127.0.0.1', 'x-api-key', verdict.keys.ada, ...padding] }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end();
    });
    // Read, they make churn-v1 a staging model of acme, which its admin may delete; unread, nothing may be deleted.
    expect(status).toBe(200);
    expect(upstream.seen.length).toBe(before + 1);
    // The model server (node too) reads only the first 2,000 lines of what Caddy sends it, so the decision id is found in the log.
    const [latest] = queryDecisions(verdict.db, { principalId: 'ada', action: 'delete', limit: 1 });
    expect(latest).toMatchObject({ resourceId: 'churn-v1', effect: 'ALLOW' });
    expect(latest!.request.resource.attributes).toEqual({ org: 'acme', env: 'staging' });
  });

  it("takes the model's facts from Caddy, not from the client", async () => {
    // churn-v1 is a staging model: its organisation's admin may delete it.
    const allowed = await fetch(`${base}/v1/models/churn-v1`, { method: 'DELETE', headers: { 'x-api-key': verdict.keys.ada } });
    expect(allowed.status).toBe(200);
    // A client claiming staging for a production model changes nothing: header_up replaces it.
    const claimed = await fetch(`${base}/v1/models/fraud-v3`, { method: 'DELETE', headers: { 'x-api-key': verdict.keys.ada, 'x-model-env': 'staging' } });
    expect(claimed.status).toBe(403);
    expect(decisionOf(claimed).request.resource.attributes).toEqual({ org: 'acme', env: 'production' });
    // A contractor on a restricted model, claiming it is internal.
    const restricted = await fetch(`${base}/v1/models/pricing-v9/predict`, { method: 'POST', headers: { 'x-api-key': verdict.keys.carl, 'x-model-classification': 'internal' } });
    expect(restricted.status).toBe(403);
    expect(decisionOf(restricted)).toMatchObject({ principalId: 'carl', ruleIds: ['restricted-models-employees-only'] });
  });
});
