import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import { DEFAULT_CONDITION_BUDGET, setConditionBudget } from '../../src/policy/condition.js';
import { MATCHES_CHARACTERS_PER_STEP } from '../../src/policy/condition-guards.js';
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

/** Decides `read` under one rule whose condition is `when`, with the resource's attributes `attributes`. */
function decideWith(effect: 'allow' | 'deny', when: string, attributes: Record<string, unknown>) {
  const rules = [{ id: 'r', effect, actions: ['read'], when }];
  if (effect === 'deny') rules.push({ id: 'everyone', effect: 'allow', actions: ['read'], when: 'true' });
  return evaluate(loadFiles({ 'rules.yaml': rulesDoc(rules) }).policySet, request({ resource: { attributes } }));
}

const strings = (n: number, length: number) => Array.from({ length: n }, () => 'a'.repeat(length));
const TAGS_MATCH = 'resource.attributes.tags.all(t, t.matches("^[a-z]+$"))';
const FIVE_MATCHES = ['^a', 'a$', '^a+$', 'a{8}', '(?i)A'].map((p) => `resource.attributes.s.matches("${p}")`).join(' && ');

describe('matches() pays the budget for the length of its string', () => {
  it('one step per call and one per 4 characters: the exchange rate, at the edge of a budget', () => {
    expect(MATCHES_CHARACTERS_PER_STEP).toBe(4);
    setConditionBudget(3);
    // 1 + 8 / 4 = 3 steps: within.
    expect(decideWith('allow', 'resource.attributes.s.matches("^a+$")', { s: 'a'.repeat(11) })).toMatchObject({ effect: 'ALLOW' });
    // 1 + 12 / 4 = 4 steps: over.
    expect(decideWith('allow', 'resource.attributes.s.matches("^a+$")', { s: 'a'.repeat(12) })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
  });

  it('matches over lists of strings within the budget decide as before', () => {
    // 10 + 10 × (1 + 25) = 270 steps.
    expect(decideWith('allow', TAGS_MATCH, { tags: strings(10, 100) })).toMatchObject({ effect: 'ALLOW', ruleIds: ['r'] });
    expect(decideWith('allow', TAGS_MATCH, { tags: [...strings(9, 100), 'A'] })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
  });

  it('1,000 strings of 1,000 characters (within the request caps) give up: an allow rule does not grant', () => {
    // 1,000 + 1,000 × 251 steps, against 10,000: the loop stops at about the 36th string.
    const decision = decideWith('allow', TAGS_MATCH, { tags: strings(1_000, 1_000) });
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['r'] });
    expect(decision.errors).toEqual([{ ruleId: 'r', message: expect.stringMatching(/^condition gave up: .* \(the condition budget; matches\(\) counts one per 4 characters of its string\); it fails closed$/) }]);
  }, 5_000);

  it('a deny rule that gives up denies, and so does a negation of a loop that swallowed the error', () => {
    expect(decideWith('deny', TAGS_MATCH, { tags: strings(1_000, 1_000) })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['r'] });
    // all() is false on any false element, errors or not (the last tag here): without the budget's own verdict the negation would grant.
    const when = '!resource.attributes.tags.all(t, t.matches("^[a-z]+$"))';
    expect(decideWith('allow', when, { tags: [...strings(999, 1_000), 'A'] })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
  }, 5_000);

  it('four matches over a string of the largest allowed length fit the budget, five do not', () => {
    const s = 'a'.repeat(8_192);
    const four = FIVE_MATCHES.split(' && ').slice(0, 4).join(' && ');
    // 4 × (1 + 2,048) = 8,196 steps; 5 × 2,049 = 10,245.
    expect(decideWith('allow', four, { s })).toMatchObject({ effect: 'ALLOW' });
    expect(decideWith('allow', FIVE_MATCHES, { s })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
    expect(decideWith('allow', FIVE_MATCHES, { s: 'a'.repeat(100) })).toMatchObject({ effect: 'ALLOW' });
  });
});
