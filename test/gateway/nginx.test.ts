import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import { NGINX, startGatewayVerdict, startModelServer, startNginx, type GatewayVerdict, type RunningNginx } from './support.js';

// NGINX (the Debian package) in front of a stand-in model server, asking verdict
// through auth_request. Everything listens on 127.0.0.1; nginx runs from its own
// temporary prefix with its own config, pid file and logs, and is stopped at the end.

if (NGINX === null) {
  // CI installs nginx (.ci/run); only a machine without it skips, and says so.
  console.warn('test/gateway/nginx.test.ts: SKIPPED — no nginx binary (Debian: apt-get install nginx)');
}

/** A route that reads a query parameter, and a deny on its value: nothing is exported from the EU region. */
const REPORT_EXPORTS = {
  'report-routes.yaml': [
    'kind: routes',
    'routes:',
    '  - method: GET',
    '    path: /v1/reports/{id}/export',
    '    action: export',
    '    resource: { type: report, id: "{id}" }',
    '    context:',
    '      attributes:',
    '        region: "{query.region}"',
  ].join('\n'),
  'report-rules.yaml': [
    'kind: rules',
    'rules:',
    '  - id: reports-exported',
    '    effect: allow',
    '    actions: [export]',
    '    resource: { type: report }',
    '  - id: no-export-from-eu',
    '    effect: deny',
    '    actions: [export]',
    '    resource: { type: report }',
    '    when: context.attributes.region == "eu"',
  ].join('\n'),
};

