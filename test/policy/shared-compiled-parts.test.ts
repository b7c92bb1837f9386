import { afterAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import type { CompiledRule } from '../../src/policy/policy-set.js';
import { loadFiles, removeTempDirs, request, rolesDoc, rulesDoc } from '../helpers/policies.js';

afterAll(removeTempDirs);

// Rules that repeat a matcher, a list of actions or types, the roles they name or a
// condition reading the principal's roles share one compiled copy of each: a large set
// then holds far fewer objects for a garbage collection to walk while checks wait. These
// tests hold the sharing to what it must never change: what each rule decides.

const roles = rolesDoc([
  { name: 'viewer' },
  { name: 'editor', inherits: ['viewer'] },
  { name: 'admin', inherits: ['editor'] },
]);

const tenantRule = (id: string, org: string, extra: object = {}) => ({
  id,
  effect: 'allow',
  actions: ['read', 'list'],
  resource: { type: 'model', attributes: { org } },
  principal: { roles: ['viewer'] },
  ...extra,
});

function byId(rules: readonly CompiledRule[]): Map<string, CompiledRule> {
  return new Map(rules.map((rule) => [rule.id, rule]));
}

describe('compiled parts shared between rules', () => {
  const policies = loadFiles({
    'roles.yaml': roles,
    'a.yaml': rulesDoc([tenantRule('a1', 'acme'), tenantRule('a2', 'acme', { when: '"editor" in principal.roles' })]),
    'b.yaml': rulesDoc([tenantRule('b1', 'acme', { when: '"editor" in principal.roles' }), tenantRule('b2', 'globex'), tenantRule('b3', 'acme', { principal: { roles: ['editor'] } })]),
  });
  const rules = byId(policies.policySet.rules);
  const rule = (id: string) => rules.get(id)!;

  it('shares what two rules wrote alike, across files', () => {
    expect(rule('a1').matchers[0]).toBe(rule('b1').matchers[0]);
    expect(rule('a1').actions).toBe(rule('b2').actions);
    expect(rule('a1').resourceTypes).toBe(rule('b2').resourceTypes);
    expect(rule('a1').roles).toBe(rule('b1').roles);
    expect(rule('a1').roleHolders).toBe(rule('b1').roleHolders);
    expect(rule('a2').condition).toBe(rule('b1').condition);
  });

  it('keeps apart what differs, and every shared part frozen', () => {
    expect(rule('b2').matchers[0]).not.toBe(rule('a1').matchers[0]);
    expect(rule('b2').matchers[0]!.expected).toBe('equals "globex"');
    expect(rule('b3').roleHolders).not.toBe(rule('a1').roleHolders);
    expect([...rule('b3').roleHolders!].sort()).toEqual(['admin', 'editor']);
    expect([...rule('a1').roleHolders!].sort()).toEqual(['admin', 'editor', 'viewer']);
    for (const part of [rule('a1').matchers[0], rule('a1').actions, rule('a1').resourceTypes, rule('a1').roles]) expect(Object.isFrozen(part)).toBe(true);
  });

  it('decides for each rule as written', () => {
    const ask = (org: string, roleNames: string[]) =>
      evaluate(policies.policySet, request({ principal: { roles: roleNames }, resource: { type: 'model', attributes: { org } } }));
    expect(ask('globex', ['viewer'])).toMatchObject({ effect: 'ALLOW', ruleIds: ['b2'] });
    expect([...ask('acme', ['viewer']).ruleIds].sort()).toEqual(['a1']);
    // An editor holds viewer by inheritance, and the shared condition sees the inherited roles.
    expect([...ask('acme', ['editor']).ruleIds].sort()).toEqual(['a1', 'a2', 'b1', 'b3']);
    expect(ask('initech', ['admin'])).toMatchObject({ effect: 'DENY' });
  });

  it('does not carry role holders over to a set whose roles inherit differently', () => {
    const flat = loadFiles({
      'roles.yaml': rolesDoc([{ name: 'viewer' }, { name: 'editor' }, { name: 'admin' }]),
      'a.yaml': rulesDoc([tenantRule('a1', 'acme')]),
    });
    const [only] = flat.policySet.rules;
    expect([...only!.roleHolders!]).toEqual(['viewer']);
    expect(evaluate(flat.policySet, request({ principal: { roles: ['editor'] }, resource: { type: 'model', attributes: { org: 'acme' } } })).effect).toBe('DENY');
  });
});
