import { afterAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import type { Decision } from '../../src/types.js';
import type { PolicySet } from '../../src/policy/policy-set.js';
import { loadFiles, removeTempDirs, request, rolesDoc, rulesDoc, type RequestSpec } from '../helpers/policies.js';

afterAll(removeTempDirs);

/** A policy set of just these rules, in one file. */
function setOf(...rules: object[]): PolicySet {
  return loadFiles({ 'rules.yaml': rulesDoc(rules) }).policySet;
}

function decide(policySet: PolicySet, spec: RequestSpec = {}): Decision {
  return evaluate(policySet, request(spec));
}

const allow = (id: string, extra: object = {}) => ({ id, effect: 'allow', actions: ['read'], ...extra });
const deny = (id: string, extra: object = {}) => ({ id, effect: 'deny', actions: ['read'], ...extra });

describe('combining', () => {
  it('a matching deny overrides a matching allow, whatever the order in the file', () => {
    for (const rules of [[allow('a'), deny('d')], [deny('d'), allow('a')]]) {
      const decision = decide(setOf(...rules));
      expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_RULE', ruleIds: ['d'], errors: [] });
    }
  });

  it('a deny overrides allows that come from other files and from roles', () => {
    const { policySet } = loadFiles({
      'a-allow.yaml': rulesDoc([allow('allow-all-read', { actions: ['*'] })]),
      'roles.yaml': rolesDoc([{ name: 'reader', permissions: [{ id: 'read', actions: ['read'] }] }]),
      'z-deny.yaml': rulesDoc([deny('deny-secret', { resource: { attributes: { classification: 'secret' } } })]),
    });
    const secret = { principal: { roles: ['reader'] }, resource: { attributes: { classification: 'secret' } } };
    expect(decide(policySet, secret)).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_RULE', ruleIds: ['deny-secret'] });
    const open = { principal: { roles: ['reader'] }, resource: { attributes: { classification: 'public' } } };
    expect(decide(policySet, open)).toMatchObject({ effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['allow-all-read', 'role:reader:read'] });
  });

  it('names every matching deny, and every matching allow', () => {
    const denies = setOf(deny('d2'), deny('d1'), allow('a1'), deny('d3', { resource: { type: 'other' } }));
    expect(decide(denies).ruleIds).toEqual(['d1', 'd2']);
    const allows = setOf(allow('a2'), allow('a1'), allow('a3', { principal: { id: 'bob' } }));
    expect(decide(allows)).toMatchObject({ effect: 'ALLOW', ruleIds: ['a1', 'a2'] });
  });

  it('denies by default when no rule matches, naming no rule', () => {
    const policySet = setOf(allow('read-only'));
    expect(decide(policySet, { action: 'write' })).toEqual({
      effect: 'DENY',
      reason: 'DENIED_BY_DEFAULT',
      ruleIds: [],
      errors: [],
      policyVersion: policySet.version,
    });
  });

  it('denies by default with an empty policy directory', () => {
    const { policySet } = loadFiles({});
    expect(policySet.rules).toHaveLength(0);
    expect(decide(policySet)).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
  });

  it('a deny that does not match leaves the allow standing', () => {
    const policySet = setOf(allow('a'), deny('d', { principal: { attributes: { status: 'suspended' } } }));
    expect(decide(policySet, { principal: { attributes: { status: 'active' } } })).toMatchObject({ effect: 'ALLOW', ruleIds: ['a'] });
    expect(decide(policySet, { principal: { attributes: { status: 'suspended' } } })).toMatchObject({ effect: 'DENY', ruleIds: ['d'] });
  });

  it('every decision carries the policy version of its set', () => {
    const policySet = setOf(allow('a'));
    expect(policySet.version).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(decide(policySet).policyVersion).toBe(policySet.version);
    expect(decide(policySet, { action: 'nope' }).policyVersion).toBe(policySet.version);
    const other = setOf(allow('b'));
    expect(decide(other).policyVersion).not.toBe(policySet.version);
  });
});

describe('roles', () => {
  const { policySet } = loadFiles({
    'roles.yaml': rolesDoc([
      { name: 'viewer', permissions: [{ id: 'read-docs', actions: ['read', 'list'], resources: ['document'] }, { actions: ['preview'] }] },
      { name: 'analyst', inherits: ['viewer'], permissions: [{ id: 'query', actions: ['query'], resources: ['dataset'] }] },
      { name: 'data_scientist', inherits: ['analyst'] },
      { name: 'auditor', permissions: [{ id: 'audit', actions: ['audit'] }] },
      { name: 'admin', inherits: ['data_scientist', 'auditor'] },
    ]),
    'rules.yaml': rulesDoc([
      { id: 'analysts-export', effect: 'allow', actions: ['export'], principal: { roles: ['analyst'] } },
      { id: 'no-export-secret', effect: 'deny', actions: ['export'], principal: { roles: ['viewer'] }, resource: { attributes: { secret: true } } },
    ]),
  });
  const as = (roles: string[], action: string, type = 'document', attributes: Record<string, unknown> = {}) =>
    decide(policySet, { principal: { roles }, action, resource: { type, attributes } });

  it('a permission is an allow rule named role:<role>:<permission id>', () => {
    expect(as(['viewer'], 'read')).toMatchObject({ effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['role:viewer:read-docs'] });
    const rule = policySet.rules.find((r) => r.id === 'role:viewer:read-docs');
    expect(rule).toMatchObject({ effect: 'ALLOW', origin: 'role', resourceTypes: ['document'], actions: ['read', 'list'] });
  });

  it('a permission without an id is named by its index in the role', () => {
    expect(as(['viewer'], 'preview', 'anything')).toMatchObject({ effect: 'ALLOW', ruleIds: ['role:viewer:1'] });
  });

  it('a permission limited to resource types grants nothing on other types', () => {
    expect(as(['viewer'], 'read', 'dataset')).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
  });

  it('a role holds every permission of the roles it inherits, transitively', () => {
    expect(as(['analyst'], 'read')).toMatchObject({ effect: 'ALLOW', ruleIds: ['role:viewer:read-docs'] });
    expect(as(['data_scientist'], 'read')).toMatchObject({ effect: 'ALLOW', ruleIds: ['role:viewer:read-docs'] });
    expect(as(['data_scientist'], 'query', 'dataset')).toMatchObject({ effect: 'ALLOW', ruleIds: ['role:analyst:query'] });
    expect(as(['admin'], 'audit', 'log')).toMatchObject({ effect: 'ALLOW', ruleIds: ['role:auditor:audit'] });
    expect(as(['admin'], 'preview', 'x')).toMatchObject({ effect: 'ALLOW', ruleIds: ['role:viewer:1'] });
  });

  it('inheritance does not run backwards', () => {
    expect(as(['viewer'], 'query', 'dataset')).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
    expect(as(['analyst'], 'audit', 'log')).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
  });

  it('unknown or no roles get nothing', () => {
    expect(as([], 'read')).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
    expect(as(['superuser'], 'read')).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
  });

  it('a rule naming a role also matches holders of roles that inherit it', () => {
    expect(as(['analyst'], 'export')).toMatchObject({ effect: 'ALLOW', ruleIds: ['analysts-export'] });
    expect(as(['admin'], 'export')).toMatchObject({ effect: 'ALLOW', ruleIds: ['analysts-export'] });
    expect(as(['viewer'], 'export')).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
    // The deny names viewer: it reaches admins, who inherit viewer, and overrides their grant.
    expect(as(['admin'], 'export', 'document', { secret: true })).toMatchObject({ effect: 'DENY', ruleIds: ['no-export-secret'] });
  });

  it('holding any one of several roles is enough', () => {
    expect(as(['guest', 'auditor'], 'audit')).toMatchObject({ effect: 'ALLOW', ruleIds: ['role:auditor:audit'] });
  });

  it('the compiled roles list their effective roles', () => {
    expect(policySet.roles.get('admin')?.effectiveRoles).toEqual(['admin', 'analyst', 'auditor', 'data_scientist', 'viewer']);
    expect(policySet.roles.get('viewer')?.effectiveRoles).toEqual(['viewer']);
  });

  it('a role permission with a condition grants only when the condition holds', () => {
    const set = loadFiles({
      'roles.yaml': rolesDoc([
        { name: 'member', permissions: [{ id: 'own-org', actions: ['read'], when: 'resource.attributes.org == principal.attributes.org' }] },
      ]),
    }).policySet;
    const ask = (org: string) => decide(set, { principal: { roles: ['member'], attributes: { org: 'acme' } }, resource: { attributes: { org } } });
    expect(ask('acme')).toMatchObject({ effect: 'ALLOW', ruleIds: ['role:member:own-org'] });
    expect(ask('globex')).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
  });
});

describe('matchers', () => {
  type Case = [label: string, matcher: unknown, value: unknown, matches: boolean];
  const ABSENT = Symbol('absent');
  const cases: Case[] = [
    ['equals a string', 'production', 'production', true],
    ['equals: other string', 'production', 'staging', false],
    ['equals: absent', 'production', ABSENT, false],
    ['equals: case matters', 'production', 'Production', false],
    ['equals a number', 3, 3, true],
    ['equals a number: not its string', 3, '3', false],
    ['equals a boolean', true, true, true],
    ['equals a boolean: not a truthy string', true, 'true', false],
    ['{equals}', { equals: 'eu' }, 'eu', true],
    ['{equals}: other', { equals: 'eu' }, 'us', false],
    ['any-of list: first', ['eu', 'us'], 'eu', true],
    ['any-of list: second', ['eu', 'us'], 'us', true],
    ['any-of list: none', ['eu', 'us'], 'apac', false],
    ['any-of list: absent', ['eu', 'us'], ABSENT, false],
    ['any-of list: a list value is not a member', ['eu', 'us'], ['eu'], false],
    ['{anyOf}', { anyOf: [1, 2] }, 2, true],
    ['{anyOf}: none', { anyOf: [1, 2] }, 3, false],
    ['{notAnyOf}: other value', { notAnyOf: ['banned', 'suspended'] }, 'active', true],
    ['{notAnyOf}: listed value', { notAnyOf: ['banned', 'suspended'] }, 'suspended', false],
    ['{notAnyOf}: absent does not match', { notAnyOf: ['banned'] }, ABSENT, false],
    ['{glob} prefix', { glob: 'acme-*' }, 'acme-prod', true],
    ['{glob} prefix: empty rest', { glob: 'acme-*' }, 'acme-', true],
    ['{glob} is anchored at the start', { glob: 'acme-*' }, 'globex-acme-1', false],
    ['{glob} is case-sensitive', { glob: 'acme-*' }, 'ACME-prod', false],
    ['{glob} needs the literal part', { glob: 'acme-*' }, 'acme', false],
    ['{glob} on a non-string', { glob: '1*' }, 12, false],
    ['{glob} on absent', { glob: '*' }, ABSENT, false],
    ['{glob} star alone matches any string', { glob: '*' }, '', true],
    ['{glob} ? is one character', { glob: 'v?' }, 'v1', true],
    ['{glob} ? is exactly one character', { glob: 'v?' }, 'v12', false],
    ['{glob} dots are literal', { glob: 'v1.2.*' }, 'v1x2.3', false],
    ['{glob} dots match dots', { glob: 'v1.2.*' }, 'v1.2.3', true],
    ['{glob} suffix and infix', { glob: '*-prod-*' }, 'eu-prod-7', true],
    ['{glob} list: first', { glob: ['acme-*', '*-test'] }, 'acme-x', true],
    ['{glob} list: second', { glob: ['acme-*', '*-test'] }, 'globex-test', true],
    ['{glob} list: neither', { glob: ['acme-*', '*-test'] }, 'globex-prod', false],
    ['{exists: true} present', { exists: true }, 'x', true],
    ['{exists: true} present but false', { exists: true }, false, true],
    ['{exists: true} absent', { exists: true }, ABSENT, false],
    ['{exists: false} absent', { exists: false }, ABSENT, true],
    ['{exists: false} present', { exists: false }, 'x', false],
  ];

  it.each(cases)('%s', (_label, matcher, value, matches) => {
    const policySet = setOf(allow('m', { resource: { attributes: { env: matcher } } }));
    const attributes = value === ABSENT ? {} : { env: value };
    const decision = decide(policySet, { resource: { attributes } });
    expect(decision.effect).toBe(matches ? 'ALLOW' : 'DENY');
    expect(decision.ruleIds).toEqual(matches ? ['m'] : []);
  });

  it('matchers on principal and context attributes', () => {
    const policySet = setOf(allow('m', { principal: { attributes: { org: { glob: 'acme*' } } }, context: { attributes: { network: ['vpn', 'office'] } } }));
    expect(decide(policySet, { principal: { attributes: { org: 'acme-eu' } }, context: { network: 'vpn' } }).effect).toBe('ALLOW');
    expect(decide(policySet, { principal: { attributes: { org: 'acme-eu' } }, context: { network: 'cafe' } }).effect).toBe('DENY');
    expect(decide(policySet, { principal: { attributes: { org: 'globex' } }, context: { network: 'vpn' } }).effect).toBe('DENY');
    // A context attribute is not read from the principal, and vice versa.
    expect(decide(policySet, { principal: { attributes: { org: 'acme', network: 'vpn' } } }).effect).toBe('DENY');
  });

  it('every matcher of a rule must hold', () => {
    const policySet = setOf(allow('m', { resource: { attributes: { env: 'prod', tier: [1, 2] } } }));
    expect(decide(policySet, { resource: { attributes: { env: 'prod', tier: 2 } } }).effect).toBe('ALLOW');
    expect(decide(policySet, { resource: { attributes: { env: 'prod', tier: 3 } } }).effect).toBe('DENY');
    expect(decide(policySet, { resource: { attributes: { env: 'dev', tier: 1 } } }).effect).toBe('DENY');
  });

  it('dotted attribute names read nested maps', () => {
    const policySet = setOf(allow('m', { resource: { attributes: { 'labels.team': 'ml', 'labels.cost.centre': { glob: 'cc-*' } } } }));
    const nested = { labels: { team: 'ml', cost: { centre: 'cc-42' } } };
    expect(decide(policySet, { resource: { attributes: nested } })).toMatchObject({ effect: 'ALLOW', ruleIds: ['m'] });
    expect(decide(policySet, { resource: { attributes: { labels: { team: 'web', cost: { centre: 'cc-42' } } } } }).effect).toBe('DENY');
    expect(decide(policySet, { resource: { attributes: { labels: { team: 'ml' } } } }).effect).toBe('DENY');
    expect(decide(policySet, { resource: { attributes: { labels: 'ml' } } }).effect).toBe('DENY');
    expect(decide(policySet, { resource: { attributes: { labels: ['ml'] } } }).effect).toBe('DENY');
    expect(decide(policySet, { resource: { attributes: {} } }).effect).toBe('DENY');
  });

  it('{exists: false} on a nested path matches when an intermediate map is missing', () => {
    const policySet = setOf(allow('m', { resource: { attributes: { 'labels.frozen': { exists: false } } } }));
    expect(decide(policySet, { resource: { attributes: {} } }).effect).toBe('ALLOW');
    expect(decide(policySet, { resource: { attributes: { labels: { frozen: true } } } }).effect).toBe('DENY');
  });

  it('principal.id and resource.id matchers', () => {
    const policySet = setOf(allow('m', { principal: { id: { glob: 'svc-*' } }, resource: { id: ['model-a', 'model-b'] } }));
    expect(decide(policySet, { principal: { id: 'svc-batch' }, resource: { id: 'model-b' } }).effect).toBe('ALLOW');
    expect(decide(policySet, { principal: { id: 'alice' }, resource: { id: 'model-b' } }).effect).toBe('DENY');
    expect(decide(policySet, { principal: { id: 'svc-batch' }, resource: { id: 'model-c' } }).effect).toBe('DENY');
    const exact = setOf(allow('m', { principal: { id: 'alice' } }));
    expect(decide(exact, { principal: { id: 'alice' } }).effect).toBe('ALLOW');
    expect(decide(exact, { principal: { id: 'alicia' } }).effect).toBe('DENY');
  });

  it('an attribute the request does not carry is absent, even if its name is an Object.prototype property', () => {
    // A request without these attributes must not satisfy {exists: true} or {notAnyOf}.
    const policySet = setOf(
      allow('needs-constructor', { principal: { attributes: { constructor: { exists: true } } } }),
      allow('needs-tostring', { actions: ['write'], resource: { attributes: { toString: { notAnyOf: ['x'] } } } }),
    );
    expect(decide(policySet, { action: 'read' })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
    expect(decide(policySet, { action: 'write' })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
  });
});

describe('actions and resource types', () => {
  it('the action "*" matches every action', () => {
    const policySet = setOf(allow('any', { actions: ['*'] }));
    for (const action of ['read', 'write', 'delete', 'some-new-verb']) {
      expect(decide(policySet, { action })).toMatchObject({ effect: 'ALLOW', ruleIds: ['any'] });
    }
  });

  it('an exact action matches only itself', () => {
    const policySet = setOf(allow('rw', { actions: ['read', 'write'] }));
    expect(decide(policySet, { action: 'read' }).effect).toBe('ALLOW');
    expect(decide(policySet, { action: 'write' }).effect).toBe('ALLOW');
    expect(decide(policySet, { action: 'reads' }).effect).toBe('DENY');
    expect(decide(policySet, { action: 'Read' }).effect).toBe('DENY');
  });

  it('a wildcard deny overrides an exact allow', () => {
    const policySet = setOf(allow('read'), deny('freeze', { actions: ['*'], resource: { attributes: { frozen: true } } }));
    expect(decide(policySet, { resource: { attributes: { frozen: true } } })).toMatchObject({ effect: 'DENY', ruleIds: ['freeze'] });
  });

  it('a rule without a resource type applies to every type, including types no rule names', () => {
    const policySet = setOf(allow('untyped'), allow('models-only', { resource: { type: 'model' } }));
    expect(decide(policySet, { resource: { type: 'model' } }).ruleIds).toEqual(['models-only', 'untyped']);
    expect(decide(policySet, { resource: { type: 'dataset' } }).ruleIds).toEqual(['untyped']);
    expect(decide(policySet, { resource: { type: 'never-mentioned' } }).ruleIds).toEqual(['untyped']);
  });

  it('a rule for a list of types applies to each of them and no other', () => {
    const policySet = setOf(allow('two', { resource: { type: ['model', 'dataset'] } }));
    expect(decide(policySet, { resource: { type: 'model' } }).effect).toBe('ALLOW');
    expect(decide(policySet, { resource: { type: 'dataset' } }).effect).toBe('ALLOW');
    expect(decide(policySet, { resource: { type: 'prompt' } }).effect).toBe('DENY');
  });
});

describe('conditions (CEL when)', () => {
  const policySet = setOf(
    allow('same-org', { when: 'resource.attributes.org == principal.attributes.org' }),
    allow('writers', { actions: ['write'], when: '"writer" in principal.roles && action == "write"' }),
    allow('dyn-flag', { actions: ['flag'], when: 'principal.attributes.flag' }),
  );

  it('a true condition lets the rule match', () => {
    const decision = decide(policySet, { principal: { attributes: { org: 'acme' } }, resource: { attributes: { org: 'acme' } } });
    expect(decision).toMatchObject({ effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['same-org'], errors: [] });
  });

  it('a false condition means no match, not an error', () => {
    const decision = decide(policySet, { principal: { attributes: { org: 'acme' } }, resource: { attributes: { org: 'globex' } } });
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], errors: [] });
  });

  it('conditions see principal.roles and action', () => {
    expect(decide(policySet, { action: 'write', principal: { roles: ['writer'] } }).effect).toBe('ALLOW');
    expect(decide(policySet, { action: 'write', principal: { roles: ['reader'] } }).effect).toBe('DENY');
  });

  it('a condition of dynamic type must still produce a boolean at run time', () => {
    expect(decide(policySet, { action: 'flag', principal: { attributes: { flag: true } } })).toMatchObject({ effect: 'ALLOW' });
    expect(decide(policySet, { action: 'flag', principal: { attributes: { flag: false } } })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
    const decision = decide(policySet, { action: 'flag', principal: { attributes: { flag: 'yes' } } });
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['dyn-flag'] });
    expect(decision.errors).toEqual([{ ruleId: 'dyn-flag', message: expect.stringContaining('string') }]);
  });
});

