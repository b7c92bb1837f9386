import { describe, expect, it } from 'vitest';
import { DecisionPipeline, Suspensions, suspended, refusalDecision } from '../../src/decide/index.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import type { SuspensionState } from '../../src/types.js';
import { loadFiles, request, rolesDoc, rulesDoc } from '../helpers/policies.js';

// The suspension book the decide core asks on every check, with a clock the test moves.

function clock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

function suspension(principalId: string, since: number, ms: number, alertId = 'a-1'): SuspensionState {
  return { principalId, since, until: since + ms, alertId, alertType: 'probing', note: 'probing: 80% denied' };
}

describe('the suspension book', () => {
  it('holds a suspension until its end, then drops it (telling listeners it expired)', () => {
    const c = clock();
    const book = new Suspensions(c.now);
    const ended: [string, boolean][] = [];
    book.listen({ ended: (s, expired) => ended.push([s.principalId, expired]) });
    book.suspend(suspension('mallory', c.now(), 1000));
    expect(book.active('mallory')?.alertId).toBe('a-1');
    expect(book.active('alice')).toBeUndefined();
    c.advance(999);
    expect(book.active('mallory')).toBeDefined();
    c.advance(1);
    expect(book.active('mallory')).toBeUndefined();
    expect(book.size).toBe(0);
    expect(ended).toEqual([['mallory', true]]);
  });

  it('keeps the later end of two suspensions; a lift ends it at once', () => {
    const c = clock();
    const book = new Suspensions(c.now);
    book.suspend(suspension('m', c.now(), 10_000, 'long'));
    expect(book.suspend(suspension('m', c.now(), 1000, 'short')).alertId).toBe('long');
    expect(book.suspend(suspension('m', c.now(), 20_000, 'longer')).alertId).toBe('longer');
    expect(book.lift('m')?.alertId).toBe('longer');
    expect(book.lift('m')).toBeUndefined();
    expect(book.active('m')).toBeUndefined();
  });

  it('lists soonest to end first, sweeping the expired; replace takes up a store without telling listeners', () => {
    const c = clock();
    const book = new Suspensions(c.now);
    const told: string[] = [];
    book.listen({ suspended: (s) => told.push(s.principalId) });
    book.suspend(suspension('b', c.now(), 3000));
    book.suspend(suspension('a', c.now(), 2000));
    book.suspend(suspension('x', c.now(), 500));
    c.advance(600);
    expect(book.list().map((s) => s.principalId)).toEqual(['a', 'b']);
    book.replace([suspension('z', c.now(), 100), suspension('old', 0, 10)]);
    expect(book.list().map((s) => s.principalId)).toEqual(['z']);
    expect(told).toEqual(['b', 'a', 'x']);
  });
});

describe('the decide core refuses a suspended principal', () => {
  const policySet = loadFiles({
    'roles.yaml': rolesDoc([{ name: 'reader' }]),
    'rules.yaml': rulesDoc([{ id: 'readers', effect: 'allow', actions: ['read'], principal: { roles: ['reader'] }, resource: { type: 'doc' } }]),
  }).policySet;

  it('before the rules, with the alert and its end in the error and the row, until the clock passes it', async () => {
    const c = clock(Date.UTC(2026, 11, 4, 10, 0, 0));
    const book = new Suspensions(c.now);
    const rows: DecisionRecord[] = [];
    const pipeline = new DecisionPipeline({ current: policySet }, { path: 'memory', append: async (r) => void rows.push(r) }, { suspensions: book });
    const rita = request({ principal: { id: 'rita', roles: ['reader'] }, action: 'read', resource: { type: 'doc', id: 'd1' } });
    const meta = { caller: 'test', requestId: null };

    expect((await pipeline.check(rita, meta)).decision.effect).toBe('ALLOW');
    const s = book.suspend(suspension('rita', c.now(), 60_000));
    const refused = await pipeline.check(rita, meta);
    expect(refused.decision).toEqual({ ...refusalDecision(suspended(s), policySet.version), suspension: s });
    expect(refused.decision.errors).toEqual([{ ruleId: 'suspension', message: 'suspended until 2026-12-04T10:01:00.000Z after alert a-1 (probing)' }]);
    expect(rows[1]).toMatchObject({ reason: 'DENIED_BY_SUSPENSION', ruleIds: [], details: { suspension: { alertId: 'a-1', alertType: 'probing', since: s.since, until: s.until } } });
    // Batch and first-deny paths refuse it too.
    expect((await pipeline.checkBatch([rita, rita], meta)).map((r) => r.decision.reason)).toEqual(['DENIED_BY_SUSPENSION', 'DENIED_BY_SUSPENSION']);

    c.advance(60_000);
    expect((await pipeline.check(rita, meta)).decision.reason).toBe('ALLOWED_BY_RULE');
  });

  it('a manual suspension says so', () => {
    expect(suspended({ principalId: 'p', since: 0, until: 0, alertId: '', alertType: 'manual', note: 'INC-1' }).message).toBe('suspended until 1970-01-01T00:00:00.000Z by an operator');
  });
});
