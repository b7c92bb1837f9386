import { createHash } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionPipeline } from '../../src/decide/index.js';
import { gcra, type GcraResult } from '../../src/limits/gcra.js';
import { MemoryLimitStore, RateLimiter, RedisLimitBackend, adjustReservation } from '../../src/limits/index.js';
import type { Reservation } from '../../src/limits/settle.js';
import type { CompiledLimit } from '../../src/policy/limits.js';
import { GCRA_LUA } from '../../src/limits/redis.js';
import type { DecisionRequest } from '../../src/types.js';
import { useDecisionLog } from '../helpers/decision-log.js';
import { loadFiles, removeTempDirs } from '../helpers/policies.js';
import { startRedis, type RedisProcess } from '../helpers/redis.js';

// The GCRA in Redis (one Lua script per key) against the same vectors as the
// in-memory one, and the limiter over it, on a real redis-server.

/** A call on one key: at `now` (ms), at a rate of one unit per `emission` ms, a burst and a cost. */
interface Step {
  readonly now: number;
  readonly emission: number;
  readonly burst: number;
  readonly cost: number;
}

const at = (now: number, emission: number, burst: number, cost = 1): Step => ({ now, emission, burst, cost });
const T0 = 1_800_000_000_000.25; // an epoch-sized clock with a fraction, as Redis's TIME gives

/** Sequences of calls on one fresh key each. */
const VECTORS: Record<string, readonly Step[]> = {
  'burst then one per emission': [...Array.from({ length: 11 }, () => at(T0, 600, 10)), at(T0 + 599, 600, 10), at(T0 + 600, 600, 10), at(T0 + 6600, 600, 10)],
  'no second burst at a boundary': [...Array.from({ length: 5 }, () => at(T0 + 59_900, 1000, 5)), ...Array.from({ length: 5 }, () => at(T0 + 60_000, 1000, 5))],
  'cost: more than is left waits, takes nothing meanwhile': [at(T0, 1, 1000, 800), at(T0, 1, 1000, 300), at(T0 + 100, 1, 1000, 300), at(T0 + 100, 1, 1000, 0)],
  'a cost above the burst is never allowed': [at(T0, 10, 5, 6), at(T0 + 1e6, 10, 5, 6), at(T0 + 1e6, 10, 5, 5)],
  'fractional emission (1000/3 ms)': Array.from({ length: 8 }, (_, i) => at(T0 + i * 100, 1000 / 3, 3)),
  'a day of tokens': [at(T0, 86_400_000 / 2_000_000, 2_000_000, 1_500_000), at(T0 + 1000, 86_400_000 / 2_000_000, 2_000_000, 600_000), at(T0 + 3_600_000, 86_400_000 / 2_000_000, 2_000_000, 600_000)],
};

function runMemory(steps: readonly Step[]): GcraResult[] {
  let tat: number | undefined;
  return steps.map((s) => {
    const r = gcra(tat, s.now, s.emission, s.burst, s.cost);
    if (r.allowed) tat = r.tat;
    return r;
  });
}

let redis: RedisProcess;
let backend: RedisLimitBackend;
beforeAll(async () => {
  redis = await startRedis();
  backend = new RedisLimitBackend({ url: redis.url, timeoutMs: 200, retryMs: 100 });
  expect(await backend.ready(5000)).toBe(true);
});
afterAll(async () => {
  await backend?.close();
  await redis?.close();
  removeTempDirs();
});

