import { afterAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { loadPolicies } from '../../src/policy/load.js';
import { loadFiles, removeTempDirs, request, rulesDoc, writePolicyDir } from '../helpers/policies.js';

afterAll(removeTempDirs);

/** A policy set with one allow rule on `document`s whose condition is `when`. */
const withCondition = (when: string) => loadFiles({ 'rules.yaml': rulesDoc([{ id: 'r', effect: 'allow', actions: ['read'], when }]) }).policySet;

const decide = (when: string, attributes: Record<string, unknown>) => evaluate(withCondition(when), request({ resource: { attributes } }));

describe('CEL matches() has RE2 semantics, in linear time', () => {
  it.each([
    ['a partial match, as CEL specifies', 'resource.attributes.s.matches("b+")', 'abbbc', true],
    ['anchored', 'resource.attributes.s.matches("^b+$")', 'abbbc', false],
    ['RE2 classes', 'resource.attributes.s.matches("^\\\\d{3}-\\\\d{4}$")', '555-1234', true],
    ['RE2 inline flags', 'resource.attributes.s.matches("(?i)^acme-")', 'ACME-prod', true],
    ['inside a macro', '["x1", resource.attributes.s].exists(v, v.matches("^z"))', 'zz', true],
  ])('%s', (_what, when, s, expected) => {
    expect(decide(when, { s }).effect).toBe(expected ? 'ALLOW' : 'DENY');
  });

  it('answers "^(a+)+$" against 75 bytes at once (a backtracking engine would take hours)', () => {
    expect(decide('resource.attributes.s.matches("^(a+)+$")', { s: `${'a'.repeat(74)}!` })).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
    expect(decide('resource.attributes.s.matches("^(a+)+$")', { s: 'a'.repeat(75) })).toMatchObject({ effect: 'ALLOW' });
  }, 5_000);

  it('a pattern must be written in the policy: one from the request is a load error', () => {
    const result = loadPolicies(writePolicyDir({ 'rules.yaml': rulesDoc([{ id: 'r', effect: 'allow', actions: ['read'], when: 'resource.id.matches(context.attributes.pattern)' }]) }));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringMatching(/^rules\.yaml:\d+:\d+: condition does not compile: matches\(\) takes its pattern as a string written in the policy \(or a named constant\), not one from the request \(column 21 of the condition\)/),
    ]);
  });

  it('a named constant is a pattern written in the policy', () => {
    const policySet = loadFiles({
      'variables.yaml': { kind: 'variables', variables: [{ name: 'incident', value: '^INC-[0-9]+$' }] },
      'rules.yaml': rulesDoc([{ id: 'r', effect: 'allow', actions: ['read'], when: 'resource.attributes.s.matches(variables.incident)' }]),
    }).policySet;
    expect(evaluate(policySet, request({ resource: { attributes: { s: 'INC-42' } } })).effect).toBe('ALLOW');
    expect(evaluate(policySet, request({ resource: { attributes: { s: 'INC-' } } })).effect).toBe('DENY');
  });

  it('a type error names matches(), as written', () => {
    const result = loadPolicies(writePolicyDir({ 'rules.yaml': rulesDoc([{ id: 'r', effect: 'allow', actions: ['read'], when: 'resource.attributes.n.size().matches("1")' }]) }));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics.map(formatDiagnostic).join('\n')).toMatch(/int\.matches\(string\)/);
  });
});

describe('a pattern RE2 cannot compile is a load error at file:line:col', () => {
  it.each([
    ['backreference', '\\\\1'],
    ['lookbehind', '(?<=a)b'],
    ['unbalanced', '(a'],
    ['repeat over 1000', 'a{1001}'],
  ])('%s', (_what, pattern) => {
    const dir = writePolicyDir({
      'rules.yaml': `kind: rules\nrules:\n  - id: r\n    effect: allow\n    actions: [read]\n    when: resource.id.matches("${pattern}")\n`,
    });
    const result = loadPolicies(dir);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const text = result.diagnostics.map(formatDiagnostic);
    expect(text).toHaveLength(1);
    expect(text[0]).toMatch(/^rules\.yaml:6:11: condition does not compile: invalid regular expression ".*" for matches\(\): .* \(column 21 of the condition\)/);
  });

  it('in a named condition (kind: variables) too', () => {
    const dir = writePolicyDir({
      'variables.yaml': { kind: 'variables', variables: [{ name: 'prodId', expr: 'resource.id.matches("(?P<x")' }] },
      'rules.yaml': rulesDoc([{ id: 'r', effect: 'allow', actions: ['read'], when: 'variables.prodId' }]),
    });
    const result = loadPolicies(dir);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics.map(formatDiagnostic).join('\n')).toMatch(/^variables\.yaml:\d+:\d+: variable "prodId" does not compile: invalid regular expression/m);
  });
});
