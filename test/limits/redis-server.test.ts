import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { startGatewayVerdict, type GatewayVerdict } from '../gateway/support.js';
import { checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictProcess } from '../helpers/verdict-process.js';
import { startRedis, type RedisProcess } from '../helpers/redis.js';

// Real verdict servers keeping their budgets in one real redis-server.

const BURST = 20;
const EMISSION_MS = 600;

let redis: RedisProcess;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.close();
});

function forwardAuth(server: GatewayVerdict, key: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${server.verdict.httpPort}/forward-auth`, {
    headers: { 'x-original-method': 'POST', 'x-original-uri': '/v1/models/fraud-v3/predict', 'x-api-key': key, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
  });
}

describe('two verdict servers sharing one Redis', () => {
  let a: GatewayVerdict;
  let b: GatewayVerdict;
  beforeAll(async () => {
    const config = { limits: { backend: 'redis', redis: { url: redis.url, keyPrefix: 'shared:' }, timeoutMs: 500, replicas: 2 } };
    [a, b] = await Promise.all([startGatewayVerdict({ config }), startGatewayVerdict({ config })]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('cut a stolen key calling predict 1,000 times to one global budget, and record every refusal with its limit', async () => {
    const started = performance.now();
    const statuses: number[] = [];
    let firstRefusal: Response | null = null;
    // Ten callers at once, half through each server, as a script with a stolen key would.
    for (let round = 0; round < 100; round++) {
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => forwardAuth(i % 2 === 0 ? a : b, i % 2 === 0 ? a.keys.dana : b.keys.dana)));
      for (const answer of answers) {
        statuses.push(answer.status);
        if (answer.status === 429) firstRefusal ??= answer;
        await answer.arrayBuffer();
      }
    }
    const elapsed = performance.now() - started;
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    const allowed = statuses.filter((s) => s === 200).length;
    // One budget for both: the burst plus what the elapsed time refilled, not twice that.
    expect(allowed).toBeGreaterThanOrEqual(BURST);
    expect(allowed).toBeLessThanOrEqual(BURST + Math.ceil(elapsed / EMISSION_MS) + 1);
    expect(firstRefusal!.headers.get('retry-after')).toBe('1');
    expect(firstRefusal!.headers.get('ratelimit-policy')).toBe('"predict-per-key-owner";q=100;w=60');

    // Every refusal, on either server, is in that server's log with the limit that fired.
    const logged = [...queryDecisions(a.db, { principalId: 'dana', reason: 'DENIED_BY_RATE_LIMIT', limit: 1000 }), ...queryDecisions(b.db, { principalId: 'dana', reason: 'DENIED_BY_RATE_LIMIT', limit: 1000 })];
    expect(logged.length).toBe(1000 - allowed);
    for (const row of logged) expect(row.details).toMatchObject({ limit: { id: 'predict-per-key-owner', remaining: 0 } });
    // The budget's refusals say Redis decided (a repeat offender's block is this server's own record).
    expect(logged.filter((row) => (row.details as { limit: { backend?: string } }).limit.backend === 'redis').length).toBeGreaterThan(0);
    const allows = [...queryDecisions(a.db, { principalId: 'dana', effect: 'ALLOW', limit: 1000 }), ...queryDecisions(b.db, { principalId: 'dana', effect: 'ALLOW', limit: 1000 })];
    expect(allows.length).toBe(allowed);
    for (const row of allows) expect(row.details).toMatchObject({ limit: { id: 'predict-per-key-owner', backend: 'redis' } });

    // Another principal is unaffected, on either server.
    const other = await forwardAuth(b, b.keys.ada);
    expect(other.status).toBe(200);
    expect(other.headers.get('ratelimit')).toBe('"predict-per-key-owner";r=19;t=1');
  });

  // The budgets live in Redis here, under the same storeKey as in memory: a long id (kept by its hash)
  // and a short id spelled as the old hashed form must each have a budget of their own in Redis too.
  it('keeps a long principal id (stored by its hash) and a short id spelled as that hash in budgets of their own', async () => {
    const client = verdictClient(a.verdict.grpcPort);
    try {
      const ask = (id: string) =>
        client.call<{ effect: string; reason: string; limitId: string }>(
          'Authorization',
          'Check',
          checkRequest({ principal: { id, roles: ['data_scientist'], attributes: { org: 'acme', scopes: ['predict'], tier: 'free' } }, action: 'predict', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme' } } }),
        );
      const spend = async (id: string): Promise<void> => {
        // The free tier's burst is 10; the 11th call within the second is refused by Redis's count.
        for (let i = 0; i < 10; i++) expect((await ask(id)).effect, `${id.slice(0, 12)}… call ${i + 1}`).toBe('EFFECT_ALLOW');
        expect(await ask(id)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
      };
      const hashed = (id: string): string => `#${createHash('sha256').update(id).digest('base64url')}`;
      const longVictim = `redis-victim-${'v'.repeat(300)}`;
      await spend(longVictim);
      // Redis counted it (not this server's own memory).
      const refused = queryDecisions(a.db, { principalId: longVictim, reason: 'DENIED_BY_RATE_LIMIT', limit: 10 });
      expect(refused.map((row) => (row.details as { limit: { backend?: string } }).limit.backend)).toEqual(['redis']);
      expect((await ask(hashed(longVictim))).effect).toBe('EFFECT_ALLOW');
      const longOther = `redis-other-${'o'.repeat(300)}`;
      await spend(hashed(longOther));
      expect((await ask(longOther)).effect).toBe('EFFECT_ALLOW');
    } finally {
      client.close();
    }
  });

  it('shows the backend in /readyz and /metrics', async () => {
    const ready = (await (await fetch(`http://127.0.0.1:${a.verdict.httpPort}/readyz`)).json()) as { limits: unknown };
    expect(ready.limits).toMatchObject({ backend: 'redis', healthy: true, timeoutMs: 500, replicas: 2 });
    const metrics = await (await fetch(`http://127.0.0.1:${a.verdict.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^verdict_rate_limit_backend_up 1$/m);
    expect(metrics).toMatch(/^verdict_rate_limit_backend_failures_total 0$/m);
  });
});

const SHARED_POLICIES = `
kind: rules
rules:
  - { id: everyone-predicts, effect: allow, actions: [predict], resource: { type: model } }
---
kind: limits
limits:
  - { id: shared-budget, actions: [predict], rate: 10/second, burst: 5 }
`;

describe('two verdict servers sharing one Redis, over a fixed interval', () => {
  const INTERVAL_MS = 2000;
  const RATE_PER_SECOND = 10;
  const SHARED_BURST = 5;
  let dir: string;
  let servers: VerdictProcess[] = [];
  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'verdict-redis-interval-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'policies.yaml'), SHARED_POLICIES);
    writeFileSync(join(dir, 'verdict.yaml'), stringify({ limits: { backend: 'redis', redis: { url: redis.url, keyPrefix: 'interval:' }, timeoutMs: 1000, replicas: 2 } }));
    servers = await Promise.all(['a', 'b'].map((name) => startVerdict({ policies: join(dir, 'policies'), db: join(dir, `${name}.db`), args: ['--config', join(dir, 'verdict.yaml'), '--no-watch'] })));
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('allow in total at most the limit over the interval plus one burst, not one budget each', async () => {
    // Four callers on each server ask for one key without pause until the interval is over.
    const clients = servers.flatMap((s) => Array.from({ length: 4 }, () => verdictClient(s.grpcPort, { ownConnection: true })));
    const allowedBy = [0, 0];
    let asked = 0;
    try {
      const started = performance.now();
      await Promise.all(
        clients.map(async (client, i) => {
          while (performance.now() - started < INTERVAL_MS) {
            const answer = await client.call<{ effect: string; limitId: string }>('Authorization', 'Check', checkRequest({ principal: { id: 'stolen' }, action: 'predict', resource: { type: 'model', id: 'm' } }));
            asked++;
            expect(answer.limitId).toBe('shared-budget');
            if (answer.effect === 'EFFECT_ALLOW') allowedBy[i < 4 ? 0 : 1]!++;
          }
        }),
      );
      const elapsed = performance.now() - started;
      const allowed = allowedBy[0]! + allowedBy[1]!;
      // The bound: one burst plus the rate over the interval the calls ran in (at least INTERVAL_MS; a call
      // that began inside it may end a little after), plus the one call that may land exactly on a refill.
      const bound = SHARED_BURST + Math.ceil((elapsed / 1000) * RATE_PER_SECOND) + 1;
      expect(asked).toBeGreaterThan(2 * bound);
      expect(allowed).toBeGreaterThanOrEqual(SHARED_BURST);
      expect(allowed).toBeLessThanOrEqual(bound);
      // Both servers took from the one budget, and each row says Redis decided.
      expect(allowedBy[0]).toBeGreaterThan(0);
      expect(allowedBy[1]).toBeGreaterThan(0);
      const rows = servers.flatMap((_, i) => queryDecisions(join(dir, `${'ab'[i]}.db`), { principalId: 'stolen', effect: 'ALLOW', limit: 10_000 }));
      expect(rows.length).toBe(allowed);
      for (const row of rows) expect(row.details).toMatchObject({ limit: { id: 'shared-budget', backend: 'redis' } });
    } finally {
      for (const client of clients) client.close();
    }
  });
});

const POLICIES = `
kind: rules
rules:
  - { id: everyone-predicts, effect: allow, actions: [predict], resource: { type: model } }
---
kind: limits
limits:
  - { id: fail-deny, actions: [predict], rate: 60/minute, burst: 3, onBackendFailure: deny, when: 'context.attributes.mode == "deny"' }
  - { id: fail-allow, actions: [predict], rate: 60/minute, burst: 3, onBackendFailure: allow, when: 'context.attributes.mode == "allow"' }
  - { id: fail-local, actions: [predict], rate: 60/minute, burst: 4, onBackendFailure: local, when: 'context.attributes.mode == "local"' }
`;

describe('Redis stopped mid-test, then started again', () => {
  let dir: string;
  let verdict: VerdictProcess;
  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'verdict-redis-fail-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'policies.yaml'), POLICIES);
    writeFileSync(join(dir, 'verdict.yaml'), stringify({ limits: { backend: 'redis', redis: { url: redis.url, keyPrefix: 'fail:' }, timeoutMs: 50, retryMs: 300, replicas: 2 } }));
    verdict = await startVerdict({ policies: join(dir, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', join(dir, 'verdict.yaml'), '--no-watch'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers every check within its deadline in each onBackendFailure mode, reports it, and counts in Redis again once it is back', async () => {
    const client = verdictClient(verdict.grpcPort);
    type Answer = { effect: string; reason: string; limitId: string };
    // A generous deadline on each call: a check never waits on a stopped Redis past its timeout (50 ms) by much.
    const ask = (principal: string, mode: string) =>
      client.call<Answer>('Authorization', 'Check', checkRequest({ principal: { id: principal }, action: 'predict', resource: { type: 'model', id: 'm' }, context: { mode } }), { deadline: Date.now() + 2000 });
    try {
      expect(await ask('kim', 'local')).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'fail-local' });
      // kit spends fail-local's whole burst (4) in Redis before it stops.
      const spent = [];
      for (let i = 0; i < 5; i++) spent.push((await ask('kit', 'local')).effect);
      expect(spent).toEqual(['EFFECT_ALLOW', 'EFFECT_ALLOW', 'EFFECT_ALLOW', 'EFFECT_ALLOW', 'EFFECT_DENY']);
      redis.pause();
      try {
        // The fallback starts kit where Redis left it: spent, so no fresh share of the burst.
        expect(await ask('kit', 'local')).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT', limitId: 'fail-local' });
        expect(await ask('kim', 'deny')).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR' });
        expect(await ask('kim', 'allow')).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'fail-allow' });
        // local: this replica's share of the burst (4 over 2 replicas), then refused.
        const local = [await ask('lou', 'local'), await ask('lou', 'local'), await ask('lou', 'local')];
        expect(local.map((a) => a.effect)).toEqual(['EFFECT_ALLOW', 'EFFECT_ALLOW', 'EFFECT_DENY']);
        expect(local[2]).toMatchObject({ reason: 'REASON_DENIED_BY_RATE_LIMIT', limitId: 'fail-local' });
        const ready = (await (await fetch(`http://127.0.0.1:${verdict.httpPort}/readyz`)).json()) as { status: string; limits: { healthy: boolean; lastError: string } };
        expect(ready).toMatchObject({ status: 'ready', limits: { backend: 'redis', healthy: false } });
        const metrics = await (await fetch(`http://127.0.0.1:${verdict.httpPort}/metrics`)).text();
        expect(metrics).toMatch(/^verdict_rate_limit_backend_up 0$/m);
        expect(metrics).toMatch(/^verdict_rate_limit_fallback_total\{backend="local"\} 4$/m);
        expect(metrics).toMatch(/^verdict_rate_limit_fallback_total\{backend="open"\} 1$/m);
      } finally {
        redis.resume();
      }
      // Stopped for good, then started again on the same port (empty: nothing was saved).
      await redis.stop();
      expect(await ask('max', 'deny')).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR' });
      expect(await ask('max', 'allow')).toMatchObject({ effect: 'EFFECT_ALLOW' });
      await redis.start();
      let back: Answer | null = null;
      for (let i = 0; i < 50 && back?.effect !== 'EFFECT_ALLOW'; i++) {
        back = await ask('ned', 'deny');
        if (back.effect !== 'EFFECT_ALLOW') await new Promise((r) => setTimeout(r, 100));
      }
      expect(back).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'fail-deny' });
      // Counting resumed in Redis: ned's burst of 3 (one taken above), then refused.
      const more = [await ask('ned', 'deny'), await ask('ned', 'deny'), await ask('ned', 'deny')];
      expect(more.map((a) => a.effect)).toEqual(['EFFECT_ALLOW', 'EFFECT_ALLOW', 'EFFECT_DENY']);
      expect(more[2]).toMatchObject({ reason: 'REASON_DENIED_BY_RATE_LIMIT' });
      // Each decision says which backend decided.
      const rows = queryDecisions(join(dir, 'decisions.db'), { limit: 100 });
      const backends = new Set(rows.map((r) => (r.details as { limit?: { backend?: string } } | null)?.limit?.backend).filter(Boolean));
      expect([...backends].sort()).toEqual(['local', 'open', 'redis']);
      const denied = rows.find((r) => r.reason === 'DENIED_BY_ERROR')!;
      expect(denied.errors[0]).toMatchObject({ ruleId: 'limit:fail-deny', message: expect.stringContaining('onBackendFailure: deny') });
      // The failure was logged, rate-limited (not once per check), and so was the recovery.
      const failures = verdict.logs.filter((l) => l.msg === 'rate-limit backend failed; limits follow their onBackendFailure until it answers');
      expect(failures.length).toBeGreaterThanOrEqual(1);
      expect(failures.length).toBeLessThanOrEqual(3);
      await verdict.waitForLog((l) => l.msg === 'rate-limit backend answers again');
    } finally {
      client.close();
    }
  });
});