describe('errors fail closed', () => {
  const orgCheck = 'resource.attributes.org == principal.attributes.org';

  it('an erroring allow never grants: DENIED_BY_ERROR names the rule and the error', () => {
    const policySet = setOf(allow('same-org', { when: orgCheck }));
    const decision = decide(policySet, { resource: { attributes: { org: 'acme' } } }); // principal has no org
    expect(decision.effect).toBe('DENY');
    expect(decision.reason).toBe('DENIED_BY_ERROR');
    expect(decision.ruleIds).toEqual(['same-org']);
    expect(decision.errors).toHaveLength(1);
    expect(decision.errors[0]).toMatchObject({ ruleId: 'same-org' });
    expect(decision.errors[0]!.message).toMatch(/org/);
  });

  it('a type error in a condition is an error too', () => {
    const policySet = setOf(allow('tier', { when: 'principal.attributes.tier > 2' }));
    expect(decide(policySet, { principal: { attributes: { tier: 3 } } }).effect).toBe('ALLOW');
    const decision = decide(policySet, { principal: { attributes: { tier: 'gold' } } });
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['tier'] });
    expect(decision.errors.map((e) => e.ruleId)).toEqual(['tier']);
  });

  it('another matching allow still allows, and the error is still listed', () => {
    const policySet = setOf(allow('same-org', { when: orgCheck }), allow('public', { resource: { attributes: { public: true } } }));
    const decision = decide(policySet, { resource: { attributes: { org: 'acme', public: true } } });
    expect(decision).toMatchObject({ effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['public'] });
    expect(decision.errors).toEqual([{ ruleId: 'same-org', message: expect.any(String) }]);
  });

  it('an erroring deny denies with DENIED_BY_ERROR, even over a matching allow', () => {
    const policySet = setOf(allow('everyone'), deny('embargo', { when: 'context.attributes.country == "XX"' }));
    const decision = decide(policySet); // no country in context
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['embargo'] });
    expect(decision.errors).toEqual([{ ruleId: 'embargo', message: expect.stringMatching(/country/) }]);
    expect(decide(policySet, { context: { country: 'FR' } })).toMatchObject({ effect: 'ALLOW', ruleIds: ['everyone'], errors: [] });
    expect(decide(policySet, { context: { country: 'XX' } })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_RULE', ruleIds: ['embargo'] });
  });

  it('a deny that matches cleanly decides over a deny that errs; both are reported', () => {
    const policySet = setOf(deny('clean'), deny('broken', { when: 'resource.attributes.nope == 1' }), allow('a'));
    const decision = decide(policySet);
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_RULE', ruleIds: ['clean'] });
    expect(decision.errors.map((e) => e.ruleId)).toEqual(['broken']);
  });

  it('several erroring allows are all named', () => {
    const policySet = setOf(allow('e1', { when: 'principal.attributes.a == 1' }), allow('e2', { when: 'principal.attributes.b == 1' }));
    const decision = decide(policySet);
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['e1', 'e2'] });
    expect(decision.errors.map((e) => e.ruleId)).toEqual(['e1', 'e2']);
  });

  it('a condition that short-circuits past a missing key is not an error', () => {
    const policySet = setOf(allow('guarded', { when: 'has(principal.attributes.org) && principal.attributes.org == "acme"' }));
    expect(decide(policySet)).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT', errors: [] });
    expect(decide(policySet, { principal: { attributes: { org: 'acme' } } }).effect).toBe('ALLOW');
  });
});