describe('the GCRA in Redis', () => {
  for (const [name, steps] of Object.entries(VECTORS)) {
    it(`matches the in-memory GCRA: ${name}`, async () => {
      const key = `vector\u0000${name}`;
      const expected = runMemory(steps);
      const got: GcraResult[] = [];
      for (const s of steps) got.push(await backend.take(key, s.emission, s.burst, s.cost, s.now));
      expect(got.map((r) => r.allowed)).toEqual(expected.map((r) => r.allowed));
      for (let i = 0; i < steps.length; i++) {
        expect(got[i]!.remaining).toBe(expected[i]!.remaining);
        expect(got[i]!.retryAfterMs).toBeCloseTo(expected[i]!.retryAfterMs, 6);
        expect(got[i]!.resetMs).toBeCloseTo(expected[i]!.resetMs, 6);
        expect(got[i]!.tat).toBeCloseTo(expected[i]!.tat, 3);
      }
    });
  }

  it('has no read-modify-write race: 200 concurrent takes of a burst of 50 allow exactly 50', async () => {
    const results = await Promise.all(Array.from({ length: 200 }, () => backend.take('race', 60_000, 50, 1)));
    expect(results.filter((r) => r.allowed).length).toBe(50);
  });

  it('keeps each key in one Redis Cluster slot: the whole key is the hash tag', () => {
    expect(backend.keyOf('predict\u0000dana')).toBe('verdict:limit:{predict\u0000dana}');
    // A key with a closing brace would end the tag early: it is hashed instead.
    expect(backend.keyOf('predict\u0000x}y')).toMatch(/^verdict:limit:\{#[A-Za-z0-9_-]{43}\}$/);
  });
});

const POLICIES = `
kind: rules
rules:
  - { id: everyone-predicts, effect: allow, actions: [predict], resource: { type: model } }
---
kind: limits
limits:
  - { id: per-user-deny, actions: [predict], rate: 60/minute, burst: 3, onBackendFailure: deny, when: 'context.attributes.mode == "deny"' }
  - { id: per-user-allow, actions: [predict], rate: 60/minute, burst: 3, onBackendFailure: allow, when: 'context.attributes.mode == "allow"' }
  - { id: per-user-local, actions: [predict], rate: 60/minute, burst: 4, onBackendFailure: local, when: 'context.attributes.mode == "local"' }
  - { id: per-user-cost, actions: [predict], rate: 60/minute, burst: 4, cost: context.attributes.units, onBackendFailure: local, when: 'context.attributes.mode == "cost"' }
`;

function limitsOf(text: string): readonly CompiledLimit[] {
  return loadFiles({ 'policies.yaml': text }).policySet.limits;
}

function request(principal: string, mode: string, units = 1): DecisionRequest {
  return { principal: { id: principal, roles: [], attributes: {} }, action: 'predict', resource: { type: 'model', id: 'm', attributes: {} }, context: { attributes: { mode, units } } };
}

describe('the limiter over Redis', () => {
  it('refuses over the limit with the right retry-after, leaves another principal alone, and says Redis decided', async () => {
    const limits = limitsOf(POLICIES);
    const limiter = new RateLimiter(new MemoryLimitStore(), undefined, { backend, replicas: 2 });
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push(await limiter.apply(limits, request('ann', 'deny')));
    expect(outcomes.slice(0, 3).map((o) => o?.kind)).toEqual(['allowed', 'allowed', 'allowed']);
    const refused = outcomes[3]!;
    expect(refused.kind).toBe('limited');
    if (refused.kind !== 'limited') return;
    expect(refused.report.limit.id).toBe('per-user-deny');
    expect(refused.report.backend).toBe('redis');
    // 60/minute: the next unit is a second away (less what passed since the first call).
    expect(refused.report.retryAfterMs).toBeGreaterThan(900);
    expect(refused.report.retryAfterMs).toBeLessThanOrEqual(1000);
    expect(refused.report.remaining).toBe(0);
    const other = await limiter.apply(limits, request('bob', 'deny'));
    expect(other).toMatchObject({ kind: 'allowed', report: { remaining: 2, backend: 'redis' } });
  });

  it("follows each limit's onBackendFailure while Redis is stopped (SIGSTOP), never waiting past a deadline, and counts in Redis again once it is back", async () => {
    const limits = limitsOf(POLICIES);
    const paused = new RedisLimitBackend({ url: redis.url, timeoutMs: 50, retryMs: 200 });
    expect(await paused.ready(5000)).toBe(true);
    try {
      const limiter = new RateLimiter(new MemoryLimitStore(), undefined, { backend: paused, replicas: 2 });
      expect(await limiter.apply(limits, request('cat', 'local'))).toMatchObject({ kind: 'allowed', report: { backend: 'redis' } });
      redis.pause();
      const deadline = <T>(p: Promise<T>): Promise<T> => Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('a check waited past its 2 s deadline')), 2000))]);
      try {
        const denied = await deadline(limiter.apply(limits, request('cat', 'deny')) as Promise<unknown>);
        expect(denied).toMatchObject({ kind: 'error', limit: { id: 'per-user-deny' }, message: expect.stringContaining('onBackendFailure: deny') });
        const open = await deadline(limiter.apply(limits, request('cat', 'allow')) as Promise<unknown>);
        expect(open).toMatchObject({ kind: 'allowed', report: { backend: 'open' } });
        // local: this replica's share of the burst (4 / 2 replicas), then refused.
        const local = [];
        for (let i = 0; i < 3; i++) local.push(await deadline(limiter.apply(limits, request('dan', 'local')) as Promise<{ kind: string; report: { backend: string } }>));
        expect(local.map((o) => [o.kind, o.report.backend])).toEqual([['allowed', 'local'], ['allowed', 'local'], ['limited', 'local']]);
        // A cost within the whole burst (4) but over this replica's share (2) can never be taken here: an error, not a wait.
        expect(await deadline(limiter.apply(limits, request('fay', 'cost', 3)) as Promise<unknown>)).toMatchObject({ kind: 'error', limit: { id: 'per-user-cost' }, message: expect.stringContaining("this server's share of the burst") });
        expect(await deadline(limiter.apply(limits, request('fay', 'cost', 2)) as Promise<unknown>)).toMatchObject({ kind: 'allowed', report: { backend: 'local' } });
        expect(paused.status()).toMatchObject({ healthy: false, failures: expect.any(Number) });
      } finally {
        redis.resume();
      }
      // Back: after the retry pause, Redis counts again.
      await new Promise((r) => setTimeout(r, 250));
      let back: unknown = null;
      for (let i = 0; i < 20; i++) {
        back = await limiter.apply(limits, request('eve', 'deny'));
        if ((back as { kind: string }).kind === 'allowed') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(back).toMatchObject({ kind: 'allowed', report: { backend: 'redis' } });
      expect(paused.status().healthy).toBe(true);
    } finally {
      await paused.close();
    }
  });
});

