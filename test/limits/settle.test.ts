import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionPipeline, type CallMeta } from '../../src/decide/index.js';
import { SettlementBook, sameCaller } from '../../src/limits/index.js';
import type { DecisionSink } from '../../src/decisions/log-client.js';
import { VerdictError } from '../../src/errors.js';
import { queryDecisions } from '../../src/decisions/query.js';
import { checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';
import { startRedis, type RedisProcess } from '../helpers/redis.js';
import { useDecisionLog } from '../helpers/decision-log.js';
import { loadFiles, removeTempDirs } from '../helpers/policies.js';
import { SETTLE_POLICIES } from './settle-policies.js';

// Settle on real servers: a daily token budget reserved from max_tokens up front and
// corrected with the tokens really produced, in memory and in a real Redis.

const POLICIES = SETTLE_POLICIES;

let redis: RedisProcess;
beforeAll(async () => {
  ensureBuilt();
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.close();
  removeTempDirs();
});

type Answer = { effect: string; reason: string; decisionId: string; remaining: string; limitId: string; retryAfter: { seconds: string; nanos: number } | null };
type Settled = { settleId: string; reservedUnits: number; actualUnits: number; limitIds: string[]; remaining: string };

/** A verdict serving POLICIES with `limits()` for the enclosing describe, and a client of it. */
function useSettleServer(limits: () => object): () => { dir: string; client: VerdictClient } {
  let dir = '';
  let verdict: VerdictProcess | undefined;
  let client: VerdictClient | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-settle-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'policies.yaml'), POLICIES);
    writeFileSync(join(dir, 'verdict.yaml'), stringify({ limits: limits() }));
    verdict = await startVerdict({ policies: join(dir, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', join(dir, 'verdict.yaml'), '--no-watch'] });
    client = verdictClient(verdict.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return () => ({ dir, client: client! });
}

/** A generate Check with max_tokens, and Settle, on the client `current()` gives. */
function calls(current: () => VerdictClient) {
  const generate = (principal: string, maxTokens: number) =>
    current().call<Answer>('Authorization', 'Check', checkRequest({ principal: { id: principal }, action: 'generate', resource: { type: 'model', id: 'llm' }, context: { max_tokens: maxTokens } }));
  const settle = (decisionId: string, actualUnits: number) => current().call<Settled>('Authorization', 'Settle', { decisionId, actualUnits });
  const settleError = async (decisionId: string, actualUnits: number): Promise<ServiceError> => {
    try {
      await settle(decisionId, actualUnits);
    } catch (error) {
      return error as ServiceError;
    }
    throw new Error('Settle succeeded');
  };
  return { generate, settle, settleError };
}

for (const backend of ['memory', 'redis'] as const) {
  describe(`Settle with the ${backend} backend`, () => {
    const server = useSettleServer(() => (backend === 'redis' ? { backend, redis: { url: redis.url, keyPrefix: `settle-${Date.now()}:` }, settleWithinMs: 1000 } : { settleWithinMs: 1000 }));
    const dir = (): string => server().dir;
    const { generate, settle, settleError } = calls(() => server().client);

    it('frees what a call reserved but did not use, and an overspend waits for the refill', async () => {
      const first = await generate('pat', 6000);
      expect(first).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'tokens-per-day', remaining: '4000' });
      // Reserved up front: another 6000 do not fit.
      expect(await generate('pat', 6000)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
      // The answer was 1000 tokens: 5000 come back.
      const settled = await settle(first.decisionId, 1000);
      expect(settled).toMatchObject({ reservedUnits: 6000, actualUnits: 1000, limitIds: ['tokens-per-day'], remaining: '9000' });
      const second = await generate('pat', 6000);
      expect(second).toMatchObject({ effect: 'EFFECT_ALLOW', remaining: '3000' });
      // This one produced 12000 (more than reserved): the 6000 over are taken, 3000 beyond the budget.
      expect(await settle(second.decisionId, 12000)).toMatchObject({ remaining: '0' });
      const over = await generate('pat', 1);
      expect(over).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
      // 10,000 tokens a day (8.64 s each): the 1 token asked for waits for the 3000 overspent to refill, about 7.2 hours.
      expect(Number(over.retryAfter!.seconds)).toBeGreaterThan(7 * 3600);
      expect(Number(over.retryAfter!.seconds)).toBeLessThanOrEqual(Math.ceil(3001 * 8.64));
      // Another principal's budget is its own.
      expect(await generate('quinn', 10000)).toMatchObject({ effect: 'EFFECT_ALLOW', remaining: '0' });

      // Once only.
      const again = await settleError(first.decisionId, 0);
      expect(again.code).toBe(6); // ALREADY_EXISTS
      expect(again.details).toContain('already settled');
      // Every Settle, refused or not, is a row in the decision log.
      const rows = queryDecisions(join(dir(), 'decisions.db'), { action: 'settle', limit: 10 });
      expect(rows.length).toBe(3);
      const ok = rows.find((r) => (r.details as { settle: { decisionId: string } }).settle.decisionId === first.decisionId && r.effect === 'ALLOW')!;
      expect(ok).toMatchObject({ principalId: 'pat', resourceType: 'model', resourceId: 'llm', ruleIds: ['limit:tokens-per-day'], details: { settle: { actualUnits: 1000, limits: [{ id: 'tokens-per-day', reservedUnits: 6000 }] } } });
      expect(rows.some((r) => r.effect === 'DENY' && r.errors[0]?.message.includes('already settled'))).toBe(true);
    });

    it('refuses a Settle that leaves out actual_units, rather than reading it as 0 and giving the reservation back', async () => {
      const call = await generate('una', 6000);
      expect(call).toMatchObject({ effect: 'EFFECT_ALLOW', remaining: '4000' });
      let refused: ServiceError | undefined;
      await server().client.call('Authorization', 'Settle', { decisionId: call.decisionId }).catch((error: ServiceError) => (refused = error));
      expect(refused?.code).toBe(3); // INVALID_ARGUMENT
      expect(refused?.details).toBe('actual_units: missing; send the units the call really used (0 if it used none)');
      // Nothing came back, and the decision is still open: settled at 0 when the units are sent.
      expect(await generate('una', 6000)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
      expect(await settle(call.decisionId, 0)).toMatchObject({ reservedUnits: 6000, actualUnits: 0, remaining: '10000' });
      const rows = queryDecisions(join(dir(), 'decisions.db'), { action: 'settle', limit: 10 });
      expect(rows.map((r) => [r.effect, r.errors[0]?.message ?? null])).toEqual(expect.arrayContaining([
        ['DENY', 'actual_units: missing; send the units the call really used (0 if it used none)'],
        ['ALLOW', null],
      ]));
    });

    it('settles a call that reserved nothing (max_tokens: 0), so what it really used is still charged', async () => {
      const free = await generate('sol', 0);
      expect(free).toMatchObject({ effect: 'EFFECT_ALLOW', limitId: 'tokens-per-day', remaining: '10000' });
      expect(await settle(free.decisionId, 12000)).toMatchObject({ reservedUnits: 0, actualUnits: 12000, limitIds: ['tokens-per-day'], remaining: '0' });
      // 2000 over the day's budget: the next call waits for them to refill.
      expect(await generate('sol', 1)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
    });

    it('charges an overspend at most one whole budget beyond empty, so one settle of 10^15 cannot lock a key for ages', async () => {
      const call = await generate('vic', 100);
      expect(call).toMatchObject({ effect: 'EFFECT_ALLOW', remaining: '9900' });
      expect(await settle(call.decisionId, 1e15)).toMatchObject({ actualUnits: 1e15, remaining: '0' });
      const after = await generate('vic', 1);
      expect(after).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
      // One budget owed (10,000 tokens at 8.64 s each: a day), where 10^15 would have been 274 million years.
      expect(Number(after.retryAfter!.seconds)).toBeGreaterThan(86_000);
      expect(Number(after.retryAfter!.seconds)).toBeLessThanOrEqual(Math.ceil(10_001 * 8.64));
    });

    it('refuses a cost no budget can ever hold as an error that says so, with no retry_after to wait on', async () => {
      // A retry_after would be a wait that never makes room: an obedient client would loop on it.
      for (const cost of [10_001, 1e20, 1e308]) {
        const refused = await generate('uma', cost);
        expect(refused).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR' });
        expect(refused.retryAfter ?? null).toBeNull();
        expect(JSON.stringify(refused)).toContain('so this call can never be allowed; ask for at most');
      }
      // Within the burst it is an ordinary limit again.
      expect(await generate('uma', 10_000)).toMatchObject({ effect: 'EFFECT_ALLOW' });
    });

    it('refuses an unknown, malformed, uncosted or expired decision with a defined error', async () => {
      expect((await settleError('0190c6a8-0000-7000-8000-000000000000', 10)).code).toBe(5); // NOT_FOUND
      expect((await settleError('not-an-id', 10)).code).toBe(3); // INVALID_ARGUMENT
      const fresh = await generate('ray', 100);
      expect((await settleError(fresh.decisionId, -1)).code).toBe(3);
      expect((await settleError(fresh.decisionId, Number.POSITIVE_INFINITY)).code).toBe(3);
      // A refused call reserved nothing: there is nothing to settle.
      await generate('ray', 9900);
      const refused = await generate('ray', 100);
      expect(refused.effect).toBe('EFFECT_DENY');
      expect((await settleError(refused.decisionId, 0)).code).toBe(5);
      // Past the settle window (1 s here) a reservation cannot be settled.
      await new Promise((r) => setTimeout(r, 1200));
      const late = await settleError(fresh.decisionId, 0);
      expect(late.code).toBe(9); // FAILED_PRECONDITION
      expect(late.details).toContain('settle window');
    });
  });
}

describe('Settle through the decide core', () => {
  const decisionLog = useDecisionLog();
  it("lets only the caller that made a decision settle it: another caller's attempt is NOT_FOUND and changes nothing", async () => {
    const { policySet } = loadFiles({ 'policies.yaml': POLICIES });
    const log = decisionLog();
    const pipeline = new DecisionPipeline({ current: policySet }, log);
    const owner: CallMeta = { caller: 'uri:spiffe://acme/gateway', requestId: null };
    const thief: CallMeta = { caller: 'uri:spiffe://evil/client', requestId: null };
    const request = { principal: { id: 'sam', roles: [], attributes: {} }, action: 'generate', resource: { type: 'model', id: 'llm', attributes: {} }, context: { attributes: { max_tokens: 8000 } } };
    const decided = await pipeline.check(request, owner);
    expect(decided.decision).toMatchObject({ effect: 'ALLOW', limit: { remaining: 2000 } });
    expect(await pipeline.settle(decided.decisionId, 0, thief)).toMatchObject({ kind: 'unknown' });
    expect((await pipeline.check({ ...request, context: { attributes: { max_tokens: 3000 } } }, owner)).decision.effect).toBe('DENY');
    // The owner still can, from another connection (the same identity).
    expect(await pipeline.settle(decided.decisionId, 0, owner)).toMatchObject({ kind: 'settled', remaining: 10000 });
  });

  it('refuses a Settle whose request id is over the string cap, recorded with the id cut, before asking other processes', async () => {
    const { policySet } = loadFiles({ 'policies.yaml': POLICIES });
    const log = decisionLog();
    const asked: string[] = [];
    const pipeline = new DecisionPipeline({ current: policySet }, log, { settleElsewhere: async (decisionId) => (asked.push(decisionId), null) });
    const decisionId = '0190c6a8-0000-7000-8000-0000000000cc';
    const outcome = await pipeline.settle(decisionId, 1, { caller: 'uri:spiffe://acme/gateway', requestId: 'x'.repeat(900_000) });
    expect(outcome).toMatchObject({ kind: 'invalid', message: expect.stringContaining('request_id: 900000 characters, over the limit') });
    expect(asked).toEqual([]);
    const rows = queryDecisions(log.path, { action: 'settle', limit: 100 }).filter((r) => (r.details as { settle: { decisionId: string } }).settle.decisionId === decisionId);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.requestId!.length).toBeLessThan(100);
  });
});

describe('Settle when its row cannot be written', () => {
  const decisionLog = useDecisionLog();
  it('takes the correction back and leaves the decision open: no budget changes that no row shows', async () => {
    const { policySet } = loadFiles({ 'policies.yaml': POLICIES });
    const log = decisionLog();
    let settleRowsFail = false;
    // The real log, except that a Settle's row cannot be written while the disk is "full".
    const sink: DecisionSink = {
      path: log.path,
      append: (record) => (settleRowsFail && record.action === 'settle' ? Promise.reject(new VerdictError('DECISION_LOG_UNAVAILABLE', 'disk full')) : log.append(record)),
    };
    const pipeline = new DecisionPipeline({ current: policySet }, sink);
    const gateway: CallMeta = { caller: 'uri:spiffe://acme/gateway', requestId: null };
    const request = { principal: { id: 'uma', roles: [], attributes: {} }, action: 'generate', resource: { type: 'model', id: 'llm', attributes: {} }, context: { attributes: { max_tokens: 8000 } } };
    const decided = await pipeline.check(request, gateway);
    expect(decided.decision).toMatchObject({ effect: 'ALLOW', limit: { remaining: 2000 } });
    settleRowsFail = true;
    await expect(pipeline.settle(decided.decisionId, 0, gateway)).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
    settleRowsFail = false;
    // The 8,000 were not given back: 3,000 more is still refused.
    expect((await pipeline.check({ ...request, context: { attributes: { max_tokens: 3000 } } }, gateway)).decision.effect).toBe('DENY');
    // Once the log can be written, the same decision is settled.
    expect(await pipeline.settle(decided.decisionId, 0, gateway)).toMatchObject({ kind: 'settled', remaining: 10000 });
  });
});

describe('who counts as the caller that made a decision', () => {
  it('matches a peer address by its host, and an identity exactly', () => {
    expect(sameCaller('10.0.0.7:41234', '10.0.0.7:5000')).toBe(true);
    expect(sameCaller('[2001:db8::1]:41234', '[2001:DB8::1]:5000')).toBe(true);
    expect(sameCaller('2001:db8::1:41234', '2001:db8::1:5000')).toBe(true);
    expect(sameCaller('10.0.0.7:41234', '10.0.0.8:41234')).toBe(false);
    // An identity ending in digits is not a host and a port.
    expect(sameCaller('jwt:1001', 'jwt:1002')).toBe(false);
    expect(sameCaller('api-key:1001', 'api-key:1002')).toBe(false);
    expect(sameCaller('jwt:user:7', 'jwt:user:8')).toBe(false);
    expect(sameCaller('dns:gw.example:1', 'dns:gw.example:2')).toBe(false);
    expect(sameCaller('api-key:1001', 'api-key:1001')).toBe(true);
  });
});

describe('the book of decisions Settle may still correct, when full', () => {
  // One caller's flood of reservations (100 AuthZEN calls of 1,000 evaluations) evicted
  // every other caller's, oldest first: the gateway's Settle then found nothing, and its
  // unused tokens were never given back.
  const entry = (caller: string) => ({ caller, principalId: 'p', resourceType: 'model', resourceId: 'm', reservations: [] });

  it("takes from the caller holding the most, so a flood evicts the flooder's own entries", () => {
    const book = new SettlementBook(100);
    for (let i = 0; i < 30; i++) book.add(`gw-${i}`, entry('10.0.0.1:5000'), '10.0.0.1');
    for (let i = 0; i < 10_000; i++) book.add(`flood-${i}`, entry('api-key:pep'), 'api-key:pep');
    expect(book.size).toBe(100);
    for (let i = 0; i < 30; i++) expect(book.take(`gw-${i}`, '10.0.0.1:5001'), `gw-${i}`).not.toBe('unknown');
    // The flooder keeps its newest entries, within what is left.
    expect(book.take('flood-9999', 'api-key:pep')).not.toBe('unknown');
    expect(book.take('flood-0', 'api-key:pep')).toBe('unknown');
    expect(book.evictions).toBe(30 + 10_000 - 100);
  });

  it('a caller under its share still gets room: the largest holder gives it up', () => {
    const book = new SettlementBook(10);
    for (let i = 0; i < 10; i++) book.add(`a-${i}`, entry('api-key:a'), 'api-key:a');
    book.add('b-0', entry('api-key:b'), 'api-key:b');
    expect(book.take('b-0', 'api-key:b')).not.toBe('unknown');
    expect(book.take('a-0', 'api-key:a')).toBe('unknown');
    expect(book.take('a-9', 'api-key:a')).not.toBe('unknown');
    // Past their window, entries leave their group too: the groups do not keep them alive.
    let now = 0;
    const timed = new SettlementBook(4, 1000, () => now);
    for (let i = 0; i < 4; i++) timed.add(`old-${i}`, entry('api-key:a'), 'api-key:a');
    now = 5000;
    for (let i = 0; i < 4; i++) timed.add(`new-${i}`, entry('api-key:b'), 'api-key:b');
    for (let i = 0; i < 4; i++) expect(timed.take(`new-${i}`, 'api-key:b')).not.toBe('unknown');
  });
});

describe('Settle while Redis does not answer', () => {
  // After a failure Redis is left alone for retryMs: a Settle meanwhile is never sent.
  const server = useSettleServer(() => ({ backend: 'redis', redis: { url: redis.url, keyPrefix: `settle-down-${Date.now()}:` }, retryMs: 2000 }));
  const { generate, settle, settleError } = calls(() => server().client);

  /** Settles until Redis is asked again (retryMs after the failure): the outcome, or the last error. */
  const settleWhenBack = async (decisionId: string, units: number): Promise<Settled | ServiceError> => {
    for (let i = 0; ; i++) {
      const outcome = await settle(decisionId, units).catch((error: ServiceError) => error);
      if (!('code' in outcome) || outcome.code !== 14 || i >= 40) return outcome;
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  /** A fresh decision of `principal`, and a Settle of it made while Redis is stopped (after `first`, if given). */
  const settledWhilePaused = async (principal: string, first?: () => Promise<unknown>): Promise<{ decisionId: string; refused: ServiceError }> => {
    const call = await generate(principal, 0);
    expect(call).toMatchObject({ effect: 'EFFECT_ALLOW', remaining: '10000' });
    redis.pause();
    try {
      await first?.();
      return { decisionId: call.decisionId, refused: await settleError(call.decisionId, 10000) };
    } finally {
      redis.resume();
    }
  };

  it('answers UNAVAILABLE to a Settle never sent to Redis (known to be down), keeps it open, and charges it once when settled again', async () => {
    // A check that times out marks Redis down for retryMs (2 s): the Settle after it is never sent.
    const { refused, ...call } = await settledWhilePaused('wyn', () => generate('zed', 0));
    expect(refused.code).toBe(14); // UNAVAILABLE
    expect(refused.details).toContain(`nothing is lost: settle decision ${call.decisionId} again`);
    // Settled again once Redis is asked again: charged once, the whole budget.
    expect(await settleWhenBack(call.decisionId, 10000)).toMatchObject({ actualUnits: 10000, remaining: '0' });
    expect(await generate('wyn', 1)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
    expect((await settleError(call.decisionId, 10000)).code).toBe(6); // ALREADY_EXISTS
  }, 30_000);

  it('answers UNAVAILABLE to a Settle sent to Redis that timed out, and does not let it be settled again: Redis may have made it', async () => {
    const { refused, ...call } = await settledWhilePaused('yan');
    expect(refused.code).toBe(14); // UNAVAILABLE
    expect(refused.details).toContain(`it may have been made, so decision ${call.decisionId} is not settled again`);
    // Redis ran it once it could: charged once, and not again.
    expect((await settleWhenBack(call.decisionId, 10000) as ServiceError).code).toBe(6); // ALREADY_EXISTS
    let after: Answer | null = null;
    for (let i = 0; i < 40 && after?.reason !== 'REASON_DENIED_BY_RATE_LIMIT'; i++) {
      after = await generate('yan', 1);
      if (after.reason !== 'REASON_DENIED_BY_RATE_LIMIT') await new Promise((r) => setTimeout(r, 100));
    }
    expect(after).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
  }, 30_000);
});

describe('two Settles of one decision at once', () => {
  // Redis answers within 1 s or not at all: the first Settle, sent to a paused Redis, waits that long.
  const server = useSettleServer(() => ({ backend: 'redis', redis: { url: redis.url, keyPrefix: `settle-twice-${Date.now()}:` }, timeoutMs: 1000, retryMs: 200 }));
  const { generate, settleError } = calls(() => server().client);

  it('answers ABORTED, not ALREADY_EXISTS, to a Settle of a decision another Settle is still correcting: that one may leave it open', async () => {
    const call = await generate('vic', 0);
    expect(call).toMatchObject({ effect: 'EFFECT_ALLOW', remaining: '10000' });
    redis.pause();
    let first: ServiceError;
    let second: ServiceError;
    try {
      const firstAnswer = settleError(call.decisionId, 10000);
      await new Promise((r) => setTimeout(r, 200));
      second = await settleError(call.decisionId, 10000);
      first = await firstAnswer;
    } finally {
      redis.resume();
    }
    expect(second.code).toBe(10); // ABORTED
    expect(second.details).toContain(`another Settle of decision ${call.decisionId} has not answered yet`);
    expect(first.code).toBe(14); // UNAVAILABLE
    // The first timed out (Redis may have made it), so the decision is settled now.
    expect((await settleError(call.decisionId, 10000)).code).toBe(6); // ALREADY_EXISTS
  }, 30_000);
});

describe('Settle of a decision another process holds (settleElsewhere, --workers)', () => {
  const decisionLog = useDecisionLog();
  it('passes it on only when not held here; takes the holder\'s outcome; refuses as unavailable, recorded, when the others cannot be asked; a holder settles only what it claimed', async () => {
    const { policySet } = loadFiles({ 'policies.yaml': POLICIES });
    const log = decisionLog();
    const holder = new DecisionPipeline({ current: policySet }, log);
    let othersAnswer: 'holder' | 'none' | 'fail' | 'log-down' = 'holder';
    const asked: string[] = [];
    const taker = new DecisionPipeline({ current: policySet }, log, {
      settleElsewhere: async (decisionId, actualUnits, meta) => {
        asked.push(decisionId);
        if (othersAnswer === 'fail') throw new VerdictError('INTERNAL', 'a worker did not say in time');
        if (othersAnswer === 'log-down') throw new VerdictError('DECISION_LOG_UNAVAILABLE', 'the holder could not write its row');
        return othersAnswer === 'holder' ? holder.settleIfHeld(decisionId, actualUnits, meta) : null;
      },
    });
    const gateway: CallMeta = { caller: 'uri:spiffe://acme/gateway', requestId: null };
    const request = { principal: { id: 'val', roles: [], attributes: {} }, action: 'generate', resource: { type: 'model', id: 'llm', attributes: {} }, context: { attributes: { max_tokens: 8000 } } };
    const rowsOf = (id: string) => queryDecisions(log.path, { action: 'settle', limit: 100 }).filter((r) => (r.details as { settle: { decisionId: string } }).settle.decisionId === id);

    // Held here: settled here, nobody asked.
    const own = await taker.check(request, gateway);
    expect(await taker.settle(own.decisionId, 8000, gateway)).toMatchObject({ kind: 'settled' });
    expect(asked).toEqual([]);

    // Held by the other: settled there, with its budget, in one row.
    const theirs = await holder.check({ ...request, principal: { ...request.principal, id: 'wes' } }, gateway);
    expect(await taker.settle(theirs.decisionId, 1000, gateway)).toMatchObject({ kind: 'settled', reservedUnits: 8000, remaining: 9000 });
    expect(asked).toEqual([theirs.decisionId]);
    expect(rowsOf(theirs.decisionId).map((r) => r.effect)).toEqual(['ALLOW']);
    // Asked again, the holder says it is settled already (recorded there), not unknown.
    expect(await taker.settle(theirs.decisionId, 0, gateway)).toMatchObject({ kind: 'settled-already' });

    // Held nowhere: unknown, recorded here once.
    othersAnswer = 'none';
    const nowhere = '0190c6a8-0000-7000-8000-0000000000bb';
    expect(await taker.settle(nowhere, 5, gateway)).toMatchObject({ kind: 'unknown' });
    expect(rowsOf(nowhere)).toHaveLength(1);

    // The others could not be asked: unavailable (a retry finds out), recorded; the holder's decision stays open.
    othersAnswer = 'fail';
    const open = await holder.check({ ...request, principal: { ...request.principal, id: 'xia' } }, gateway);
    const outcome = await taker.settle(open.decisionId, 0, gateway);
    expect(outcome).toMatchObject({ kind: 'unavailable', message: expect.stringContaining('settle it again') });
    expect(rowsOf(open.decisionId).map((r) => r.effect)).toEqual(['DENY']);
    // The holder could not record its row (and so left the decision open): the same error here, and no row claiming the others could not be asked.
    othersAnswer = 'log-down';
    await expect(taker.settle(open.decisionId, 0, gateway)).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
    expect(rowsOf(open.decisionId)).toHaveLength(1);
    othersAnswer = 'holder';
    expect(await taker.settle(open.decisionId, 0, gateway)).toMatchObject({ kind: 'settled', remaining: 10000 });

    // The holder claims a Settle before it changes or records anything; one no longer waited for leaves the decision as it was.
    let claimed = 0;
    expect(await holder.settleIfHeld(nowhere, 0, gateway, () => (claimed++, true))).toBeNull();
    expect(claimed).toBe(0);
    const late = await holder.check({ ...request, principal: { ...request.principal, id: 'yul' } }, gateway);
    expect(await holder.settleIfHeld(late.decisionId, 0, gateway, () => (claimed++, false))).toBeNull();
    expect(claimed).toBe(1);
    expect(rowsOf(late.decisionId)).toHaveLength(0);
    expect(await holder.settleIfHeld(late.decisionId, 0, gateway, async () => true)).toMatchObject({ kind: 'settled', remaining: 10000 });
  });
});
