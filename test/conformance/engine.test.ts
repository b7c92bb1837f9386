import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import { loadPolicies } from '../../src/policy/load.js';
import type { PolicySet } from '../../src/policy/policy-set.js';
import type { Decision, DecisionRequest } from '../../src/types.js';
import { assertConformant, conformanceSets, defineConformanceSuite } from './suite.js';

/** The pure engine, in process: the reference path every other decider must agree with. */
defineConformanceSuite('engine', async (set) => {
  const result = loadPolicies(set.dir);
  if (!result.ok) throw new Error(`${set.dir} is invalid`);
  const { policySet } = result.policies;
  return {
    decide: async (testCase) => evaluate(policySet, testCase.request),
    close: async () => {},
  };
});

describe('the conformance sets themselves', () => {
  const sets = conformanceSets();

  it('include the shipped example set and every fixture set, each with cases', () => {
    expect(sets.map((s) => s.name)).toEqual(
      expect.arrayContaining(['condition-errors', 'default-deny', 'deny-overrides', 'example-ml-models', 'globs-and-any-of', 'role-inheritance', 'wildcard-actions']),
    );
    for (const set of sets) expect(set.cases.length, set.name).toBeGreaterThan(0);
  });

  it('cover every reason, and every fixture case pins reason and deciding rules', () => {
    const reasons = new Set(sets.flatMap((s) => s.cases.map((c) => c.expect.reason)));
    for (const reason of ['ALLOWED_BY_RULE', 'DENIED_BY_RULE', 'DENIED_BY_DEFAULT', 'DENIED_BY_ERROR']) expect(reasons).toContain(reason);
    for (const set of sets.filter((s) => s.name !== 'example-ml-models')) {
      for (const c of set.cases) {
        expect(c.expect.reason, `${set.name}: ${c.name}`).not.toBeNull();
        expect(c.expect.rules, `${set.name}: ${c.name}`).not.toBeNull();
      }
    }
  });

  /** How many cases of all sets a decider fails, by the suite's own comparison. */
  const failures = (decide: (set: (typeof sets)[number], c: (typeof sets)[number]['cases'][number]) => Decision) => {
    let failed = 0;
    for (const set of sets) {
      for (const c of set.cases) {
        try {
          assertConformant(c, decide(set, c), set.version);
        } catch {
          failed++;
        }
      }
    }
    return failed;
  };
  const loaded = new Map<string, PolicySet>();
  const engineDecision = (dir: string, request: DecisionRequest) => {
    let policySet = loaded.get(dir);
    if (!policySet) {
      const result = loadPolicies(dir);
      if (!result.ok) throw new Error(`${dir} is invalid`);
      loaded.set(dir, (policySet = result.policies.policySet));
    }
    return evaluate(policySet, request);
  };

  it('the comparison accepts the engine, and deciding rules in any order', () => {
    expect(failures((set, c) => engineDecision(set.dir, c.request))).toBe(0);
    expect(failures((set, c) => {
      const d = engineDecision(set.dir, c.request);
      return { ...d, ruleIds: [...d.ruleIds].reverse() };
    })).toBe(0);
  });

  it('the comparison catches a decider that always allows, drops rules, or misreports the version', () => {
    const total = sets.reduce((n, s) => n + s.cases.length, 0);
    const denies = sets.reduce((n, s) => n + s.cases.filter((c) => c.expect.effect === 'DENY').length, 0);
    const allowAll = (): Decision => ({ effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: [], errors: [], policyVersion: '' });
    expect(failures(allowAll)).toBeGreaterThanOrEqual(denies);
    expect(failures((set, c) => ({ ...engineDecision(set.dir, c.request), ruleIds: [] }))).toBeGreaterThan(total / 2);
    expect(failures((set, c) => ({ ...engineDecision(set.dir, c.request), policyVersion: 'sha256:0' }))).toBe(total);
    expect(failures((set, c) => {
      const d = engineDecision(set.dir, c.request);
      return d.reason === 'DENIED_BY_ERROR' ? { ...d, reason: 'DENIED_BY_RULE' } : d;
    })).toBeGreaterThan(0);
  });
});
