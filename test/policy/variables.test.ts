import { afterAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import { backgroundReader } from '../../src/policy/background-reader.js';
import { PolicyCompiler } from '../../src/policy/compiler.js';
import { formatDiagnostic, type PolicyDiagnostic } from '../../src/policy/diagnostic.js';
import { LoadWorker } from '../../src/policy/load-worker.js';
import { loadPolicies } from '../../src/policy/load.js';
import { MAX_VARIABLE_CHAIN, variableReferences } from '../../src/policy/variables.js';
import { loadValid, makeTempDir, removeTempDirs, request, writeFiles, writePolicyDir } from '../helpers/policies.js';

const checker = new LoadWorker();
afterAll(async () => {
  await checker.close();
  removeTempDirs();
});

const VARIABLES = `kind: variables
variables:
  - name: same_org
    expr: resource.attributes.org == principal.attributes.org
  - name: open_regions
    value: [eu, us]
  - name: readable
    expr: variables.same_org && resource.attributes.region in variables.open_regions
`;

const RULES = `kind: rules
rules:
  - id: read-own-org
    effect: allow
    actions: [read]
    when: variables.readable
  - id: no-foreign-writes
    effect: deny
    actions: [write]
    when: "!variables.same_org"
`;

const ROLES = `kind: roles
roles:
  - name: writer
    permissions:
      - actions: [write]
        when: variables.same_org
`;

function diagnosticsOf(dir: string): readonly PolicyDiagnostic[] {
  const result = loadPolicies(dir);
  if (result.ok) throw new Error('expected an invalid set');
  return result.diagnostics;
}

describe('named conditions and constants (kind: variables)', () => {
  it('a rule and a role permission read them by name, and decisions follow their definitions', () => {
    const { policySet } = loadValid(writePolicyDir({ 'variables.yaml': VARIABLES, 'rules.yaml': RULES, 'roles.yaml': ROLES }));
    const acme = { attributes: { org: 'acme' }, roles: ['writer'] };
    expect(evaluate(policySet, request({ principal: acme, resource: { attributes: { org: 'acme', region: 'eu' } } })).effect).toBe('ALLOW');
    expect(evaluate(policySet, request({ principal: acme, resource: { attributes: { org: 'acme', region: 'apac' } } })).effect).toBe('DENY');
    expect(evaluate(policySet, request({ principal: acme, resource: { attributes: { org: 'other', region: 'eu' } } })).effect).toBe('DENY');
    expect(evaluate(policySet, request({ principal: acme, action: 'write', resource: { attributes: { org: 'acme' } } })).reason).toBe('ALLOWED_BY_RULE');
    expect(evaluate(policySet, request({ principal: acme, action: 'write', resource: { attributes: { org: 'beta' } } })).reason).toBe('DENIED_BY_RULE');
    // The rule keeps the text as written, for explanations.
    expect(policySet.rules.find((r) => r.id === 'read-own-org')!.conditionSource).toBe('variables.readable');
  });

  it('finds references outside string literals only', () => {
    expect(variableReferences('variables.a && "variables.b" == x.variables.c || variables . d').map((r) => r.name)).toEqual(['a', 'd']);
    expect(variableReferences("r'variables.x' == variables.y").map((r) => r.name)).toEqual(['y']);
  });

  it('reports unknown names (with a suggestion), cycles, duplicates and bad expressions at file:line:col, all in one run', () => {
    const dir = writePolicyDir({
      'variables.yaml': `kind: variables
variables:
  - name: same_org
    expr: resource.attributes.org == principal.attributes.org
  - name: loop_a
    expr: variables.loop_b
  - name: loop_b
    expr: variables.loop_a
  - name: same_org
    value: 1
  - name: broken
    expr: principal.id =
  - name: both
    expr: "true"
    value: true
`,
      'rules.yaml': `kind: rules
rules:
  - id: typo
    effect: allow
    actions: [read]
    when: variables.same_orgg
  - id: not-bool
    effect: allow
    actions: [read]
    when: variables.same_org + 1 == 2
`,
    });
    const diagnostics = diagnosticsOf(dir);
    const text = diagnostics.map(formatDiagnostic);
    const has = (pattern: RegExp) => expect(text.some((t) => pattern.test(t)), text.join('\n')).toBe(true);
    has(/^rules\.yaml:6:11: unknown variable "same_orgg" \(column 1 of the expression\): define it in a variables file; did you mean "same_org"\?/);
    has(/^rules\.yaml:10:11: condition does not compile: .*\(column \d+ of the condition\)/);
    has(/^variables\.yaml:6:11: variable "loop_a" refers to itself: loop_a → loop_b → loop_a/);
    has(/^variables\.yaml:9:11: duplicate variable "same_org": already defined at variables\.yaml:3:11/);
    has(/^variables\.yaml:12:11: variable "broken" does not compile/);
    has(/^variables\.yaml:13:5: a variable has either "expr"/);
  });

  it('a condition that would grow past the largest policy file once its variables are put in is refused at its line, before it is built', () => {
    // Each variable reads the one before twice: v14 is about a million characters, and 2,000 references to it would be two billion.
    const doubling = Array.from({ length: 15 }, (_, i) => (i === 0 ? '  - name: v0\n    expr: principal.attributes.a == 1\n' : `  - name: v${i}\n    expr: variables.v${i - 1} && variables.v${i - 1}\n`)).join('');
    const dir = writePolicyDir({
      'variables.yaml': `kind: variables\nvariables:\n${doubling}`,
      'rules.yaml': `kind: rules\nrules:\n  - id: r\n    effect: allow\n    actions: [read]\n    when: ${Array.from({ length: 2000 }, () => 'variables.v14').join(' || ')}\n`,
    });
    const text = diagnosticsOf(dir).map(formatDiagnostic);
    expect(text, text.join('\n')).toEqual([
      "rules.yaml:6:11: condition is too long once its variables are put in (past 8388608 characters by the time variables.v14 is): each reference copies the variable's whole text; read a variable fewer times, or split the condition (at rules[0].when)",
    ]);
  });

  it('a non-boolean constant used as a whole condition is a validation error', () => {
    const dir = writePolicyDir({
      'variables.yaml': 'kind: variables\nvariables:\n  - name: who\n    value: alice\n',
      'rules.yaml': 'kind: rules\nrules:\n  - id: r\n    effect: allow\n    actions: [read]\n    when: variables.who\n',
    });
    const text = diagnosticsOf(dir).map(formatDiagnostic);
    expect(text.some((t) => /^rules\.yaml:6:11: condition does not compile: a condition must be true or false, but this one is of type string/.test(t)), text.join('\n')).toBe(true);
  });

  it('incremental loads: a changed variable recompiles the rules reading it, and decisions equal a cold load', async () => {
    const dir = makeTempDir('verdict-variables-');
    writeFiles(dir, { 'variables.yaml': VARIABLES, 'rules.yaml': RULES, 'roles.yaml': ROLES });
    const compiler = new PolicyCompiler(dir, backgroundReader(checker));
    const first = await compiler.compile({ gitCommit: null });
    if (!first.result.ok) throw new Error('expected a valid set');
    writeFiles(dir, { 'variables.yaml': VARIABLES.replace('value: [eu, us]', 'value: [apac]') });
    const second = await compiler.compile({ gitCommit: null });
    const cold = loadPolicies(dir, { gitCommit: null });
    if (!second.result.ok || !cold.ok) throw new Error('expected valid sets');
    expect(second.result.policies.policySet.version).toBe(cold.policies.policySet.version);
    expect(second.result.policies.policySet.version).not.toBe(first.result.policies.policySet.version);
    const requests = ['eu', 'apac'].map((region) => request({ principal: { attributes: { org: 'acme' } }, resource: { attributes: { org: 'acme', region } } }));
    for (const r of requests) expect(evaluate(second.result.policies.policySet, r)).toEqual(evaluate(cold.policies.policySet, r));
    expect(evaluate(second.result.policies.policySet, requests[1]!).effect).toBe('ALLOW');
    expect(evaluate(second.result.policies.policySet, requests[0]!).effect).toBe('DENY');
  });
});

describe('principal.notRoles', () => {
  const roles = 'kind: roles\nroles:\n  - name: contractor\n  - name: senior_contractor\n    inherits: [contractor]\n  - name: engineer\n';
  const rules = `kind: rules
rules:
  - id: staff-read
    effect: allow
    actions: [read]
    principal: { notRoles: [contractor] }
`;
  it('matches a principal holding none of the roles, inherited ones included', () => {
    const { policySet } = loadValid(writePolicyDir({ 'roles.yaml': roles, 'rules.yaml': rules }));
    expect(evaluate(policySet, request({ principal: { roles: ['engineer'] } })).effect).toBe('ALLOW');
    expect(evaluate(policySet, request({ principal: { roles: [] } })).effect).toBe('ALLOW');
    expect(evaluate(policySet, request({ principal: { roles: ['engineer', 'contractor'] } })).effect).toBe('DENY');
    // Inherits contractor, so it is fenced off too.
    expect(evaluate(policySet, request({ principal: { roles: ['senior_contractor'] } })).effect).toBe('DENY');
  });

  it('an unknown role in notRoles is a validation error at file:line:col', () => {
    const text = diagnosticsOf(writePolicyDir({ 'roles.yaml': roles, 'rules.yaml': rules.replace('[contractor]', '[contractr]') })).map(formatDiagnostic);
    expect(text.some((t) => /^rules\.yaml:6:29: unknown role "contractr"/.test(t)), text.join('\n')).toBe(true);
  });
});

describe('conditions see inherited roles', () => {
  const roles = (seniorInherits: string) =>
    `kind: roles\nroles:\n  - name: data_scientist\n  - name: senior_data_scientist\n    inherits: [${seniorInherits}]\n  - name: contractor\n  - name: lead\n    inherits: [senior_data_scientist]\n`;
  const rules = `kind: rules
rules:
  - id: ds-predict
    effect: allow
    actions: [predict]
    when: '"data_scientist" in principal.roles'
  - id: contractors-never-delete
    effect: deny
    actions: [delete]
    when: '"contractor" in principal["roles"]'
  - id: anyone-deletes
    effect: allow
    actions: [delete]
  - id: sent-as-is
    effect: allow
    actions: [audit]
    when: '"data_scientist" in principal.directRoles'
`;
  const senior = { roles: ['senior_data_scientist'] };

  it('principal.roles in CEL is the inherited closure, as a roles matcher sees it; principal.directRoles is as sent', () => {
    const { policySet } = loadValid(writePolicyDir({ 'roles.yaml': roles('data_scientist'), 'rules.yaml': rules }));
    expect(evaluate(policySet, request({ principal: senior, action: 'predict' })).effect).toBe('ALLOW');
    // Two levels down.
    expect(evaluate(policySet, request({ principal: { roles: ['lead'] }, action: 'predict' })).effect).toBe('ALLOW');
    expect(evaluate(policySet, request({ principal: { roles: ['contractor'] }, action: 'predict' })).effect).toBe('DENY');
    expect(evaluate(policySet, request({ principal: senior, action: 'audit' })).effect).toBe('DENY');
    expect(evaluate(policySet, request({ principal: { roles: ['data_scientist'] }, action: 'audit' })).effect).toBe('ALLOW');
  });

  it('a deny written as a CEL role test holds for a role added later that inherits it', () => {
    const { policySet } = loadValid(writePolicyDir({ 'roles.yaml': roles('data_scientist, contractor'), 'rules.yaml': rules }));
    const decision = evaluate(policySet, request({ principal: senior, action: 'delete' }));
    expect(decision).toMatchObject({ effect: 'DENY', ruleIds: ['contractors-never-delete'] });
  });

  it('incremental loads: changing only the inheritance recompiles the conditions that read roles', async () => {
    const dir = makeTempDir('verdict-effective-roles-');
    writeFiles(dir, { 'roles.yaml': roles('data_scientist'), 'rules.yaml': rules });
    const compiler = new PolicyCompiler(dir, backgroundReader(checker));
    const first = await compiler.compile({ gitCommit: null });
    if (!first.result.ok) throw new Error('expected a valid set');
    expect(evaluate(first.result.policies.policySet, request({ principal: senior, action: 'delete' })).effect).toBe('ALLOW');
    writeFiles(dir, { 'roles.yaml': roles('data_scientist, contractor') });
    const second = await compiler.compile({ gitCommit: null });
    if (!second.result.ok) throw new Error('expected a valid set');
    expect(evaluate(second.result.policies.policySet, request({ principal: senior, action: 'delete' })).effect).toBe('DENY');
  });
});

describe('a long chain of variables', () => {
  // Each reading the next: the table is built one stack frame per link, and a chain of
  // 4,000 overflowed the stack ("unexpected error" from verdict validate).
  it('is refused where it passes MAX_VARIABLE_CHAIN, naming the chain, and a shorter one compiles', () => {
    const chain = (length: number) =>
      `kind: variables\nvariables:\n${Array.from({ length }, (_, i) => `  - name: v${i}\n    expr: ${i === length - 1 ? '"true"' : `variables.v${i + 1}`}\n`).join('')}`;
    const long = loadPolicies(writePolicyDir({ 'vars.yaml': chain(4_000) }));
    const problems = long.ok ? [] : long.diagnostics.map(formatDiagnostic);
    expect(problems[0]).toBe(
      `vars.yaml:${2 * MAX_VARIABLE_CHAIN + 4}:11: variable "v${MAX_VARIABLE_CHAIN}" is read through a chain of ${MAX_VARIABLE_CHAIN} variables (v0 → v1 → v2 → … → v${MAX_VARIABLE_CHAIN - 2} → v${MAX_VARIABLE_CHAIN - 1} → v${MAX_VARIABLE_CHAIN}); at most ${MAX_VARIABLE_CHAIN} may read one another in a chain (at variables[${MAX_VARIABLE_CHAIN}].expr)`,
    );
    expect(loadPolicies(writePolicyDir({ 'vars.yaml': chain(MAX_VARIABLE_CHAIN) })).ok).toBe(true);
  });
});
