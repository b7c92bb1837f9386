import { afterAll, describe, expect, it } from 'vitest';
import { runPolicyTests } from '../../src/engine/test-runner.js';
import { loadFiles, removeTempDirs, rulesDoc } from '../helpers/policies.js';

afterAll(removeTempDirs);

const rules = rulesDoc([
  { id: 'members-read', effect: 'allow', actions: ['read'], principal: { attributes: { member: true } } },
  { id: 'no-reads-when-frozen', effect: 'deny', actions: ['read'], when: 'resource.attributes.frozen == true' },
  { id: 'anyone-lists', effect: 'allow', actions: ['list'] },
]);

const testsDoc = (cases: object[]) => ({ kind: 'tests', name: 'coverage', cases });
const readCase = (name: string, member: boolean, frozen: boolean, effect: 'allow' | 'deny') => ({
  name,
  principal: { id: 'p', attributes: { member } },
  action: 'read',
  resource: { type: 'doc', id: 'd', attributes: { frozen } },
  expect: { effect },
});

describe('honest coverage', () => {
  it('a rule a deny overrode has not been seen deciding; a rule never refused has not been seen not matching', () => {
    const { policySet, tests } = loadFiles({ 'rules.yaml': rules, 'tests/c.yaml': testsDoc([readCase('frozen', true, true, 'deny')]) });
    const { coverage } = runPolicyTests(policySet, tests);
    const byId = new Map(coverage.rules.map((r) => [r.id, r]));
    // members-read matched, but the deny decided: that is not a test of what members-read allows.
    expect(byId.get('members-read')).toMatchObject({ decided: false, overridden: true, notMatched: false, conditional: true });
    expect(byId.get('no-reads-when-frozen')).toMatchObject({ decided: true, notMatched: false, conditional: true });
    expect(byId.get('anyone-lists')).toMatchObject({ decided: false, notMatched: false, conditional: false });
    expect(coverage).toMatchObject({ seen: 1, possible: 5 });
    expect(coverage.percent).toBe(20);
  });

  it('every side seen is 100%', () => {
    const cases = [
      readCase('member, not frozen', true, false, 'allow'),
      readCase('not a member', false, false, 'deny'),
      readCase('frozen', true, true, 'deny'),
      { name: 'lists', principal: { id: 'p' }, action: 'list', resource: { type: 'doc', id: 'd' }, expect: { effect: 'allow' } },
    ];
    const { policySet, tests } = loadFiles({ 'rules.yaml': rules, 'tests/c.yaml': testsDoc(cases) });
    const { coverage, unexercised } = runPolicyTests(policySet, tests);
    expect(coverage).toMatchObject({ seen: 5, possible: 5, percent: 100 });
    expect(unexercised).toEqual([]);
  });
});
