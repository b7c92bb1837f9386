import { afterAll, describe, expect, it } from 'vitest';
import { Replayer, mergeTallies, newTally, type ReplayRow } from '../../src/analysis/replay.js';
import { loadFiles, removeTempDirs, rolesDoc, rulesDoc } from '../helpers/policies.js';

afterAll(() => removeTempDirs());

const set = loadFiles({
  'roles.yaml': rolesDoc([{ name: 'reader' }]),
  'rules.yaml': rulesDoc([
    { id: 'readers', effect: 'allow', actions: ['read'], principal: { roles: ['reader'] } },
    { id: 'no-secrets', effect: 'deny', actions: ['*'], resource: { attributes: { level: 'secret' } } },
  ]),
}).policySet;

const HMAC = `hmac-sha256:${'ab'.repeat(32)}`;

function row(seq: number, over: Partial<{ [K in keyof ReplayRow]: ReplayRow[K] }> = {}): ReplayRow {
  return {
    seq,
    decisionId: `d-${seq}`,
    principalId: 'p',
    action: 'read',
    resourceType: 'doc',
    resourceId: 'x',
    effect: 'ALLOW',
    reason: 'ALLOWED_BY_RULE',
    ruleIds: '["readers"]',
    errors: '[]',
    request: JSON.stringify({ principal: { roles: ['reader'], attributes: {} }, resource: { attributes: {} }, context: { attributes: {} } }),
    details: null,
    ...over,
  };
}

describe('Replayer', () => {
  it('sorts each row into one bucket: replayed, refused, admin, masked or unreadable', () => {
    const r = new Replayer(set, null, { examples: 2 });
    r.add(row(1));
    r.add(row(2, { reason: 'DENIED_INVALID_REQUEST', effect: 'DENY' }));
    r.add(row(3, { reason: 'DENIED_BY_RATE_LIMIT', effect: 'DENY' }));
    r.add(row(4, { reason: 'DENIED_BY_DEFAULT', effect: 'DENY', errors: '[{"ruleId":"route","message":"no route matches GET /x"}]', details: '{"http":{"method":"GET","path":"/x"}}' }));
    r.add(row(5, { resourceType: 'verdict.admin', details: '{"admin":{"method":"GetPolicyStatus"}}' }));
    r.add(row(6, { request: JSON.stringify({ principal: { roles: ['reader'], attributes: { tags: [HMAC] } }, resource: { attributes: {} }, context: { attributes: { ip: HMAC } } }) }));
    r.add(row(7, { request: 'not json' }));
    r.add(row(8, { effect: 'MAYBE' }));
    let deep: unknown = HMAC;
    for (let i = 0; i < 200; i++) deep = { x: deep };
    r.add(row(9, { request: JSON.stringify({ principal: { roles: [], attributes: { deep } }, resource: { attributes: {} }, context: { attributes: {} } }) }));
    r.add(row(10, { request: JSON.stringify({ principal: { roles: 'reader', attributes: {} }, resource: { attributes: {} }, context: { attributes: {} } }) }));
    // A value that only looks like a hash prefix is an ordinary value.
    r.add(row(11, { request: JSON.stringify({ principal: { roles: ['reader'], attributes: { note: 'hmac-sha256:short' } }, resource: { attributes: {} }, context: { attributes: {} } }) }));
    const t = r.tally;
    expect(t.rows).toBe(11);
    expect(t.replayed).toBe(2);
    expect(t.unchanged).toBe(2);
    expect([...t.refused].map(([k, g]) => [k, g.count])).toEqual([['DENIED_INVALID_REQUEST', 1], ['DENIED_BY_RATE_LIMIT', 1], ['NO_ROUTE', 1]]);
    expect(t.admin.count).toBe(1);
    expect(t.masked.count).toBe(1);
    expect(Object.fromEntries(t.masked.byPath)).toEqual({ 'principal.attributes.tags[]': 1, 'context.attributes.ip': 1 });
    expect(t.unreadable.count).toBe(4);
    expect(t.unreadable.examples).toEqual([[7, 'd-7'], [8, 'd-8']]);
  });

  it('explains a flip by the rules behind the new answer, or the allows that no longer match', () => {
    const r = new Replayer(set, null, { examples: 5 });
    r.add(row(1, { request: JSON.stringify({ principal: { roles: ['reader'], attributes: {} }, resource: { attributes: { level: 'secret' } }, context: { attributes: {} } }) }));
    r.add(row(2, { request: JSON.stringify({ principal: { roles: [], attributes: {} }, resource: { attributes: {} }, context: { attributes: {} } }), ruleIds: '["old-rule"]' }));
    r.add(row(3, { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: '[]' }));
    const flips = r.tally.flips;
    expect(flips.ALLOW_TO_DENY.count).toBe(2);
    expect([...flips.ALLOW_TO_DENY.byRule.keys()]).toEqual(['denies\0no-secrets', 'no longer allows\0old-rule']);
    expect([...flips.DENY_TO_ALLOW.byRule.keys()]).toEqual(['allows\0readers']);
  });

  it('merges tallies of ranges into the tally of the whole, earliest examples first', () => {
    const whole = new Replayer(set, null, { examples: 2 });
    const a = new Replayer(set, null, { examples: 2 });
    const b = new Replayer(set, null, { examples: 2 });
    const rows = Array.from({ length: 10 }, (_, i) => row(i + 1, { effect: i % 2 === 0 ? 'DENY' : 'ALLOW', principalId: `p${i % 3}` }));
    for (const x of rows) whole.add(x);
    for (const x of rows.slice(5)) b.add(x);
    for (const x of rows.slice(0, 5)) a.add(x);
    const merged = newTally();
    mergeTallies(merged, b.tally, 2);
    mergeTallies(merged, a.tally, 2);
    expect(merged.flips.DENY_TO_ALLOW.count).toBe(whole.tally.flips.DENY_TO_ALLOW.count);
    expect(merged.flips.DENY_TO_ALLOW.examples).toEqual(whole.tally.flips.DENY_TO_ALLOW.examples);
    expect(new Map([...merged.flips.DENY_TO_ALLOW.byPrincipal].sort())).toEqual(new Map([...whole.tally.flips.DENY_TO_ALLOW.byPrincipal].sort()));
  });
});