describe.skipIf(NGINX === null)('NGINX auth_request in front of a model server', () => {
  let verdict: GatewayVerdict;
  let upstream: Awaited<ReturnType<typeof startModelServer>>;
  let nginx: RunningNginx;
  let base: string;

  beforeAll(async () => {
    verdict = await startGatewayVerdict({ extraPolicies: REPORT_EXPORTS });
    upstream = await startModelServer();
    nginx = await startNginx(verdict.verdict.httpPort, upstream.port);
    base = nginx.base;
  });

  afterAll(async () => {
    await nginx?.stop();
    await new Promise<void>((resolve) => (upstream ? upstream.server.close(() => resolve()) : resolve()));
    await verdict?.stop();
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

  it('refuses a path parameter (";") or a backslash in the path: a Java upstream reads fraud-detector-v3;x=1 as fraud-detector-v3', async () => {
    const before = upstream.seen.length;
    for (const [model, message] of [
      ['fraud-detector-v3;jsessionid=1', /";" in segment 3/],
      ['fraud-detector-v3%3Bv=2', /";" in segment 3/],
    ] as const) {
      const response = await predict(model, { authorization: `Bearer ${verdict.keys.dana}` });
      expect(response.status, model).toBe(403);
      const row = getDecision(verdict.db, response.headers.get('x-verdict-decision-id')!)!;
      expect(row, model).toMatchObject({ principalId: 'dana', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', resourceType: 'http_route' });
      expect(row.errors[0]!.message).toMatch(message);
    }
    expect(upstream.seen.length).toBe(before);
    // The plain spelling is decided as ever.
    expect((await predict('fraud-detector-v3', { authorization: `Bearer ${verdict.keys.dana}` })).status).toBe(200);
  });

  // NGINX passes the client's URI on as it came ($request_uri, proxy_pass): a raw "#" made the decided id
  // credit-risk-v2# (not in the directory, so not restricted) while the upstream read a fragment and served credit-risk-v2.
  it('refuses a raw "#" in the path, which the upstream reads as the start of a fragment', async () => {
    const before = upstream.seen.length;
    const plain = await nginx.send('GET', '/v1/models/credit-risk-v2', { 'x-api-key': verdict.keys.carl });
    expect(plain.status).toBe(403);
    for (const path of ['/v1/models/credit-risk-v2#', '/v1/models/credit-risk-v2#x', '/v1/models/credit-risk-v2#/predict']) {
      const answer = await nginx.send('GET', path, { 'x-api-key': verdict.keys.carl });
      expect(answer.status, path).toBe(403);
      const row = getDecision(verdict.db, answer.headers['x-verdict-decision-id']!)!;
      expect(row, path).toMatchObject({ principalId: 'carl', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
      expect(row.errors[0]!.message, path).toMatch(/raw "#" in segment 3/);
    }
    expect(upstream.seen.length).toBe(before);
  });

  it("refuses a model id the rules would read as unknown but an upstream as credit-risk-v2 (trailing dot or space, encoded ? # or control, fullwidth, zero-width, another case)", async () => {
    const before = upstream.seen.length;
    // Read as an unknown id, the directory's facts (restricted) did not apply and carl, a contractor, was let through.
    for (const [id, why] of [
      ['credit-risk-v2.', /a dot at the end of a name in segment 3/],
      ['credit-risk-v2%20', /whitespace at the start or end of a name in segment 3/],
      ['credit-risk-v2%09', /an encoded control character \(U\+0009\) in segment 3/],
      ['credit-risk-v2%0A', /an encoded control character \(U\+000A\) in segment 3/],
      ['credit-risk-v2%7F', /an encoded control character \(U\+007F\) in segment 3/],
      ['credit-risk-v2%3Fx=1', /an encoded "\?" in segment 3/],
      ['credit-risk-v2%23', /an encoded "#" in segment 3/],
      ['%EF%BD%83redit-risk-v2', /characters Unicode normalisation changes \(read as "credit-risk-v2"\) in segment 3/],
      ['credit-risk-v2%E2%80%8B', /an invisible or blank character in segment 3/],
    ] as const) {
      const answer = await nginx.send('GET', `/v1/models/${id}`, { 'x-api-key': verdict.keys.carl });
      expect(answer.status, id).toBe(403);
      const row = getDecision(verdict.db, answer.headers['x-verdict-decision-id']!)!;
      expect(row, id).toMatchObject({ principalId: 'carl', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
      expect(row.errors[0]!.message, id).toMatch(why);
    }
    expect(upstream.seen.length).toBe(before);
    // Another case of a directory id: an upstream that ignores case serves credit-risk-v2.
    const shouted = await nginx.send('GET', '/v1/models/CREDIT-RISK-V2', { 'x-api-key': verdict.keys.carl });
    expect(shouted.status).toBe(403);
    const shoutedRow = getDecision(verdict.db, shouted.headers['x-verdict-decision-id']!)!;
    expect(shoutedRow).toMatchObject({ principalId: 'carl', reason: 'DENIED_INVALID_REQUEST' });
    expect(shoutedRow.errors[0]!.message).toMatch(/the model "CREDIT-RISK-V2" differs from the directory's "credit-risk-v2" only in case/);
    expect(upstream.seen.length).toBe(before);
    // An encoded é (NFC, unchanged by normalisation) is a name like any other: decided by the rules.
    const accented = await nginx.send('GET', '/v1/models/mod%C3%A8le-v1', { 'x-api-key': verdict.keys.carl });
    expect(getDecision(verdict.db, accented.headers['x-verdict-decision-id']!)!.reason).not.toBe('DENIED_INVALID_REQUEST');
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
      limit: { id: 'predict-per-key-owner', remaining: expect.any(Number), retryAfterMs: 0, backend: 'memory' },
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

  // The upstream reads the query itself: Express's qs makes ["us", "eu"] of region=us&region[]=eu, ASP.NET reads
  // Region and region as one name, older Go, Rack and Python split on ";". verdict decided on "us" and allowed.
  it('refuses a query parameter that a route reads when the upstream could read another copy of it: name[…], another case, a ";"', async () => {
    const exportReport = (query: string) => fetch(`${base}/v1/reports/r1/export?${query}`, { headers: { 'x-api-key': verdict.keys.ada } });
    const allowed = await exportReport('region=us');
    expect(allowed.status).toBe(200);
    expect((await exportReport('region=eu')).status).toBe(403);
    const before = upstream.seen.length;
    for (const query of ['region=us&region[]=eu', 'region=us&region[0]=eu', 'region[]=eu', 'region=us&Region=eu', 'REGION=eu', 'region=us;region=eu']) {
      const response = await exportReport(query);
      expect(response.status, query).toBe(403);
      const row = getDecision(verdict.db, response.headers.get('x-verdict-decision-id')!)!;
      expect(row, query).toMatchObject({ principalId: 'ada', action: 'export', reason: 'DENIED_INVALID_REQUEST' });
      expect(row.errors[0]!.message, query).toMatch(/reads the query parameter region .*: which one counts is ambiguous$/);
    }
    expect(upstream.seen.length).toBe(before);
  });

  it("maps a model's facts from its name without regard to case, as an upstream looking names up without case would read it", async () => {
    const before = upstream.seen.length;
    // Matched with case, PRICING-x was an internal model to NGINX's map, and GLOBEX-x an acme one.
    const restricted = await predict('PRICING-x', { 'x-api-key': verdict.keys.carl });
    expect(restricted.status).toBe(403);
    expect(getDecision(verdict.db, restricted.headers.get('x-verdict-decision-id')!)!.request.resource.attributes).toEqual({ org: 'acme', classification: 'restricted' });
    const foreign = await predict('GLOBEX-x', { authorization: `Bearer ${verdict.keys.dana}` });
    expect(foreign.status).toBe(403);
    expect(getDecision(verdict.db, foreign.headers.get('x-verdict-decision-id')!)!.request.resource.attributes).toEqual({ org: 'globex', classification: 'internal' });
    expect(upstream.seen.length).toBe(before);
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
