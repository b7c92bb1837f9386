import { afterAll, describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { parseRate } from '../../src/policy/limits.js';
import { loadPolicies } from '../../src/policy/load.js';
import { limitApplies, rateFor } from '../../src/limits/index.js';
import { loadValid, removeTempDirs, request, writePolicyDir } from '../helpers/policies.js';

afterAll(removeTempDirs);

const ROLES = `kind: roles
roles:
  - name: analyst
    permissions:
      - actions: [predict]
        resources: [model]
  - name: lead
    inherits: [analyst]
`;

const LIMITS = `kind: limits
limits:
  - id: predict-per-user
    description: Each principal may call predict 100 times a minute.
    actions: [predict]
    resource: { type: model }
    rate: 100/minute
    burst: 20
    tiers:
      attribute: tier
      rates:
        premium: 1000/minute
        free: { rate: 60/minute, burst: 5 }
  - id: org-wide
    principal: { roles: [analyst] }
    key: { attribute: principal.attributes.org }
    rate: 5000/hour
  - id: per-model
    key: principal+resource
    when: resource.attributes.size == "large"
    rate: 10/second
  - id: tokens-per-day
    key: { expr: principal.attributes.org + "/" + principal.id }
    cost: context.attributes.max_tokens
    rate: 2000000/day
`;

describe('limits files (kind: limits)', () => {
  it('compile: rates, bursts, tiers, keys, what each applies to', () => {
    const { policySet } = loadValid(writePolicyDir({ 'roles.yaml': ROLES, 'limits.yaml': LIMITS }));
    expect(policySet.limits.map((l) => l.id)).toEqual(['predict-per-user', 'org-wide', 'per-model', 'tokens-per-day']);
    const [perUser, orgWide, perModel, tokens] = policySet.limits;
    expect(perUser!.rate).toMatchObject({ count: 100, periodMs: 60_000, burst: 20, emissionMs: 600 });
    expect(rateFor(perUser!, request({ principal: { attributes: { tier: 'premium' } } }))).toMatchObject({ count: 1000, burst: 1000 });
    expect(rateFor(perUser!, request({ principal: { attributes: { tier: 'free' } } }))).toMatchObject({ count: 60, burst: 5 });
    expect(rateFor(perUser!, request({ principal: { attributes: { tier: 'unknown' } } }))).toBe(perUser!.rate);
    expect(limitApplies(perUser!, request({ action: 'predict', resource: { type: 'model' } }))).toBe(true);
    expect(limitApplies(perUser!, request({ action: 'read', resource: { type: 'model' } }))).toBe(false);
    // Roles count with inheritance.
    expect(limitApplies(orgWide!, request({ principal: { roles: ['lead'] } }))).toBe(true);
    expect(limitApplies(orgWide!, request({ principal: { roles: [] } }))).toBe(false);
    expect(orgWide!.key(request({ principal: { attributes: { org: 'acme' } } }))).toBe('acme');
    expect(() => orgWide!.key(request({ principal: { attributes: {} } }))).toThrow(/principal\.attributes\.org is absent/);
    expect(limitApplies(perModel!, request({ resource: { attributes: { size: 'large' } } }))).toBe(true);
    expect(limitApplies(perModel!, request({ resource: { attributes: {} } }))).toMatch(/size/);
    expect(perModel!.key(request({ principal: { id: 'u1' }, resource: { type: 'model', id: 'm1' } }))).toBe('u1\u0000model\u0000m1');
    expect(tokens!.key(request({ principal: { id: 'u1', attributes: { org: 'acme' } } }))).toBe('acme/u1');
    expect(tokens!.cost!({ principal: {}, resource: {}, action: 'x', context: { attributes: { max_tokens: 512 } } })).toBe(512);
  });

  it('reads rates in every unit, the burst defaulting to the count', () => {
    expect(parseRate('10/second')).toMatchObject({ count: 10, periodMs: 1000, burst: 10 });
    expect(parseRate('5000/h', 50)).toMatchObject({ count: 5000, periodMs: 3_600_000, burst: 50 });
    expect(parseRate('2000000/day')).toMatchObject({ periodMs: 86_400_000 });
    expect(parseRate('0/minute')).toBeNull();
    expect(parseRate('1.5/minute')).toBeNull();
    expect(parseRate('100/fortnight')).toBeNull();
  });

  it('reports every mistake at file:line:col in one run', () => {
    const dir = writePolicyDir({
      'roles.yaml': ROLES,
      'limits.yaml': `kind: limits
limits:
  - id: bad-rate
    rate: 100/fortnight
  - id: bad-burst
    rate: 10/second
    burst: 0
  - id: unknown-role
    principal: { roles: [ghost] }
    rate: 10/second
  - id: bad-when
    when: principal.id ==
    rate: 10/second
  - id: bad-key
    key: { attribute: principal.org }
    rate: 10/second
  - id: bad-cost
    cost: '"ten"'
    rate: 10/second
  - id: bad-tier
    rate: 10/second
    tiers: { attribute: tier, rates: { gold: lots } }
  - id: typo
    rates: 10/second
  - id: bad-burst
    rate: 1/second
  - id: fine
    rate: 1/second
  - id: fine
    rate: 2/second
`,
    });
    const result = loadPolicies(dir);
    expect(result.ok).toBe(false);
    const lines = result.ok ? [] : result.diagnostics.map(formatDiagnostic);
    expect(lines).toEqual([
      expect.stringMatching(/^limits\.yaml:4:11: a rate is a whole count per second, minute, hour or day/),
      expect.stringMatching(/^limits\.yaml:7:12: burst is at least 1/),
      expect.stringMatching(/^limits\.yaml:9:26: unknown role "ghost"/),
      expect.stringMatching(/^limits\.yaml:12:11: condition does not compile/),
      expect.stringMatching(/^limits\.yaml:15:\d+: .*an attribute key is principal\.attributes\.<name>/),
      expect.stringMatching(/^limits\.yaml:18:11: the cost expression does not compile: expected an expression of type int or uint or double, but this one is of type string/),
      expect.stringMatching(/^limits\.yaml:22:46: a rate is a whole count per second.*\(at limits\[6\]\.tiers\.rates\.gold\)/),
      expect.stringMatching(/^limits\.yaml:23:5: "rate" is required/),
      expect.stringMatching(/^limits\.yaml:24:5: unknown key "rates"/),
      expect.stringMatching(/^limits\.yaml:29:9: duplicate limit id "fine": already used at limits\.yaml:27:9/),
    ]);
  });
});

describe('backoff in limits files', () => {
  it('reads durations, and reports a maximum shorter than the block at file:line:col', () => {
    const { policySet } = loadValid(writePolicyDir({ 'limits.yaml': `kind: limits
limits:
  - id: a
    rate: 10/second
    backoff: { after: 5, within: 30s, block: 1m, max: 1d }
` }));
    expect(policySet.limits[0]!.backoff).toEqual({ after: 5, withinMs: 30_000, blockMs: 60_000, maxMs: 86_400_000 });
    const result = loadPolicies(writePolicyDir({ 'limits.yaml': `kind: limits
limits:
  - id: a
    rate: 10/second
    backoff: { after: 5, within: 30s, block: 1h, max: 1m }
  - id: b
    rate: 10/second
    backoff: { after: 0, within: soon, block: 1m, max: 1h }
` }));
    expect(result.ok ? [] : result.diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringMatching(/^limits\.yaml:5:55: backoff\.max \(1m\) is shorter than backoff\.block \(1h\)/),
      expect.stringMatching(/^limits\.yaml:8:23: after is at least 1 refusal .*at limits\[1\]\.backoff\.after/),
      expect.stringMatching(/^limits\.yaml:8:34: a duration is a whole number of s, m, h or d/),
    ]);
  });
});

describe('onBackendFailure and loadAware in limits files', () => {
  it('reads them with their defaults, and reports bad values at file:line:col', () => {
    const { policySet } = loadValid(writePolicyDir({ 'limits.yaml': `kind: limits
limits:
  - id: a
    rate: 10/second
    onBackendFailure: deny
    loadAware: { min: 0.25 }
  - id: b
    rate: 10/second
` }));
    expect(policySet.limits.map((l) => [l.onBackendFailure, l.loadAware])).toEqual([
      ['deny', { pool: 'default', from: 0.5, min: 0.25 }],
      ['local', null],
    ]);
    const result = loadPolicies(writePolicyDir({ 'limits.yaml': `kind: limits
limits:
  - id: a
    rate: 10/second
    onBackendFailure: panic
  - id: b
    rate: 10/second
    loadAware: { pool: "gpu a", min: 0 }
` }));
    expect(result.ok ? [] : result.diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringMatching(/^limits\.yaml:5:23: onBackendFailure is deny, allow or local/),
      expect.stringMatching(/^limits\.yaml:8:24: a pool is a name of 1 to 100 letters/),
      expect.stringMatching(/^limits\.yaml:8:38: min is above 0/),
    ]);
  });
});
