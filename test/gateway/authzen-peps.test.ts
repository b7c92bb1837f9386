import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import { NGINX, startModelServer, startVerdictWithPep, startNginx, type GatewayVerdict, type RunningNginx } from './support.js';

// Any authenticated AuthZEN caller used to be able to name any subject: an end
// user's own API key could ask 200 times "may ada predict?" and spend ada's
// rate-limit budget (and backoff) until the real gateway answered ada 429 for a
// minute. Only the callers listed in authzen.peps may ask about others now; this
// attacks a real verdict behind real NGINX with dana's key.

if (NGINX === null) console.warn('test/gateway/authzen-peps.test.ts: SKIPPED — no nginx binary (Debian: apt-get install nginx)');

describe.skipIf(NGINX === null)('AuthZEN: only listed policy enforcement points ask about other subjects', () => {
  let verdict: GatewayVerdict;
  let upstream: Awaited<ReturnType<typeof startModelServer>>;
  let nginx: RunningNginx;
  let gatewayKey: string;

  beforeAll(async () => {
    ({ verdict, pepKey: gatewayKey } = await startVerdictWithPep());
    upstream = await startModelServer();
    nginx = await startNginx(verdict.verdict.httpPort, upstream.port);
  });

  afterAll(async () => {
    await nginx?.stop();
    await new Promise<void>((resolve) => (upstream ? upstream.server.close(() => resolve()) : resolve()));
    await verdict?.stop();
  });

  const authzen = async (key: string, path: string, body: object): Promise<{ status: number; body: Record<string, unknown> }> => {
    const response = await fetch(`http://127.0.0.1:${verdict.verdict.httpPort}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  // What ada's own key carries, so the predict limit (keyed by principal, for principals with scopes) applies.
  const asAda = { type: 'user', id: 'ada', properties: { roles: ['admin'], org: 'acme', scopes: [] } };
  const predict = { action: { name: 'predict' }, resource: { type: 'model', id: 'fraud-detector-v3', properties: { org: 'acme', classification: 'internal' } } };

  it("refuses an end user's questions about someone else (403, recorded as NOT_A_PEP) and they take none of that principal's budget", async () => {
    const many = await authzen(verdict.keys.dana, '/access/v1/evaluations', { subject: asAda, ...predict, evaluations: Array.from({ length: 200 }, () => ({})) });
    expect(many.status).toBe(200);
    const items = many.body.evaluations as { decision: boolean; context: { reason: string; error?: { status: number; message: string }; decision_id: string } }[];
    expect(items).toHaveLength(200);
    for (const item of items) {
      expect(item.decision).toBe(false);
      expect(item.context.reason).toBe('DENIED_UNAUTHENTICATED');
      expect(item.context.error?.status).toBe(403);
      expect(item.context.error?.message).toMatch(/^NOT_A_PEP: api-key:dana may ask only about subject "dana", not "ada"; list the caller in authzen\.peps/);
    }
    const row = getDecision(verdict.db, items[0]!.context.decision_id)!;
    // Recorded as dana's own traffic: rows under ada's id would count toward ada's alerts (and suspension).
    expect(row).toMatchObject({ principalId: 'dana', action: 'predict', caller: 'api-key:dana', effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED' });
    expect(row.errors[0]).toMatchObject({ ruleId: 'authn', message: expect.stringMatching(/^NOT_A_PEP: /) });
    expect(row.details).not.toHaveProperty('limit');

    const one = await authzen(verdict.keys.dana, '/access/v1/evaluation', { subject: asAda, ...predict });
    expect(one.status).toBe(403);
    expect(one.body).toMatchObject({ error: 'forbidden', detail: expect.stringMatching(/^NOT_A_PEP: api-key:dana /), decision_id: expect.any(String) });

    // The victim, through the real gateway, still has its whole burst of 20.
    for (let i = 0; i < 20; i++) {
      const answer = await nginx.send('POST', '/v1/models/fraud-detector-v3/predict', { 'x-api-key': verdict.keys.ada });
      expect(answer.status, `ada's predict ${i + 1} through NGINX`).toBe(200);
    }
    expect(queryDecisions(verdict.db, { principalId: 'ada', reason: 'DENIED_BY_RATE_LIMIT', limit: 10 })).toEqual([]);
  });

  it("records a caller's unreadable questions about someone else as its own, so they count toward no one else's alerts", async () => {
    // An invalid context used to be recorded as DENIED_INVALID_REQUEST under olga's id: 30 of them across models
    // raised probing and reconnaissance alerts on olga, and suspended her where suspension is on.
    const items = Array.from({ length: 30 }, (_, i) => ({ subject: { type: 'user', id: 'olga' }, action: { name: 'predict' }, resource: { type: 'model', id: `m${i % 7}` }, context: 'x' }));
    const many = await authzen(verdict.keys.dana, '/access/v1/evaluations', { evaluations: items });
    expect(many.status).toBe(200);
    for (const item of many.body.evaluations as { decision: boolean; context: { error?: { status: number; message: string } } }[]) {
      expect(item).toMatchObject({ decision: false, context: { error: { status: 403, message: expect.stringMatching(/^NOT_A_PEP: api-key:dana may ask only about subject "dana", not "olga"/) } } });
    }
    const search = await authzen(verdict.keys.dana, '/access/v1/search/resource', { subject: { type: 'user', id: 'olga' }, action: { name: 'predict' }, resource: { type: 'model' }, context: 'x' });
    expect(search.status).toBe(403);
    const unreadable = await authzen(verdict.keys.dana, '/access/v1/evaluation', { subject: { type: 'user', id: 'olga' }, action: { name: 'predict' }, resource: { type: 'model' } });
    expect(unreadable.status).toBe(403);
    expect(queryDecisions(verdict.db, { principalId: 'olga', limit: 100 })).toEqual([]);
    expect(queryDecisions(verdict.db, { principalId: 'dana', reason: 'DENIED_UNAUTHENTICATED', limit: 100 }).length).toBeGreaterThanOrEqual(32);
    // Her own unreadable question is answered 400 as ever, under her own id.
    const own = await authzen(verdict.keys.dana, '/access/v1/evaluation', { subject: { type: 'user', id: 'dana' }, action: { name: 'predict' }, resource: { type: 'model' } });
    expect(own.status).toBe(400);
    expect(getDecision(verdict.db, own.body.decision_id as string)).toMatchObject({ principalId: 'dana', reason: 'DENIED_INVALID_REQUEST' });
  });

  it('refuses a subject search, and a resource or action search about someone else, from a caller that is not listed', async () => {
    const bySubject = await authzen(verdict.keys.dana, '/access/v1/search/subject', { subject: { type: 'user' }, ...predict });
    expect(bySubject.status).toBe(403);
    expect(bySubject.body.detail).toMatch(/^NOT_A_PEP: api-key:dana may ask only about subject "dana", not a search over every subject/);
    for (const [path, body] of [
      ['/access/v1/search/resource', { subject: asAda, action: { name: 'predict' }, resource: { type: 'model' } }],
      ['/access/v1/search/action', { subject: asAda, resource: predict.resource }],
    ] as const) {
      const answer = await authzen(verdict.keys.dana, path, body);
      expect(answer.status, path).toBe(403);
      expect(getDecision(verdict.db, answer.body.decision_id as string)).toMatchObject({ caller: 'api-key:dana', reason: 'DENIED_UNAUTHENTICATED' });
    }
  });

  it("decides a caller's question about itself with its credential's roles and attributes, and refuses the properties it states", async () => {
    // vic's key says viewer; with an incident ticket, claiming admin would be allowed by admin-break-glass.
    const ticket = { context: { ticket: 'INC-1' } };
    const claimed = await authzen(verdict.keys.vic, '/access/v1/evaluation', { subject: { type: 'user', id: 'vic', properties: { roles: ['admin'], org: 'globex' } }, ...predict, ...ticket });
    expect(claimed.status).toBe(403);
    expect(claimed.body.detail).toMatch(/^NOT_A_PEP: api-key:vic is decided with its own credential's roles and attributes and may not state subject\.properties/);
    expect(getDecision(verdict.db, claimed.body.decision_id as string)).toMatchObject({ principalId: 'vic', caller: 'api-key:vic', effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED' });
    const inBatch = await authzen(verdict.keys.vic, '/access/v1/evaluations', { ...predict, ...ticket, evaluations: [{ subject: { type: 'user', id: 'vic', properties: { roles: ['admin'] } } }, { subject: { type: 'user', id: 'vic' } }] });
    const items = inBatch.body.evaluations as { decision: boolean; context: { reason: string; error?: { status: number } } }[];
    expect(items.map((item) => [item.decision, item.context.reason, item.context.error?.status])).toEqual([
      [false, 'DENIED_UNAUTHENTICATED', 403],
      [false, 'DENIED_BY_DEFAULT', undefined],
    ]);
    const bare = await authzen(verdict.keys.vic, '/access/v1/evaluation', { subject: { type: 'user', id: 'vic' }, ...predict, ...ticket });
    expect(bare.status).toBe(200);
    expect(bare.body).toMatchObject({ decision: false });
    const bareRow = getDecision(verdict.db, (bare.body.context as { decision_id: string }).decision_id)!;
    expect(bareRow).toMatchObject({ principalId: 'vic', request: { principal: { roles: ['viewer'], attributes: { org: 'acme' } } } });
    // The type it states is not taken: asking as a service, vic is still what its key says (no type of its own).
    expect(bareRow.request.principal.attributes).not.toHaveProperty('type');
    const asService = await authzen(verdict.keys.vic, '/access/v1/evaluation', { subject: { type: 'service', id: 'vic' }, ...predict, ...ticket });
    expect(asService.status).toBe(200);
    const serviceRow = getDecision(verdict.db, (asService.body.context as { decision_id: string }).decision_id)!;
    expect(serviceRow.request.principal.attributes).toEqual(bareRow.request.principal.attributes);
    // Search about oneself: the same rule; admin's every action is not listed for a viewer.
    const claimedSearch = await authzen(verdict.keys.vic, '/access/v1/search/action', { subject: { type: 'user', id: 'vic', properties: { roles: ['admin'] } }, resource: predict.resource, ...ticket });
    expect(claimedSearch.status).toBe(403);
    const ownActions = await authzen(verdict.keys.vic, '/access/v1/search/action', { subject: { type: 'user', id: 'vic' }, resource: predict.resource, ...ticket });
    expect(ownActions.status).toBe(200);
    expect((ownActions.body.results as { name: string }[]).map((action) => action.name)).not.toContain('delete');

    // dana's key carries data_scientist and org acme: her bare question is allowed on those facts alone.
    const own = await authzen(verdict.keys.dana, '/access/v1/evaluation', { subject: { type: 'user', id: 'dana' }, ...predict });
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ decision: true, context: { reason: 'ALLOWED_BY_RULE' } });
    const ownSearch = await authzen(verdict.keys.dana, '/access/v1/search/action', { subject: { type: 'user', id: 'dana' }, resource: predict.resource });
    expect(ownSearch.status).toBe(200);
    expect((ownSearch.body.results as { name: string }[]).map((action) => action.name)).toContain('predict');
  });

  it('lets a listed PEP ask about anyone, with the properties it states', async () => {
    const self = { type: 'user', id: 'dana', properties: { roles: ['data_scientist'], org: 'acme', employment: 'employee' } };
    // The gateway's question about ada is decided, limits and all: ada spent the burst through NGINX above.
    const asked = await authzen(gatewayKey, '/access/v1/evaluation', { subject: asAda, ...predict });
    expect(asked.status).toBe(200);
    expect(asked.body).toMatchObject({ decision: false, context: { reason: 'DENIED_BY_RATE_LIMIT' } });
    const row = getDecision(verdict.db, (asked.body.context as { decision_id: string }).decision_id)!;
    expect(row).toMatchObject({ principalId: 'ada', caller: 'api-key:model-gateway', details: { limit: { id: 'predict-per-key-owner' } } });
    const aboutDana = await authzen(gatewayKey, '/access/v1/evaluation', { subject: self, ...predict });
    expect(aboutDana.body).toMatchObject({ decision: true, context: { reason: 'ALLOWED_BY_RULE' } });
    const everyone = await authzen(gatewayKey, '/access/v1/search/subject', { subject: { type: 'user' }, ...predict });
    expect(everyone.status).toBe(200);
  });
});
