import { afterAll, describe, expect, it } from 'vitest';
import { DecisionPipeline, type CallMeta } from '../../src/decide/index.js';
import { DecisionReader } from '../../src/decisions/query.js';
import { MemoryLimitStore, RateLimiter } from '../../src/limits/index.js';
import type { PolicySet } from '../../src/policy/policy-set.js';
import { useDecisionLog } from '../helpers/decision-log.js';
import { loadFiles, removeTempDirs, request, rolesDoc, rulesDoc } from '../helpers/policies.js';

const LIMITS = `kind: limits
limits:
  - id: predict-per-user
    actions: [predict]
    resource: { type: model }
    rate: 60/minute
    burst: 3
    tiers:
      attribute: tier
      rates:
        premium: { rate: 600/minute, burst: 10 }
  - id: org-hourly
    actions: [predict]
    key: { attribute: principal.attributes.org }
    rate: 1000/hour
  - id: tokens-per-day
    actions: [generate]
    cost: context.attributes.max_tokens
    rate: 10000/day
`;

const policySet: PolicySet = loadFiles({
  'roles.yaml': rolesDoc([{ name: 'analyst', permissions: [{ actions: ['predict', 'generate'], resources: ['model'] }] }]),
  'rules.yaml': rulesDoc([{ id: 'no-secret-models', effect: 'deny', actions: ['*'], resource: { type: 'model', attributes: { secret: true } } }]),
  'limits.yaml': LIMITS,
}).policySet;

const meta: CallMeta = { caller: '10.0.0.7:41234', requestId: null };
const decisionLog = useDecisionLog();
afterAll(removeTempDirs);

/** A pipeline whose limits read a clock the test moves. */
function withClock(): { pipeline: DecisionPipeline; clock: { now: number } } {
  const clock = { now: 1_000_000 };
  const pipeline = new DecisionPipeline({ current: policySet }, decisionLog(), { limiter: new RateLimiter(new MemoryLimitStore(), () => clock.now) });
  return { pipeline, clock };
}

const predict = (id: string, attributes: Record<string, unknown> = { org: 'acme' }, resource: Record<string, unknown> = {}) =>
  request({ principal: { id, roles: ['analyst'], attributes }, action: 'predict', resource: { type: 'model', id: 'fraud-v3', attributes: resource } });