describe('the local fallback after an outage', () => {
  type Outcome = { kind: string; report?: { backend: string; remaining: number }; reserved?: readonly Reservation[] };
  it('starts each key where Redis last left it: a budget spent in Redis is not handed out again when Redis stops', async () => {
    const limits = limitsOf(POLICIES);
    const flaky = new RedisLimitBackend({ url: redis.url, keyPrefix: 'outage:', timeoutMs: 50, retryMs: 5000 });
    expect(await flaky.ready(5000)).toBe(true);
    try {
      // Two replicas: this server's fallback share of per-user-local is 2 of the burst of 4.
      const limiter = new RateLimiter(new MemoryLimitStore(), undefined, { backend: flaky, replicas: 2 });
      const ask = async (principal: string, mode: string, units = 1): Promise<Outcome> => (await limiter.apply(limits, request(principal, mode, units))) as Outcome;
      // gus spends the whole burst in Redis and is refused there; hal spends half of it.
      const gus = [];
      for (let i = 0; i < 5; i++) gus.push(await ask('gus', 'local'));
      expect(gus.map((o) => [o.kind, o.report?.backend])).toEqual([...Array.from({ length: 4 }, () => ['allowed', 'redis']), ['limited', 'redis']]);
      for (let i = 0; i < 2; i++) expect(await ask('hal', 'local')).toMatchObject({ kind: 'allowed', report: { backend: 'redis' } });
      // A cost budget corrected by a settle: ivy reserved 1 unit, then settled it at 4 (the whole burst).
      const reserved = await ask('ivy', 'cost', 1);
      expect(reserved).toMatchObject({ kind: 'allowed', report: { backend: 'redis' } });
      expect(await adjustReservation(limiter, reserved.reserved![0]!, 3)).toBe(0);
      redis.pause();
      try {
        // Spent in Redis, spent in the fallback: refused, not a fresh share.
        expect(await ask('gus', 'local')).toMatchObject({ kind: 'limited', report: { backend: 'local', remaining: 0 } });
        // Half spent in Redis: half of this server's share is left.
        const hal = [await ask('hal', 'local'), await ask('hal', 'local')];
        expect(hal.map((o) => [o.kind, o.report?.backend])).toEqual([['allowed', 'local'], ['limited', 'local']]);
        expect(await ask('ivy', 'cost', 1)).toMatchObject({ kind: 'limited', report: { backend: 'local' } });
        // A key Redis never counted here starts with this server's whole share.
        const jan = [await ask('jan', 'local'), await ask('jan', 'local'), await ask('jan', 'local')];
        expect(jan.map((o) => [o.kind, o.report?.backend])).toEqual([['allowed', 'local'], ['allowed', 'local'], ['limited', 'local']]);
      } finally {
        redis.resume();
      }
    } finally {
      await flaky.close();
    }
  });
});

