import { afterAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import { loadFiles, removeTempDirs, request, rulesDoc } from '../helpers/policies.js';

afterAll(removeTempDirs);

// `==`, `!=` and `in` between values of different types are errors, not false: a deny
// is never lifted by sending a list, a map or a number where the policy compares a string.

function decide(effect: 'allow' | 'deny', when: string, attributes: Record<string, unknown>) {
  const rules = [{ id: 'r', effect, actions: ['read'], when }];
  if (effect === 'deny') rules.push({ id: 'everyone', effect: 'allow', actions: ['read'], when: 'true' });
  return evaluate(loadFiles({ 'rules.yaml': rulesDoc(rules) }).policySet, request({ resource: { attributes } }));
}

describe('comparisons across types fail closed', () => {
  it.each([
    ['resource.attributes.x == "prod"', ['prod'], 'list', 'string', '=='],
    ['resource.attributes.x == "prod"', { a: 'prod' }, 'map', 'string', '=='],
    ['resource.attributes.x == "3"', 3, 'number', 'string', '=='],
    ['resource.attributes.x == 3', '3', 'string', 'number', '=='],
    ['resource.attributes.x == true', 'true', 'string', 'bool', '=='],
    ['resource.attributes.x != "prod"', ['prod'], 'list', 'string', '!='],
    ['resource.attributes.x in ["a", "b"]', ['a'], 'list', 'list of strings', 'in'],
    ['resource.attributes.x in [1, 2]', '1', 'string', 'list of numbers', 'in'],
    ['resource.attributes.x in {"a": 1}', ['a'], 'list', 'map with string keys', 'in'],
    ['resource.attributes.x in resource.attributes.m', 1, 'number', 'map with string keys', 'in'],
    ['resource.attributes.l.exists(e, e == "prod")', ['x'], 'list', 'string', '=='],
  ])('%s with %j: an error naming both types; a deny denies and an allow does not grant', (when, x, left, right, op) => {
    const attributes = { x, m: { '1': true }, l: [['prod']] };
    const denied = decide('deny', when, attributes);
    expect(denied).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['r'] });
    expect(denied.errors[0]?.message).toBe(`cannot compare a ${left} with a ${right} (${op}): the request holds another type than the condition expects; it fails closed`);
    expect(decide('allow', when, attributes)).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
  });

  it.each([
    ['resource.attributes.x == "prod"', 'prod', true],
    ['resource.attributes.x == "prod"', 'dev', false],
    ['resource.attributes.x == 3', 3, true],
    ['resource.attributes.x == 3.0', 3, true],
    ['resource.attributes.x == 3u', 3, true],
    ['resource.attributes.x in ["a", "b"]', 'a', true],
    ['resource.attributes.x in ["a", 1]', 1, true],
    ['resource.attributes.x in {"a": 1}', 'a', true],
    ['resource.attributes.x == ["a"]', ['a'], true],
    ['resource.attributes.x != null', 'a', true],
    ['resource.attributes.x in []', 'a', false],
    ['type(resource.attributes.x) == string', 'a', true],
  ])('%s with %j decides as CEL does (%s)', (when, x, matched) => {
    expect(decide('allow', when, { x })).toMatchObject({ effect: matched ? 'ALLOW' : 'DENY', errors: [] });
  });
});
