import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import { DEFAULT_CONDITION_BUDGET, setConditionBudget } from '../../src/policy/condition.js';
import { loadFiles, removeTempDirs, request, rulesDoc } from '../helpers/policies.js';

afterAll(removeTempDirs);
afterEach(() => setConditionBudget(DEFAULT_CONDITION_BUDGET));

const list = (n: number) => Array.from({ length: n }, (_, i) => `e${i}`);

function decide(effect: 'allow' | 'deny', when: string, l: unknown[]) {
  const rules = [{ id: 'r', effect, actions: ['read'], when }];
  // A deny is only seen failing closed when something would otherwise allow.
  if (effect === 'deny') rules.push({ id: 'everyone', effect: 'allow', actions: ['read'], when: 'true' });
  return evaluate(loadFiles({ 'rules.yaml': rulesDoc(rules) }).policySet, request({ resource: { attributes: { l } } }));
}

const NESTED_ALL = 'resource.attributes.l.all(x, resource.attributes.l.all(y, x != ""))';

describe('a condition has a budget: comprehensions pay for what they range over, and over budget it fails closed', () => {
  it('a nested all() over 6,000 elements gives up at once: an allow rule does not grant', () => {
    const decision = decide('allow', NESTED_ALL, list(6_000));
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['r'] });
    expect(decision.errors).toEqual([{ ruleId: 'r', message: expect.stringMatching(/^condition gave up: it would go through more than 10000 list or map elements/) }]);
  }, 5_000);

  it('a deny rule over budget denies', () => {
    expect(decide('deny', NESTED_ALL, list(6_000))).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['r'] });
  }, 5_000);

  it('an all() that swallowed the error (false on any false element) still fails closed', () => {
    // Without the budget's own verdict, all() would be false here, and the negation would grant.
    const when = '!resource.attributes.l.all(x, x == "e0" && resource.attributes.l.all(y, y != ""))';
    expect(decide('allow', when, list(6_000))).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
  }, 5_000);

  it.each([
    ['map/filter', 'resource.attributes.l.map(x, resource.attributes.l.filter(y, y == x)).size() > 0'],
    ['exists/exists_one', 'resource.attributes.l.exists(x, resource.attributes.l.exists_one(y, y == x))'],
  ])('%s: the same', (_what, when) => {
    expect(decide('allow', when, list(6_000))).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
  }, 5_000);

  it.each([
    ['`in` on a list inside a loop', 'resource.attributes.l.all(x, x in resource.attributes.l)'],
    ['list `+` inside a loop', 'resource.attributes.l.all(x, (resource.attributes.l + resource.attributes.l).size() > 0)'],
    ['list `==` inside a loop', 'resource.attributes.l.all(x, resource.attributes.l == resource.attributes.l)'],
  ])('%s pays for the list it reads', (_what, when) => {
    expect(decide('allow', when, list(1_000))).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
    expect(decide('allow', when, list(50))).toMatchObject({ effect: 'ALLOW' });
  }, 5_000);

  it('a condition without loops reads a list within the budget', () => {
    expect(decide('allow', '"e999" in resource.attributes.l', list(1_000))).toMatchObject({ effect: 'ALLOW' });
  });

  it('within the budget, the same conditions decide as before', () => {
    expect(decide('allow', NESTED_ALL, list(99))).toMatchObject({ effect: 'ALLOW', ruleIds: ['r'] });
    expect(decide('allow', NESTED_ALL, [])).toMatchObject({ effect: 'ALLOW' });
    // 100 + 100 × 100 > 10,000.
    expect(decide('allow', NESTED_ALL, list(100))).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
  });

  it('the budget is per evaluation and can be set', () => {
    setConditionBudget(20_000);
    expect(decide('allow', NESTED_ALL, list(100))).toMatchObject({ effect: 'ALLOW' });
    expect(decide('allow', NESTED_ALL, list(100))).toMatchObject({ effect: 'ALLOW' });
    setConditionBudget(5);
    expect(decide('allow', 'resource.attributes.l.all(x, x != "")', list(6))).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
    expect(decide('allow', 'resource.attributes.l.all(x, x != "")', list(5))).toMatchObject({ effect: 'ALLOW' });
    expect(() => setConditionBudget(-1)).toThrow(RangeError);
  });

  it('maps are charged by their entries', () => {
    setConditionBudget(2);
    const rules = [{ id: 'r', effect: 'allow', actions: ['read'], when: 'resource.attributes.m.all(k, k != "")' }];
    const policySet = loadFiles({ 'rules.yaml': rulesDoc(rules) }).policySet;
    expect(evaluate(policySet, request({ resource: { attributes: { m: { a: 1, b: 2 } } } }))).toMatchObject({ effect: 'ALLOW' });
    expect(evaluate(policySet, request({ resource: { attributes: { m: { a: 1, b: 2, c: 3 } } } }))).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
  });
});
