import { afterAll, describe, expect, it } from 'vitest';
import { Replayer, RequestDecoder, mergeTallies, newTally, type ReplayRow } from '../../src/analysis/replay.js';
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

  it("applies the candidate's attribute schema: a recorded request it would refuse is a flip to deny, grouped under rule schema", () => {
    const schemaDoc = (enforcement: string): string => `kind: schema\nenforcement: ${enforcement}\nschemas:\n  - for: principal\n    attributes:\n      team: { type: string, required: true }\n`;
    const files = { 'roles.yaml': rolesDoc([{ name: 'reader' }]), 'rules.yaml': rulesDoc([{ id: 'readers', effect: 'allow', actions: ['read'], principal: { roles: ['reader'] } }]) };
    const withTeam = JSON.stringify({ principal: { roles: ['reader'], attributes: { team: 'red' } }, resource: { attributes: {} }, context: { attributes: {} } });
    const rejecting = new Replayer(loadFiles({ ...files, 'schema.yaml': schemaDoc('reject') }).policySet, null, { examples: 5 });
    rejecting.add(row(1));
    rejecting.add(row(2, { request: withTeam }));
    expect(rejecting.tally).toMatchObject({ replayed: 2, unchanged: 1 });
    expect(rejecting.tally.flips.ALLOW_TO_DENY.count).toBe(1);
    expect([...rejecting.tally.flips.ALLOW_TO_DENY.byRule.keys()]).toEqual(['refused\0schema']);
    // warn and none decide as usual: nothing flips.
    for (const enforcement of ['warn', 'none']) {
      const lenient = new Replayer(loadFiles({ ...files, 'schema.yaml': schemaDoc(enforcement) }).policySet, null, { examples: 5 });
      lenient.add(row(1));
      expect(lenient.tally).toMatchObject({ replayed: 1, unchanged: 1 });
    }
    // Against a baseline set with the same schema, the refusal is no change.
    const baseline = new Replayer(loadFiles({ ...files, 'schema.yaml': schemaDoc('reject') }).policySet, loadFiles({ ...files, 'schema.yaml': schemaDoc('reject') }).policySet, { examples: 5 });
    baseline.add(row(1));
    expect(baseline.tally).toMatchObject({ replayed: 1, unchanged: 1 });
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

  it('decides a repeated request once, yet counts each row by its own recorded answer and ids', () => {
    const r = new Replayer(set, null, { examples: 10 });
    for (let i = 1; i <= 6; i++) r.add(row(i, { effect: i % 2 === 0 ? 'DENY' : 'ALLOW', principalId: i > 4 ? 'q' : 'p' }));
    // The same stored request for another resource id, then one the candidate denies.
    r.add(row(7, { resourceId: 'y' }));
    r.add(row(8, { principalId: 'p', request: JSON.stringify({ principal: { roles: ['reader'], attributes: {} }, resource: { attributes: { level: 'secret' } }, context: { attributes: {} } }) }));
    const t = r.tally;
    expect(t.replayed).toBe(8);
    expect(t.flips.DENY_TO_ALLOW.examples.map((e) => e[0])).toEqual([2, 4, 6]);
    expect(Object.fromEntries([...t.flips.DENY_TO_ALLOW.byPrincipal].map(([k, g]) => [k, g.count]))).toEqual({ p: 2, q: 1 });
    expect(t.flips.ALLOW_TO_DENY.examples.map((e) => e[0])).toEqual([8]);
  });
});

describe('RequestDecoder', () => {
  const full = (text: string): unknown => {
    const stored = JSON.parse(text) as { principal: { roles: unknown; attributes: unknown }; resource: { attributes: unknown }; context: { attributes: unknown } };
    return { principal: { id: 'p', roles: stored.principal.roles, attributes: stored.principal.attributes }, action: 'read', resource: { type: 'doc', id: 'x', attributes: stored.resource.attributes }, context: { attributes: stored.context.attributes } };
  };
  const p = '{"roles":["reader"],"attributes":{"org":"acme"}}';
  const r = '{"attributes":{"env":"prod"}}';
  // Texts that reuse the cached parts' text at other places, nest the separators, repeat keys or add keys: each must read as a full parse does.
  const texts = [
    `{"principal":${p},"resource":${r},"context":{"attributes":{"ip":"10.0.0.1"}}}`,
    `{"principal":${p},"resource":${r},"context":{"attributes":{"ip":"10.0.0.2"}}}`,
    `{"principal":{"roles":[],"attributes":{"x":{},"resource":{"attributes":{}},"context":{"attributes":{}}}},"resource":${r},"context":{"attributes":{}}}`,
    `{"principal":${p},"resource":{"attributes":{"a":1,"context":{"attributes":{"b":2}}}},"context":{"attributes":{}}}`,
    `{"principal":${p},"resource":${r},"context":{"attributes":{}},"principal":{"roles":["admin"],"attributes":{}}}`,
    `{"principal":${p},"resource":${r},"context":{"attributes":{}},"extra":1}`,
    `{"principal":${p},"principal":{"roles":["admin"],"attributes":{}},"resource":${r},"context":{"attributes":{}}}`,
    `{"principal":${p},"resource":${r},"resource":{"attributes":{"env":"dev"}},"context":{"attributes":{}}}`,
    `{"principal":${p},"resource":${r},"context":{"attributes":{"s":"},\\"context\\":{"}}}`,
  ];
  it('reads every stored request exactly as a full parse does, whatever it has cached', () => {
    const decoder = new RequestDecoder();
    for (let round = 0; round < 3; round++) {
      for (const text of round === 1 ? [...texts].reverse() : texts) expect(decoder.decode(row(1, { request: text }))).toEqual(full(text));
    }
    expect(decoder.decode(row(1, { request: `{"principal":${p},"resource":${r},"context":{"attributes":` }))).toBeNull();
  });
});