describe('the index', () => {
  const base = [
    allow('model-read', { resource: { type: 'model' } }),
    allow('model-any', { actions: ['*'], resource: { type: 'model' } }),
    deny('any-read'),
    allow('any-any', { actions: ['*'] }),
    allow('dataset-read', { resource: { type: 'dataset' } }),
    allow('model-write', { actions: ['write'], resource: { type: 'model' } }),
    deny('model-dataset-read', { resource: { type: ['model', 'dataset'] } }),
  ];
  const ids = (policySet: PolicySet, type: string, action: string) => policySet.candidates(type, action).map((r) => r.id);

  it('returns only the rules for that type and action, plus wildcards, denies first', () => {
    const policySet = setOf(...base);
    expect(ids(policySet, 'model', 'read')).toEqual(['any-read', 'model-dataset-read', 'any-any', 'model-any', 'model-read']);
    expect(ids(policySet, 'model', 'write')).toEqual(['any-any', 'model-any', 'model-write']);
    expect(ids(policySet, 'model', 'never-seen')).toEqual(['any-any', 'model-any']);
    expect(ids(policySet, 'dataset', 'read')).toEqual(['any-read', 'model-dataset-read', 'any-any', 'dataset-read']);
    expect(ids(policySet, 'dataset', 'write')).toEqual(['any-any']);
    expect(ids(policySet, 'never-seen', 'read')).toEqual(['any-read', 'any-any']);
    expect(ids(policySet, 'never-seen', 'delete')).toEqual(['any-any']);
  });

  it('5,000 rules for other resource types (and 1,000 for other actions) do not change the candidates', () => {
    const small = setOf(...base);
    const noise: object[] = [];
    for (let i = 0; i < 5000; i++) {
      noise.push({
        id: `noise-${i}`,
        effect: i % 7 === 0 ? 'deny' : 'allow',
        actions: i % 3 === 0 ? ['*'] : ['read', 'write'],
        resource: { type: `tenant-${i % 500}-type`, attributes: { org: `tenant-${i % 500}` } },
        ...(i % 4 === 0 ? { when: 'principal.attributes.org == resource.attributes.org' } : {}),
      });
    }
    for (let i = 0; i < 1000; i++) {
      noise.push({ id: `other-action-${i}`, effect: i % 2 ? 'allow' : 'deny', actions: [`verb-${i}`], resource: { type: 'model' } });
    }
    const big = setOf(...base, ...noise);
    expect(big.rules.length).toBe(base.length + 6000);
    for (const [type, action] of [['model', 'read'], ['model', 'write'], ['dataset', 'read'], ['never-seen', 'read'], ['model', 'never-seen']] as const) {
      expect(ids(big, type, action), `${type}/${action}`).toEqual(ids(small, type, action));
    }
    // And the noise is really indexed where it belongs.
    expect(ids(big, 'tenant-3-type', 'read')).toContain('noise-3');
    expect(ids(big, 'model', 'verb-17')).toEqual(['any-any', 'model-any', 'other-action-17']);
    // Decisions agree, apart from the version.
    const req = request({ action: 'write', resource: { type: 'model' } });
    const { policyVersion: _a, ...fromSmall } = evaluate(small, req);
    const { policyVersion: _b, ...fromBig } = evaluate(big, req);
    expect(fromBig).toEqual(fromSmall);
  });

  it('the policy set is immutable', () => {
    const policySet = setOf(...base);
    expect(Object.isFrozen(policySet)).toBe(true);
    expect(Object.isFrozen(policySet.rules)).toBe(true);
    expect(Object.isFrozen(policySet.candidates('model', 'read'))).toBe(true);
  });
});