describe('the local fallback while Redis comes and goes', () => {
  it('keeps what the fallback let through when Redis answers again: each outage does not start with a fresh share', async () => {
    const limits = limitsOf(POLICIES);
    const flapping = new RedisLimitBackend({ url: redis.url, keyPrefix: 'flap:', timeoutMs: 50, retryMs: 300 });
    expect(await flapping.ready(5000)).toBe(true);
    try {
      // per-user-cost: burst 4 over two replicas, so this server's fallback share is 2 units.
      const limiter = new RateLimiter(new MemoryLimitStore(), undefined, { backend: flapping, replicas: 2 });
      const ask = async (units: number): Promise<{ kind: string; report?: { backend: string } }> => (await limiter.apply(limits, request('kay', 'cost', units))) as { kind: string; report?: { backend: string } };
      const inFallback: string[] = [];
      for (let outage = 0; outage < 3; outage++) {
        // Redis answers (a call of 0 units, allowed at any time): the key is at rest there, having seen none of the fallback's.
        let answered = await ask(0);
        for (let i = 0; i < 50 && answered.report?.backend !== 'redis'; i++) {
          await new Promise((r) => setTimeout(r, 50));
          answered = await ask(0);
        }
        expect(answered).toMatchObject({ kind: 'allowed', report: { backend: 'redis' } });
        redis.pause();
        try {
          // The first call finds Redis gone (it times out, and Redis runs it once resumed: 0 units);
          // the next is never sent, so Redis never learns of the 2 units the fallback lets through.
          expect(await ask(0)).toMatchObject({ kind: 'allowed', report: { backend: 'local' } });
          const spent = await ask(2);
          expect(spent.report?.backend).toBe('local');
          inFallback.push(spent.kind);
        } finally {
          redis.resume();
        }
      }
      // The first outage spends this server's share; the later ones find it spent (60/minute refills 2 units in 4 s).
      expect(inFallback).toEqual(['allowed', 'limited', 'limited']);
    } finally {
      await flapping.close();
    }
  });
});

/**
 * A TCP proxy in front of the real redis-server that can hold Redis's replies back:
 * it counts the limit scripts (EVAL, EVALSHA) the client has sent while nothing came back.
 */
