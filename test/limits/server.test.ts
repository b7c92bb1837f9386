import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';
import { startGatewayVerdict, type GatewayVerdict } from '../gateway/support.js';

// The shipped policies (policies/limits.yaml) on the real server: an API-key caller
// is limited to 100 predict calls a minute with a burst of 20.

const BURST = 20;
const EMISSION_MS = 600;

let server: GatewayVerdict;
let grpcClient: VerdictClient;
beforeAll(async () => {
  server = await startGatewayVerdict();
  grpcClient = verdictClient(server.verdict.grpcPort);
});
afterAll(async () => {
  grpcClient?.close();
  await server?.stop();
});

function forwardAuth(key: string, model = 'fraud-v3'): Promise<Response> {
  return fetch(`http://127.0.0.1:${server.verdict.httpPort}/forward-auth`, {
    headers: { 'x-original-method': 'POST', 'x-original-uri': `/v1/models/${model}/predict`, 'x-api-key': key, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
  });
}

describe('rate limits on the real server', () => {
  it('cuts a stolen key calling predict 1,000 times to its budget, records every refusal with its limit, and leaves others alone', async () => {
    const started = performance.now();
    const statuses: number[] = [];
    const refusals: Response[] = [];
    // Ten callers at once, as a script with a stolen key would.
    for (let round = 0; round < 100; round++) {
      const answers = await Promise.all(Array.from({ length: 10 }, () => forwardAuth(server.keys.dana)));
      for (const answer of answers) {
        statuses.push(answer.status);
        if (answer.status === 429) refusals.push(answer);
        await answer.arrayBuffer();
      }
    }
    const elapsed = performance.now() - started;
    const allowed = statuses.filter((s) => s === 200).length;
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    // At most the burst plus what the elapsed time refilled (and the one call that may land on a refill).
    expect(allowed).toBeGreaterThanOrEqual(BURST);
    expect(allowed).toBeLessThanOrEqual(BURST + Math.ceil(elapsed / EMISSION_MS) + 1);
    expect(refusals.length).toBe(1000 - allowed);

    const refusal = refusals[0]!;
    expect(refusal.headers.get('retry-after')).toBe('1');
    expect(refusal.headers.get('ratelimit-policy')).toBe('"predict-per-key-owner";q=100;w=60');
    expect(refusal.headers.get('ratelimit')).toMatch(/^"predict-per-key-owner";r=0;t=1$/);
    expect(refusal.headers.get('x-verdict-decision-id')).toMatch(/^[0-9a-f-]{36}$/);

    // Every refusal is in the decision log with the limit that fired.
    const logged = queryDecisions(server.db, { principalId: 'dana', reason: 'DENIED_BY_RATE_LIMIT', limit: 1000 });
    expect(logged.length).toBe(refusals.length);
    for (const row of logged) {
      expect(row.details).toMatchObject({ limit: { id: 'predict-per-key-owner', remaining: 0 }, http: { method: 'POST', path: '/v1/models/fraud-v3/predict' } });
      expect(row.errors).toEqual([{ ruleId: 'limit:predict-per-key-owner', message: expect.stringMatching(/^(over limit predict-per-key-owner \(100\/minute, burst 20\)|blocked by limit predict-per-key-owner until \S+Z \(offence 1\)); retry after /) }]);
    }
    // After 20 refusals within a minute the key is blocked for a minute (backoff), and the log says until when.
    const blocks = logged.filter((row) => (row.details as { limit: { blockedUntil?: number } }).limit.blockedUntil !== undefined);
    expect(blocks.length).toBeGreaterThan(900);
    expect(blocks.at(-1)!.details).toMatchObject({ limit: { offences: 1, blockedUntil: expect.any(Number) } });
    // So the stolen key got no more than the burst and what refilled before its block.
    expect(allowed).toBeLessThanOrEqual(BURST + 40);

    // Another principal is unaffected, and is told its own budget.
    const other = await forwardAuth(server.keys.ada);
    expect(other.status).toBe(200);
    expect(other.headers.get('ratelimit')).toBe('"predict-per-key-owner";r=19;t=1');
  });

  it('answers gRPC Check with retry_after, remaining and limit_id', async () => {
    const principal = { id: 'hana', roles: ['data_scientist'], attributes: { org: 'acme', scopes: ['predict'], tier: 'free' } };
    const ask = () =>
      grpcClient.call<{ effect: string; reason: string; retryAfter: { seconds: string; nanos: number } | null; remaining: string; limitId: string }>(
        'Authorization',
        'Check',
        checkRequest({ principal, action: 'predict', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme' } } }),
      );
    // The free tier: 60/minute, burst 10.
    for (let i = 0; i < 10; i++) expect(await ask()).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'predict-per-key-owner', retryAfter: null });
    const refused = await ask();
    expect(refused).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT', limitId: 'predict-per-key-owner', remaining: '0' });
    const wait = Number(refused.retryAfter!.seconds) * 1000 + refused.retryAfter!.nanos / 1e6;
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(1000);
  });

  it('keeps a long principal id (stored by its hash) and a short id spelled as that hash in budgets of their own', async () => {
    const ask = (id: string) =>
      grpcClient.call<{ effect: string; reason: string }>(
        'Authorization',
        'Check',
        checkRequest({ principal: { id, roles: ['data_scientist'], attributes: { org: 'acme', scopes: ['predict'], tier: 'free' } }, action: 'predict', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme' } } }),
      );
    const spent = async (id: string): Promise<void> => {
      for (let i = 0; i < 10; i++) expect((await ask(id)).effect, `${id.slice(0, 12)}… call ${i + 1}`).toBe('EFFECT_ALLOW');
      expect(await ask(id)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
    };
    // Keys over 200 characters are kept as #<sha256 in base64url>; a caller may send that spelling as an id.
    const hashed = (id: string): string => `#${createHash('sha256').update(id).digest('base64url')}`;
    const longVictim = `victim-${'v'.repeat(300)}`;
    await spent(longVictim);
    expect((await ask(hashed(longVictim))).effect).toBe('EFFECT_ALLOW');
    const longOther = `other-${'o'.repeat(300)}`;
    await spent(hashed(longOther));
    expect((await ask(longOther)).effect).toBe('EFFECT_ALLOW');
  });

  it("takes the tier from the principal directory (policies/principals.yaml): a caller cannot claim a better one", async () => {
    type Answer = { effect: string; reason: string; remaining: string; limitId: string; decisionId: string };
    const ask = (principal: { id: string; roles?: string[]; attributes?: Record<string, unknown> }) =>
      grpcClient.call<Answer>('Authorization', 'Check', checkRequest({ principal, action: 'predict', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme' } } }));
    // maya is `tier: free` in the directory (60/minute, burst 10); she claims premium (burst 100).
    const maya = { id: 'maya', roles: ['data_scientist'], attributes: { org: 'acme', scopes: ['predict'], tier: 'premium' } };
    const answers: Answer[] = [];
    for (let i = 0; i < 15; i++) answers.push(await ask(maya));
    expect(answers.filter((a) => a.effect === 'EFFECT_ALLOW').length).toBe(10);
    expect(answers[0]).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'predict-per-key-owner', remaining: '9' });
    expect(answers[10]).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT', limitId: 'predict-per-key-owner' });
    // The row holds the tier decided (and limited) with, and says the claim was overridden.
    const [row] = queryDecisions(server.db, { principalId: 'maya', reason: 'DENIED_BY_RATE_LIMIT', limit: 1 });
    expect(row!.request.principal.attributes).toMatchObject({ tier: 'free' });
    expect((row!.details as { directory: { principal: { overridden: string[] } } }).directory.principal.overridden).toContain('tier');
    // olga is `tier: premium` in the directory: she gets its burst of 100 without claiming anything.
    expect(await ask({ id: 'olga', attributes: { scopes: ['predict'] } })).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'predict-per-key-owner', remaining: '99' });
    // gus is an admin with `tier: standard`: on break-glass, claiming premium still gets the default burst of 20.
    const gus = checkRequest({ principal: { id: 'gus', roles: ['admin'], attributes: { scopes: ['predict'], tier: 'premium' } }, action: 'predict', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme' } }, context: { ticket: 'INC-7' } });
    expect(await grpcClient.call<Answer>('Authorization', 'Check', gus)).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'predict-per-key-owner', remaining: '19' });
  });

  it('takes a daily token budget per organisation from max_tokens', async () => {
    const ask = (id: string, tokens: number) =>
      grpcClient.call<{ effect: string; reason: string; remaining: string; limitId: string }>(
        'Authorization',
        'Check',
        checkRequest({ principal: { id, roles: ['data_scientist'], attributes: { org: 'acme' } }, action: 'predict', resource: { type: 'model', id: 'llm', attributes: { org: 'acme' } }, context: { max_tokens: tokens } }),
      );
    // The budget refills at about 23 tokens a second, so what remains is read within a margin.
    const first = await ask('tina', 1_500_000);
    expect(first).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'tokens-per-org-per-day' });
    expect(Number(first.remaining)).toBeGreaterThanOrEqual(500_000);
    expect(Number(first.remaining)).toBeLessThan(501_000);
    // Another principal of the same organisation shares the budget.
    expect(await ask('tom', 600_000)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT', limitId: 'tokens-per-org-per-day' });
    const last = await ask('tom', 400_000);
    expect(last).toMatchObject({ effect: 'EFFECT_ALLOW' });
    expect(Number(last.remaining)).toBeGreaterThanOrEqual(100_000);
    expect(Number(last.remaining)).toBeLessThan(101_000);
  });
});

describe('Envoy ext_authz on a rate-limited key', () => {
  it('denies with HTTP 429, Retry-After and the RateLimit headers', async () => {
    const definition = loadSync('envoy/service/auth/v3/external_auth.proto', { includeDirs: [fileURLToPath(new URL('../../proto', import.meta.url))], keepCase: true, defaults: true, oneofs: true, enums: String, longs: String });
    const envoy = grpc.loadPackageDefinition(definition) as unknown as { envoy: { service: { auth: { v3: { Authorization: new (a: string, c: grpc.ChannelCredentials) => grpc.Client } } } } };
    const client = new envoy.envoy.service.auth.v3.Authorization(`127.0.0.1:${server.verdict.grpcPort}`, grpc.credentials.createInsecure()) as unknown as Record<string, (req: unknown, cb: (e: Error | null, r: Record<string, unknown>) => void) => void>;
    const check = () =>
      new Promise<Record<string, unknown>>((resolve, reject) =>
        client.Check!.call(client, {
          attributes: { request: { http: { method: 'POST', path: '/v1/models/fraud-v3/predict', headers: { ':method': 'POST', ':path': '/v1/models/fraud-v3/predict', 'x-api-key': server.keys.ada, 'x-model-org': 'acme', 'x-model-classification': 'internal' } } } },
        }, (e, r) => (e ? reject(e) : resolve(r))),
      );
    try {
      // ada spent one call above; the budget refills meanwhile, so ask until refused (within a bound).
      let last: Record<string, unknown> = {};
      let allowed = 0;
      for (let i = 0; i < 3 * BURST; i++) {
        last = await check();
        if (last['denied_response'] !== undefined) break;
        allowed++;
      }
      expect(allowed).toBeGreaterThanOrEqual(BURST - 1);
      expect(allowed).toBeLessThan(2 * BURST);
      const denied = last['denied_response'] as { status: { code: string }; headers: { header: { key: string; value: string } }[] };
      expect(denied.status.code).toBe('TooManyRequests');
      const headers = Object.fromEntries(denied.headers.map((h) => [h.header.key, h.header.value]));
      expect(headers).toMatchObject({ 'retry-after': '1', 'ratelimit-policy': '"predict-per-key-owner";q=100;w=60', ratelimit: '"predict-per-key-owner";r=0;t=1' });
      expect(last['status']).toMatchObject({ code: 8 });
    } finally {
      (client as unknown as grpc.Client).close();
    }
  });
});