describe('rate limits in the decide core', () => {
  it('denies a principal over its limit with DENIED_BY_RATE_LIMIT, the limit, the right retry-after, and records it', async () => {
    const { pipeline, clock } = withClock();
    for (let i = 0; i < 3; i++) {
      const ok = await pipeline.check(predict('mallory'), meta);
      expect(ok.decision).toMatchObject({ effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', limit: { limitId: 'predict-per-user', remaining: 2 - i, retryAfterMs: 0 } });
    }
    const refused = await pipeline.check(predict('mallory'), meta);
    expect(refused.decision).toMatchObject({
      effect: 'DENY',
      reason: 'DENIED_BY_RATE_LIMIT',
      ruleIds: [],
      errors: [{ ruleId: 'limit:predict-per-user', message: 'over limit predict-per-user (60/minute, burst 3); retry after 1.000s' }],
      limit: { limitId: 'predict-per-user', quota: 60, windowSeconds: 60, remaining: 0, retryAfterMs: 1000 },
    });
    const reader = DecisionReader.open(decisionLog().path);
    try {
      // The row says which backend decided: this process's memory.
      expect(reader.get(refused.decisionId)).toMatchObject({ reason: 'DENIED_BY_RATE_LIMIT', details: { limit: { id: 'predict-per-user', remaining: 0, retryAfterMs: 1000, backend: 'memory' } } });
    } finally {
      reader.close();
    }
    // Another principal is unaffected.
    expect((await pipeline.check(predict('alice'), meta)).decision.effect).toBe('ALLOW');
    // Waiting less than retry-after is not enough; waiting it is.
    clock.now += 999;
    expect((await pipeline.check(predict('mallory'), meta)).decision.reason).toBe('DENIED_BY_RATE_LIMIT');
    clock.now += 1;
    expect((await pipeline.check(predict('mallory'), meta)).decision.reason).toBe('ALLOWED_BY_RULE');
  });

  it('takes no budget for what the rules deny, nor for what a limit refuses', async () => {
    const { pipeline } = withClock();
    for (let i = 0; i < 10; i++) expect((await pipeline.check(predict('dana', { org: 'acme' }, { secret: true }), meta)).decision.reason).toBe('DENIED_BY_RULE');
    for (let i = 0; i < 3; i++) expect((await pipeline.check(predict('dana'), meta)).decision.effect).toBe('ALLOW');
    for (let i = 0; i < 10; i++) expect((await pipeline.check(predict('dana'), meta)).decision.reason).toBe('DENIED_BY_RATE_LIMIT');
    // org-hourly (1000/hour) took one unit per allowed call only: 3 of them, so 997 remain.
    const other = await pipeline.check(predict('erin'), meta);
    expect(other.decision.limit).toMatchObject({ limitId: 'predict-per-user', remaining: 2 });
  });

  it('reads the rate from the principal tier, with the limit rate as the default', async () => {
    const { pipeline } = withClock();
    const premium = { org: 'beta', tier: 'premium' };
    let allowed = 0;
    for (let i = 0; i < 20; i++) if ((await pipeline.check(predict('pat', premium), meta)).decision.effect === 'ALLOW') allowed++;
    expect(allowed).toBe(10);
    const refused = await pipeline.check(predict('pat', premium), meta);
    expect(refused.decision.limit).toMatchObject({ quota: 600, retryAfterMs: 100 });
    allowed = 0;
    for (let i = 0; i < 20; i++) if ((await pipeline.check(predict('fred', { org: 'beta', tier: 'gold-plated' }), meta)).decision.effect === 'ALLOW') allowed++;
    expect(allowed).toBe(3);
  });

  it('counts by an attribute: principals of one org share its budget; a missing key attribute fails closed', async () => {
    const { pipeline } = withClock();
    // 1000/hour per org; premium principals (burst 10 each) spread over many ids exhaust the org.
    let allowed = 0;
    for (let p = 0; p < 120; p++) {
      for (let i = 0; i < 10; i++) if ((await pipeline.check(predict(`u${p}`, { org: 'gamma', tier: 'premium' }), meta)).decision.effect === 'ALLOW') allowed++;
    }
    expect(allowed).toBe(1000);
    const refused = await pipeline.check(predict('u999', { org: 'gamma', tier: 'premium' }), meta);
    expect(refused.decision).toMatchObject({ reason: 'DENIED_BY_RATE_LIMIT', limit: { limitId: 'org-hourly', retryAfterMs: 3600 } });
    const noOrg = await pipeline.check(predict('zed', {}), meta);
    expect(noOrg.decision).toMatchObject({
      effect: 'DENY',
      reason: 'DENIED_BY_ERROR',
      errors: [{ ruleId: 'limit:org-hourly', message: expect.stringContaining('principal.attributes.org is absent') }],
    });
  });

  it('counts cost: a daily token budget, refused once spent, a bad cost failing closed', async () => {
    const { pipeline, clock } = withClock();
    const generate = (tokens: unknown) => request({ principal: { id: 'gina', roles: ['analyst'] }, action: 'generate', resource: { type: 'model', id: 'llm' }, context: { max_tokens: tokens } });
    expect((await pipeline.check(generate(6000), meta)).decision.limit).toMatchObject({ limitId: 'tokens-per-day', remaining: 4000 });
    const refused = await pipeline.check(generate(6000), meta);
    // 2000 more tokens come back in 2000 × 8.64 s.
    expect(refused.decision).toMatchObject({ reason: 'DENIED_BY_RATE_LIMIT', limit: { remaining: 4000, retryAfterMs: 2000 * 8640 } });
    expect((await pipeline.check(generate(4000), meta)).decision.effect).toBe('ALLOW');
    clock.now += 8640 * 100;
    expect((await pipeline.check(generate(100), meta)).decision.effect).toBe('ALLOW');
    const bad = await pipeline.check(generate('lots'), meta);
    expect(bad.decision).toMatchObject({ reason: 'DENIED_BY_ERROR', errors: [{ ruleId: 'limit:tokens-per-day' }] });
    const negative = await pipeline.check(generate(-5), meta);
    expect(negative.decision).toMatchObject({ reason: 'DENIED_BY_ERROR', errors: [{ message: expect.stringContaining('at least 0') }] });
  });

  it('takes budget for each item a batch allows, in order', async () => {
    const { pipeline } = withClock();
    const results = await pipeline.checkBatch(Array.from({ length: 5 }, () => predict('bob')), meta);
    expect(results.map((r) => r.decision.reason)).toEqual(['ALLOWED_BY_RULE', 'ALLOWED_BY_RULE', 'ALLOWED_BY_RULE', 'DENIED_BY_RATE_LIMIT', 'DENIED_BY_RATE_LIMIT']);
  });
});

describe('repeat offenders (backoff)', () => {
  const withBackoff: PolicySet = loadFiles({
    'roles.yaml': rolesDoc([{ name: 'analyst', permissions: [{ actions: ['predict'], resources: ['model'] }] }]),
    'limits.yaml': `kind: limits
limits:
  - id: predict-per-user
    actions: [predict]
    rate: 60/minute
    burst: 2
    backoff: { after: 3, within: 1m, block: 1m, max: 4m }
`,
  }).policySet;

  it('blocks a key after K refusals within the window, for a period that doubles per offence up to the maximum, then forgets it', async () => {
    const clock = { now: 5_000_000 };
    const pipeline = new DecisionPipeline({ current: withBackoff }, decisionLog(), { limiter: new RateLimiter(new MemoryLimitStore(), () => clock.now) });
    const ask = async (id = 'max') => (await pipeline.check(predict(id), meta)).decision;
    /** Spends the burst, then is refused `after` times: the third refusal blocks. */
    const offend = async (): Promise<ReturnType<typeof ask>> => {
      let last = await ask();
      while (last.effect === 'ALLOW') last = await ask();
      last = await ask();
      return ask();
    };
    const first = await offend();
    expect(first).toMatchObject({ reason: 'DENIED_BY_RATE_LIMIT', limit: { limitId: 'predict-per-user', retryAfterMs: 60_000, offences: 1, blockedUntil: clock.now + 60_000 } });
    expect(first.errors[0]!.message).toMatch(/^blocked by limit predict-per-user until .*Z \(offence 1\); retry after 60\.000s$/);
    // While blocked, the budget that has come back does not help; nor is anyone else blocked.
    clock.now += 30_000;
    expect(await ask()).toMatchObject({ reason: 'DENIED_BY_RATE_LIMIT', limit: { retryAfterMs: 30_000, offences: 1 } });
    expect((await ask('nina')).effect).toBe('ALLOW');
    clock.now += 30_000;
    expect((await ask()).effect).toBe('ALLOW');
    // The next offence doubles the block, then 4 minutes (the maximum) caps it.
    expect((await offend()).limit).toMatchObject({ retryAfterMs: 120_000, offences: 2 });
    clock.now += 120_000;
    expect((await offend()).limit).toMatchObject({ retryAfterMs: 240_000, offences: 3 });
    clock.now += 240_000;
    expect((await offend()).limit).toMatchObject({ retryAfterMs: 240_000, offences: 4 });
    // The block is in the log.
    const reader = DecisionReader.open(decisionLog().path);
    try {
      const rows = reader.query({ principalId: 'max', reason: 'DENIED_BY_RATE_LIMIT', limit: 1 });
      expect(rows[0]!.details).toMatchObject({ limit: { id: 'predict-per-user', offences: 4, blockedUntil: clock.now + 240_000 } });
    } finally {
      reader.close();
    }
    // Once the block is over and the maximum has passed without one, the key starts afresh.
    clock.now += 240_000 + 240_000 + 1;
    expect((await offend()).limit).toMatchObject({ retryAfterMs: 60_000, offences: 1 });
  });

  it('refusals spread wider than the window do not add up to a block', async () => {
    const clock = { now: 9_000_000 };
    const pipeline = new DecisionPipeline({ current: withBackoff }, decisionLog(), { limiter: new RateLimiter(new MemoryLimitStore(), () => clock.now) });
    const ask = async () => (await pipeline.check(predict('wes'), meta)).decision;
    for (let round = 0; round < 5; round++) {
      // Spend what has come back, then one refusal; 40 s later the window (1m) has moved on every other round.
      let last = await ask();
      while (last.effect === 'ALLOW') last = await ask();
      expect(last.limit!.blockedUntil).toBeUndefined();
      clock.now += 61_000;
    }
  });
});

describe('limits reading principal.roles', () => {
  // A contractor_ds inherits contractor: a limit's cost and key see the inherited role as a rule's condition does.
  const inherited: PolicySet = loadFiles({
    'roles.yaml': rolesDoc([
      { name: 'contractor', permissions: [{ actions: ['predict', 'generate'], resources: ['model'] }] },
      { name: 'contractor_ds', inherits: ['contractor'] },
    ]),
    'limits.yaml': `kind: limits
limits:
  - id: contractor-cost
    actions: [predict]
    cost: '"contractor" in principal.roles ? 50 : 1'
    rate: 100/minute
  - id: contractors-share-one-budget
    actions: [generate]
    key: { expr: '"contractor" in principal.roles ? "contractors" : principal.id' }
    rate: 2/minute
`,
  }).policySet;

  it('counts inherited roles in cost and key expressions, as a condition does', async () => {
    const pipeline = new DecisionPipeline({ current: inherited }, decisionLog(), { limiter: new RateLimiter(new MemoryLimitStore(), () => 1_000_000) });
    const ask = async (id: string, action: string) => (await pipeline.check(request({ principal: { id, roles: ['contractor_ds'], attributes: {} }, action, resource: { type: 'model', id: 'm', attributes: {} } }), meta)).decision;
    // 50 units a call on a burst of 100: two calls, then refused, as for a contractor named directly.
    const costed = [await ask('cleo', 'predict'), await ask('cleo', 'predict'), await ask('cleo', 'predict')];
    expect(costed.map((d) => d.effect)).toEqual(['ALLOW', 'ALLOW', 'DENY']);
    expect(costed[2]).toMatchObject({ reason: 'DENIED_BY_RATE_LIMIT', limit: { limitId: 'contractor-cost' } });
    // Two inherited contractors share the key "contractors": a burst of 2 between them.
    const shared = [await ask('cleo', 'generate'), await ask('dov', 'generate'), await ask('eli', 'generate')];
    expect(shared.map((d) => d.effect)).toEqual(['ALLOW', 'ALLOW', 'DENY']);
    expect(shared[2]).toMatchObject({ reason: 'DENIED_BY_RATE_LIMIT', limit: { limitId: 'contractors-share-one-budget' } });
  });
});
