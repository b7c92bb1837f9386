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

  it('a pattern from the request that RE2 cannot compile is a condition error: it fails closed', () => {
    const decision = decide('resource.attributes.s.matches(resource.attributes.p)', { s: 'a', p: '(a' });
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR' });
    expect(decision.errors[0]!.message).toMatch(/invalid regular expression for matches\(\): missing closing \)/);
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
