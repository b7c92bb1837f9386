import { afterAll, describe, expect, it } from 'vitest';
import { explain } from '../../src/engine/explain.js';
import { formatExplanation } from '../../src/cli/check.js';
import { loadFiles, removeTempDirs, request } from '../helpers/policies.js';

afterAll(removeTempDirs);

const { policySet } = loadFiles({
  'variables.yaml': `kind: variables
variables:
  - name: same_team
    expr: resource.attributes.org == principal.attributes.org && resource.attributes.team == principal.attributes.team
`,
  'roles.yaml': `kind: roles
roles:
  - name: member
  - name: lead
    inherits: [member]
`,
  'rules.yaml': `kind: rules
rules:
  - id: team-read
    effect: allow
    actions: [read]
    when: variables.same_team && (context.attributes.mfa == true || "lead" in principal.roles) && action != "delete"
  - id: level
    effect: allow
    actions: [write]
    when: '"member" in principal.roles && principal.attributes.level >= 3'
`,
});

describe('explain per clause', () => {
  it('says which top-level clause was false, recursing into named conditions and groups, with the values it saw', () => {
    const req = request({ principal: { roles: ['member'], attributes: { org: 'acme', team: 'red' } }, resource: { attributes: { org: 'acme', team: 'blue' } }, context: { mfa: false } });
    const rule = explain(policySet, req).considered.find((r) => r.ruleId === 'team-read')!;
    expect(rule.detail).toBe('condition is false: variables.same_team && (context.attributes.mfa == true || "lead" in principal.roles) && action != "delete"');
    expect(rule.clauses).toEqual([
      {
        text: '(resource.attributes.org == principal.attributes.org && resource.attributes.team == principal.attributes.team)',
        outcome: 'false',
        values: ['resource.attributes.org = "acme"', 'principal.attributes.org = "acme"', 'resource.attributes.team = "blue"', 'principal.attributes.team = "red"'],
        clauses: [
          { text: 'resource.attributes.org == principal.attributes.org', outcome: 'true', values: ['resource.attributes.org = "acme"', 'principal.attributes.org = "acme"'] },
          { text: 'resource.attributes.team == principal.attributes.team', outcome: 'false', values: ['resource.attributes.team = "blue"', 'principal.attributes.team = "red"'] },
        ],
      },
      {
        text: '(context.attributes.mfa == true || "lead" in principal.roles)',
        outcome: 'false',
        values: ['context.attributes.mfa = false', 'principal.roles = ["member"]'],
        clauses: [
          { text: 'context.attributes.mfa == true', outcome: 'false', values: ['context.attributes.mfa = false'] },
          { text: '"lead" in principal.roles', outcome: 'false', values: ['principal.roles = ["member"]'] },
        ],
      },
      { text: 'action != "delete"', outcome: 'true', values: ['action = "read"'] },
    ]);
  });

  it('names the clause that erred and the absent value; principal.roles is the effective closure', () => {
    const req = request({ principal: { roles: ['lead'] }, action: 'write' });
    const rule = explain(policySet, req).considered.find((r) => r.ruleId === 'level')!;
    expect(rule.outcome).toBe('error');
    expect(rule.clauses).toEqual([
      { text: '"member" in principal.roles', outcome: 'true', values: ['principal.roles = ["lead","member"]'] },
      { text: 'principal.attributes.level >= 3', outcome: 'error', error: expect.stringMatching(/level/), values: ['principal.attributes.level absent'] },
    ]);
    expect(formatExplanation(explain(policySet, req))).toMatch(/\n {10}true {2}"member" in principal\.roles {2}\[principal\.roles = \["lead","member"\]\]\n {10}ERROR \(.*\) principal\.attributes\.level >= 3 {2}\[principal\.attributes\.level absent\]/);
  });

  it('a condition without && or || has no clauses to show', () => {
    const { policySet: simple } = loadFiles({ 'rules.yaml': 'kind: rules\nrules:\n  - id: r\n    effect: allow\n    actions: [read]\n    when: principal.id == "x"\n' });
    expect(explain(simple, request()).considered[0]!.clauses).toBeUndefined();
  });
});