describe('verdict serve --workers 2 with the Redis backend', () => {
  let dir: string;
  let verdict: VerdictProcess;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-redis-workers-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'policies.yaml'), POLICIES);
    // A timeout well above the default 50 ms: this test is about one budget, and a loaded machine must not turn it into fail-deny refusals.
    writeFileSync(join(dir, 'verdict.yaml'), stringify({ limits: { backend: 'redis', redis: { url: redis.url, keyPrefix: 'workers:' }, timeoutMs: 1000 } }));
    verdict = await startVerdict({ policies: join(dir, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', join(dir, 'verdict.yaml'), '--no-watch', '--workers', '2'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('holds a key to one budget whichever worker answers', async () => {
    // Both workers serve (each /readyz is answered by one of them).
    const pids = new Set<number>();
    for (let i = 0; i < 20 && pids.size < 2; i++) pids.add(((await (await fetch(`http://127.0.0.1:${verdict.httpPort}/readyz`, { headers: { connection: 'close' } })).json()) as { pid: number }).pid);
    expect(pids.size).toBe(2);
    // One budget in Redis: no warning that each worker counts alone.
    expect(verdict.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('rate limits are counted by each worker'))).toEqual([]);
    const clients = Array.from({ length: 8 }, () => verdictClient(verdict.grpcPort, { ownConnection: true }));
    try {
      const started = performance.now();
      const answers = await Promise.all(
        Array.from({ length: 80 }, (_, i) => clients[i % 8]!.call<{ effect: string }>('Authorization', 'Check', checkRequest({ principal: { id: 'wes' }, action: 'predict', resource: { type: 'model', id: 'm' }, context: { mode: 'deny' } }))),
      );
      const elapsed = performance.now() - started;
      const allowed = answers.filter((a) => a.effect === 'EFFECT_ALLOW').length;
      // fail-deny: 60/minute, burst 3, shared by both workers: not twice the burst.
      expect(allowed).toBeGreaterThanOrEqual(3);
      expect(allowed).toBeLessThanOrEqual(3 + Math.ceil(elapsed / 1000) + 1);
    } finally {
      for (const client of clients) client.close();
    }
  });

  it("counts the local fallback at each worker's share of the burst, since each counts alone", async () => {
    // One connection: one worker answers all three.
    const client = verdictClient(verdict.grpcPort, { ownConnection: true });
    const ask = () => client.call<{ effect: string; reason: string }>('Authorization', 'Check', checkRequest({ principal: { id: 'lia' }, action: 'predict', resource: { type: 'model', id: 'm' }, context: { mode: 'local' } }), { deadline: Date.now() + 5000 });
    redis.pause();
    try {
      // fail-local: burst 4, one replica, two workers: 2 each (4 together), not 4 each.
      const answers = [await ask(), await ask(), await ask()];
      expect(answers.map((a) => a.effect)).toEqual(['EFFECT_ALLOW', 'EFFECT_ALLOW', 'EFFECT_DENY']);
      expect(answers[2]).toMatchObject({ reason: 'REASON_DENIED_BY_RATE_LIMIT' });
    } finally {
      redis.resume();
      client.close();
    }
  }, 30_000);
});