async function holdingProxy(port: number): Promise<{ url: string; hold(): void; release(): void; scriptsSent(): number; commandsSent(): { eval: number; evalsha: number }; close(): Promise<void> }> {
  let holding = false;
  let scripts = 0;
  const commands = { eval: 0, evalsha: 0 };
  const held: { to: Socket; data: Buffer }[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (data: Buffer) => {
      // A command's name is a bulk string of its own: $4 eval, $7 evalsha.
      const text = data.toString('latin1').toLowerCase();
      const evals = text.split('\r\neval\r\n').length - 1;
      const evalshas = text.split('\r\nevalsha\r\n').length - 1;
      commands.eval += evals;
      commands.evalsha += evalshas;
      scripts += evals + evalshas;
      upstream.write(data);
    });
    upstream.on('data', (data: Buffer) => (holding ? held.push({ to: client, data }) : client.write(data)));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${address.port}`,
    hold: () => {
      holding = true;
      scripts = 0;
    },
    release: () => {
      holding = false;
      for (const { to, data } of held.splice(0)) to.write(data);
    },
    scriptsSent: () => scripts,
    commandsSent: () => ({ ...commands }),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const decisionLog = useDecisionLog();

describe('a CheckBatch over Redis', () => {
  // Three an hour: Redis's clock moving while replies are held back refills nothing.
  const BATCH_POLICIES = POLICIES.replace('rate: 60/minute, burst: 3, onBackendFailure: deny', 'rate: 3/hour, burst: 3, onBackendFailure: deny');

  it("asks Redis for every item before the first reply comes back, each item taken in order", async () => {
    const proxy = await holdingProxy(redis.port);
    // Far past any wait below: an item that timed out would take the fallback and hide the order.
    const slow = new RedisLimitBackend({ url: proxy.url, keyPrefix: 'batch:', timeoutMs: 120_000, retryMs: 100 });
    let takes = 0;
    const take = slow.take.bind(slow);
    slow.take = (...args: Parameters<RedisLimitBackend['take']>) => {
      takes++;
      return take(...args);
    };
    try {
      expect(await slow.ready(5000)).toBe(true);
      const policySet = loadFiles({ 'policies.yaml': BATCH_POLICIES }).policySet;
      const pipeline = new DecisionPipeline({ current: policySet }, decisionLog(), { limiter: new RateLimiter(new MemoryLimitStore(), undefined, { backend: slow, replicas: 1 }) });
      const items = Array.from({ length: 50 }, (_, i) => request(i % 2 === 0 ? 'fay' : `gil-${i}`, 'deny'));
      proxy.hold();
      const batch = pipeline.checkBatch(items, { caller: '127.0.0.1:1', requestId: null });
      // Every item is asked while no reply has come (a batch asking one item at a time stops at 1). The
      // scripts go out in one write unless a slice of deciding ends first on a loaded machine: then the
      // client sends the rest once the first write's replies are in, still in order.
      // The count of takes is made as each is asked; the scripts reach the proxy a turn later.
      for (let waited = 0; (takes < items.length || proxy.scriptsSent() === 0) && waited < 10_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      const askedBeforeAnyReply = takes;
      expect(proxy.scriptsSent()).toBeGreaterThan(0);
      proxy.release();
      const results = await batch;
      expect(askedBeforeAnyReply).toBe(items.length);
      // fay asks 25 times with a burst of 3: her first three items are allowed, in order; each gil once.
      const fay = results.filter((_, i) => i % 2 === 0).map((r) => r.decision.effect);
      expect(fay).toEqual([...Array(3).fill('ALLOW'), ...Array(22).fill('DENY')]);
      expect(results.filter((_, i) => i % 2 === 1).every((r) => r.decision.effect === 'ALLOW' && r.decision.limit?.backend === 'redis')).toBe(true);
    } finally {
      proxy.release();
      await slow.close();
      await proxy.close();
    }
  });
});

describe('a Redis that restarted (its scripts forgotten)', () => {
  it('is sent the script itself until it has run it, so no call is refused NOSCRIPT and sent again behind later ones', async () => {
    const own = await startRedis();
    const proxy = await holdingProxy(own.port);
    const client = new RedisLimitBackend({ url: proxy.url, keyPrefix: 'restart:', timeoutMs: 5_000, retryMs: 100 });
    try {
      expect(await client.ready(5000)).toBe(true);
      // A new connection: the script's text first, then its hash.
      await client.take('warm', 60_000, 10, 1);
      await client.take('warm', 60_000, 10, 1);
      expect(proxy.commandsSent()).toEqual({ eval: 1, evalsha: 1 });

      await own.stop();
      await own.start();
      for (let waited = 0; !(await client.ready(100)) && waited < 10_000; waited += 100);
      // ioredis says ready only after its reconnection; the first calls may still meet the old connection's end.
      let probe: unknown = null;
      for (let i = 0; i < 50 && probe === null; i++) {
        probe = await client.take('probe', 60_000, 10, 1).catch(() => null);
        if (probe === null) await new Promise((r) => setTimeout(r, 150));
      }
      expect(probe).not.toBeNull();
      const before = proxy.commandsSent();
      // The first reply after the restart was to the script's text: Redis has it again, and the hash follows.
      expect(before.eval).toBeGreaterThanOrEqual(2);
      // Ten takes of a burst of three on one key, all sent before any reply: taken in order.
      const answers = await Promise.all(Array.from({ length: 10 }, () => client.take('ordered', 3_600_000, 3, 1)));
      expect(answers.map((a) => a.allowed)).toEqual([true, true, true, false, false, false, false, false, false, false]);
      const after = proxy.commandsSent();
      expect(after.evalsha - before.evalsha).toBe(10);
    } finally {
      await client.close();
      await proxy.close();
      await own.close();
    }
  }, 60_000);

  it('sends the script again when Redis forgot it while connected (SCRIPT FLUSH), and goes on in order', async () => {
    const own = await startRedis();
    const client = new RedisLimitBackend({ url: own.url, keyPrefix: 'flush:', timeoutMs: 5_000, retryMs: 100 });
    const admin = new Redis(own.url);
    try {
      expect(await client.ready(5000)).toBe(true);
      await client.take('warm', 60_000, 10, 1);
      await admin.script('FLUSH');
      const answers = await Promise.all(Array.from({ length: 6 }, () => client.take('after-flush', 3_600_000, 2, 1)));
      expect(answers.map((a) => a.allowed)).toEqual([true, true, false, false, false, false]);
      // Once one call has sent the text again, the hash is known.
      expect((await admin.script('EXISTS', createHash('sha1').update(GCRA_LUA).digest('hex'))) as number[]).toEqual([1]);
    } finally {
      admin.disconnect();
      await client.close();
      await own.close();
    }
  }, 60_000);

  it('in a Redis Cluster (scripts kept per node), sends the script itself with every call', async () => {
    // A cluster of one node holding every slot: enough for the cluster client, and its command counts are all there is.
    const own = await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1']);
    const admin = new Redis(own.url);
    let client: RedisLimitBackend | null = null;
    try {
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
      for (let tries = 0; !String(await admin.call('CLUSTER', 'INFO')).includes('cluster_state:ok'); tries++) {
        expect(tries).toBeLessThan(100);
        await new Promise((r) => setTimeout(r, 50));
      }
      client = new RedisLimitBackend({ url: own.url, cluster: true, keyPrefix: 'cluster:', timeoutMs: 5_000, retryMs: 100 });
      expect(await client.ready(5000)).toBe(true);
      const answers = [];
      for (let i = 0; i < 4; i++) answers.push(await client.take('one-key', 3_600_000, 2, 1));
      expect(answers.map((a) => a.allowed)).toEqual([true, true, false, false]);
      const stats = String(await admin.info('commandstats'));
      expect(stats).toMatch(/cmdstat_eval:calls=4,/);
      expect(stats).not.toMatch(/cmdstat_evalsha:/);
    } finally {
      await client?.close();
      admin.disconnect();
      await own.close();
    }
  }, 60_000);
});
