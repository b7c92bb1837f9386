import { afterAll, describe, expect, it } from 'vitest';
import { DecisionPipeline } from '../../src/decide/index.js';
import { DecisionReader } from '../../src/decisions/query.js';
import { evaluate } from '../../src/engine/evaluate.js';
import { explain } from '../../src/engine/explain.js';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { loadPolicies } from '../../src/policy/load.js';
import { backgroundReader } from '../../src/policy/background-reader.js';
import { PolicyCompiler } from '../../src/policy/compiler.js';
import { LoadWorker } from '../../src/policy/load-worker.js';
import { loadFiles, removeTempDirs, request, writeFiles, writePolicyDir, type PolicyFiles } from '../helpers/policies.js';
import { useDecisionLog } from '../helpers/decision-log.js';

const checker = new LoadWorker();
afterAll(async () => {
  await checker.close();
  removeTempDirs();
});
const decisionLog = useDecisionLog();

const schema = (enforcement: string): string => `kind: schema
enforcement: ${enforcement}
schemas:
  - for: principal
    attributes:
      org: { type: string, required: true }
      clearance: int
      employment: { type: enum, values: [employee, contractor], required: true }
      regions: { type: list, items: string }
  - for: resource
    resourceTypes: [dataset]
    attributes:
      org: { type: string, required: true }
      sensitivity: { type: int, required: true }
      pii: bool
  - for: context
    attributes:
      ticket: string
`;

const RULES = `kind: rules
rules:
  - id: read-own-org
    effect: allow
    actions: [read]
    resource: { type: dataset }
    when: resource.attributes.org == principal.attributes.org && principal.attributes.clearance >= resource.attributes.sensitivity
  - id: no-contractors
    effect: deny
    actions: ["*"]
    resource: { type: dataset }
    principal:
      attributes:
        employment: contractor
`;

function errorsOf(files: PolicyFiles): string[] {
  const result = loadPolicies(writePolicyDir(files));
  if (result.ok) throw new Error('expected validation errors');
  return result.diagnostics.map(formatDiagnostic);
}

const acme = { org: 'acme', clearance: 3, employment: 'employee' };
const dataset = { type: 'dataset', id: 'd1', attributes: { org: 'acme', sensitivity: 2 } };

describe('typed attribute schemas: validation', () => {
  it('accepts a set whose conditions and matchers fit the schema', () => {
    const { policySet } = loadFiles({ 'schema.yaml': schema('reject'), 'rules.yaml': RULES });
    expect(policySet.attributeSchemas?.enforcement).toBe('reject');
    expect(evaluate(policySet, request({ principal: { attributes: acme }, resource: dataset })).effect).toBe('ALLOW');
  });

  it('reports unknown attributes with a suggestion, and type mismatches, each at file:line:col', () => {
    const errors = errorsOf({
      'schema.yaml': schema('reject'),
      'rules.yaml': `kind: rules
rules:
  - id: typo-resource
    effect: allow
    actions: [read]
    resource: { type: dataset }
    when: resource.attributes.sensitivty > 2
  - id: typo-field
    effect: allow
    actions: [read]
    when: principal.attribute.org == "acme"
  - id: wrong-type
    effect: allow
    actions: [read]
    resource: { type: dataset }
    when: principal.attributes.clearance >= "3"
  - id: bool-as-string
    effect: allow
    actions: [read]
    resource: { type: dataset }
    when: resource.attributes.pii == "true"
`,
    });
    expect(errors).toEqual([
      expect.stringMatching(/^rules\.yaml:7:11: condition does not type-check against the attribute schema: unknown attribute resource\.attributes\.sensitivty: .*did you mean "sensitivity"\? \(column 21 of the condition\)/),
      expect.stringMatching(/^rules\.yaml:11:11: .*(attribute).*did you mean "attributes"\?/),
      expect.stringMatching(/^rules\.yaml:16:11: condition does not type-check against the attribute schema: no such overload: int >= string/),
      expect.stringMatching(/^rules\.yaml:21:11: condition does not type-check against the attribute schema: no such overload: bool == string/),
    ]);
  });

  it('names at most ten of the attributes a schema declares when one is unknown, and how many there are', () => {
    const attributes = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`attribute${i}`, 'string']));
    const errors = errorsOf({
      'schema.yaml': { kind: 'schema', schemas: [{ for: 'principal', attributes }] },
      'rules.yaml': { kind: 'rules', rules: [{ id: 'typo', effect: 'allow', actions: ['read'], when: 'principal.attributes.attribute77x == "a"', principal: { attributes: { attribut9: 'a' } } }] },
      'limits.yaml': { kind: 'limits', limits: [{ id: 'per-team', rate: '10/minute', key: { attribute: 'principal.attributes.teem' } }] },
    });
    expect(errors).toHaveLength(3);
    for (const error of errors) {
      expect(error).toContain('declares attribute0, attribute1, attribute2, attribute3, attribute4, attribute5, attribute6, attribute7, attribute8, attribute9, … (5000 in all)');
      expect(error.length).toBeLessThan(600);
    }
    expect(errors.join('\n')).toContain('did you mean "attribute77"?');
  });

  it('checks matchers: unknown names, values of the wrong type or outside an enum, globs on non-strings', () => {
    const errors = errorsOf({
      'schema.yaml': schema('reject'),
      'rules.yaml': `kind: rules
rules:
  - id: matchers
    effect: deny
    actions: [read]
    resource:
      type: dataset
      attributes:
        pii: "true"
        sensitivity: { glob: "1*" }
    principal:
      attributes:
        employment: Contractor
        orgg: acme
`,
    });
    expect(errors).toEqual([
      expect.stringMatching(/^rules\.yaml:9:14: resource\.attributes\.pii: the matcher's value "true" can never match: the attribute must be true or false \(bool\)/),
      expect.stringMatching(/^rules\.yaml:10:22: resource\.attributes\.sensitivity: a glob matches strings, but the attribute is declared int/),
      expect.stringMatching(/^rules\.yaml:13:21: principal\.attributes\.employment: the matcher's value "Contractor" can never match: the attribute must be one of "employee", "contractor"/),
      expect.stringMatching(/^rules\.yaml:14:9: unknown attribute principal\.attributes\.orgg: .*did you mean "org"\?/),
    ]);
  });

  it('checks limits like rules: matchers, condition, key, tier attribute and cost against the schema', () => {
    const errors = errorsOf({
      'schema.yaml': schema('reject'),
      'rules.yaml': RULES,
      'limits.yaml': `kind: limits
limits:
  - id: typed
    resource:
      type: dataset
      attributes: { pii: "true" }
    principal:
      attributes: { employment: Contractor }
    when: principal.attributes.clearence >= 3
    key: { attribute: principal.attributes.regions }
    rate: 10/minute
  - id: typed-cost
    resource: { type: dataset }
    key: { expr: 'resource.attributes.orgg' }
    cost: resource.attributes.sensitivity * 1.5
    tiers: { attribute: tierr, rates: { gold: 100/minute } }
    rate: 10/minute
`,
    });
    expect(errors).toEqual([
      expect.stringMatching(/^limits\.yaml:6:26: resource\.attributes\.pii: the matcher's value "true" can never match: the attribute must be true or false \(bool\)/),
      expect.stringMatching(/^limits\.yaml:8:33: principal\.attributes\.employment: the matcher's value "Contractor" can never match/),
      expect.stringMatching(/^limits\.yaml:9:11: condition does not type-check against the attribute schema: unknown attribute principal\.attributes\.clearence: .*did you mean "clearance"\?/),
      expect.stringMatching(/^limits\.yaml:10:23: principal\.attributes\.regions is declared list in the schema of principal: a limit's key must be a string, number or boolean/),
      expect.stringMatching(/^limits\.yaml:14:18: the key expression does not type-check against the attribute schema: unknown attribute resource\.attributes\.orgg: .*did you mean "org"\?/),
      expect.stringMatching(/^limits\.yaml:15:11: the cost expression does not type-check against the attribute schema: no such overload: int \* double/),
      expect.stringMatching(/^limits\.yaml:16:25: unknown attribute principal\.attributes\.tierr: .*declares org, clearance, employment, regions/),
    ]);
    // The same limits without a schema validate: the checks come from the schema.
    expect(loadPolicies(writePolicyDir({ 'rules.yaml': RULES, 'limits.yaml': 'kind: limits\nlimits:\n  - id: l\n    when: principal.attributes.clearence >= 3\n    rate: 10/minute\n' })).ok).toBe(true);
  });

  it('checks variables against the schema at their own definition', () => {
    const errors = errorsOf({
      'schema.yaml': schema('reject'),
      'variables.yaml': `kind: variables
variables:
  - name: cleared
    expr: principal.attributes.clearence >= 2
`,
      'rules.yaml': RULES,
    });
    expect(errors).toEqual([expect.stringMatching(/^variables\.yaml:4:11: variable "cleared": unknown attribute principal\.attributes\.clearence: .*did you mean "clearance"\?/)]);
  });

  it('refuses test cases whose requests break the schema under reject', () => {
    const errors = errorsOf({
      'schema.yaml': schema('reject'),
      'rules.yaml': RULES,
      'tests.yaml': `kind: tests
name: t
principals:
  stringly: { id: s, attributes: { org: acme, clearance: "3", employment: employee } }
cases:
  - name: a string clearance
    principal: stringly
    action: read
    resource: { type: dataset, id: d1, attributes: { org: acme, sensitivity: 2 } }
    expect: { effect: allow }
`,
    });
    expect(errors).toEqual([expect.stringMatching(/^tests\.yaml:6:5: .*principal\.attributes\.clearance must be a whole number \(int\), not the string "3"/)]);
  });

  it('rejects a part declared twice and conflicting enforcement', () => {
    const errors = errorsOf({
      'a.yaml': schema('reject'),
      'b.yaml': `kind: schema
enforcement: warn
schemas:
  - for: resource
    resourceTypes: [model, dataset]
    attributes: { org: string }
`,
    });
    expect(errors).toEqual([
      expect.stringMatching(/^b\.yaml:2:14: enforcement "warn" differs from "reject"/),
      expect.stringMatching(/^b\.yaml:5:28: the attributes of resource type dataset are already declared at a\.yaml/),
    ]);
  });

  it('a single = says to write ==', () => {
    expect(errorsOf({ 'rules.yaml': 'kind: rules\nrules:\n  - id: r\n    effect: allow\n    actions: [read]\n    when: principal.id = "x"\n' })).toEqual([
      'rules.yaml:6:11: condition does not compile: Unexpected character: = (to compare, write ==) (column 14 of the condition) (at rules[0].when)',
    ]);
  });

  it('the schema is part of the policy version', () => {
    const a = loadFiles({ 'schema.yaml': schema('reject'), 'rules.yaml': RULES }).policySet.version;
    const b = loadFiles({ 'schema.yaml': schema('warn'), 'rules.yaml': RULES }).policySet.version;
    expect(a).not.toBe(b);
  });
});

describe('typed attribute schemas: reloads', () => {
  it('a reload with a changed schema type-checks the unchanged rules again, and the new schema decides', async () => {
    const dir = writePolicyDir({ 'schema.yaml': schema('reject'), 'rules.yaml': RULES });
    const compiler = new PolicyCompiler(dir, backgroundReader(checker), 1);
    const first = (await compiler.compile({ gitCommit: null })).result;
    expect(first.ok).toBe(true);
    // sensitivity becomes a string: the rule comparing it with an int clearance no longer type-checks.
    writeFiles(dir, { 'schema.yaml': schema('reject').replace('sensitivity: { type: int, required: true }', 'sensitivity: { type: string, required: true }') });
    const second = (await compiler.compile({ gitCommit: null })).result;
    expect(second.ok).toBe(false);
    if (second.ok) return;
    expect(second.diagnostics.map(formatDiagnostic)).toEqual([expect.stringMatching(/^rules\.yaml:7:11: condition does not type-check against the attribute schema: no such overload: int >= string/)]);
    // Back to warn with the original types: loads, and a violation is now only warned about.
    writeFiles(dir, { 'schema.yaml': schema('warn') });
    const third = (await compiler.compile({ gitCommit: null })).result;
    expect(third.ok && third.policies.policySet.attributeSchemas?.enforcement).toBe('warn');
  });
});

describe('typed attribute schemas: deny matchers on required attributes never silently miss', () => {
  const { policySet } = loadFiles({ 'schema.yaml': schema('none'), 'rules.yaml': RULES });

  it.each([
    ['absent', { org: 'acme', clearance: 3 }],
    ['differently cased', { ...acme, employment: 'Contractor' }],
    ['of the wrong type', { ...acme, employment: true }],
  ])('a contractor attribute that is %s denies by error rather than skipping the deny', (_, attributes) => {
    const decision = evaluate(policySet, request({ principal: { attributes }, resource: dataset }));
    expect(decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['no-contractors'] });
    expect(decision.errors[0]!.message).toMatch(/principal\.attributes\.employment .*the attribute schema requires it/);
    expect(explain(policySet, request({ principal: { attributes }, resource: dataset })).considered.find((r) => r.ruleId === 'no-contractors')).toMatchObject({ outcome: 'error' });
  });

  it('an employee is still allowed and a contractor still denied by the rule', () => {
    expect(evaluate(policySet, request({ principal: { attributes: acme }, resource: dataset })).reason).toBe('ALLOWED_BY_RULE');
    expect(evaluate(policySet, request({ principal: { attributes: { ...acme, employment: 'contractor' } }, resource: dataset }))).toMatchObject({ reason: 'DENIED_BY_RULE', ruleIds: ['no-contractors'] });
  });
});

describe('typed attribute schemas: enforcement at decision time', () => {
  const meta = { caller: 'test', requestId: null };
  const stringly = request({ principal: { id: 'sam', attributes: { ...acme, clearance: '3' } }, resource: dataset });

  it('reject: the request is refused as invalid, never evaluated, and recorded with the violation', async () => {
    const { policySet } = loadFiles({ 'schema.yaml': schema('reject'), 'rules.yaml': RULES });
    const pipeline = new DecisionPipeline({ current: policySet }, decisionLog());
    const result = await pipeline.check(stringly, meta);
    expect(result.decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', ruleIds: [] });
    expect(result.decision.errors).toEqual([{ ruleId: 'schema', message: 'the request breaks the attribute schema: principal.attributes.clearance must be a whole number (int), not the string "3"' }]);
    const ok = await pipeline.check(request({ principal: { attributes: acme }, resource: dataset }), meta);
    expect(ok.decision.effect).toBe('ALLOW');
    const reader = DecisionReader.open(decisionLog().path);
    try {
      const row = reader.get(result.decisionId);
      expect(row).toMatchObject({ reason: 'DENIED_INVALID_REQUEST', errors: [{ ruleId: 'schema' }] });
    } finally {
      reader.close();
    }
  });

  it('warn: decided as usual, the violation in the row details', async () => {
    const { policySet } = loadFiles({ 'schema.yaml': schema('warn'), 'rules.yaml': RULES });
    const pipeline = new DecisionPipeline({ current: policySet }, decisionLog());
    const missing = request({ principal: { attributes: acme }, resource: { type: 'dataset', id: 'd2', attributes: { org: 'acme', sensitivity: 1, pii: 'yes' } } });
    const result = await pipeline.check(missing, meta);
    expect(result.decision).toMatchObject({ effect: 'ALLOW', schemaViolations: ['resource.attributes.pii must be true or false (bool), not the string "yes"'] });
    const reader = DecisionReader.open(decisionLog().path);
    try {
      expect(reader.get(result.decisionId)?.details).toEqual({ schema: { enforcement: 'warn', violations: ['resource.attributes.pii must be true or false (bool), not the string "yes"'] } });
    } finally {
      reader.close();
    }
  });

  it('a shadow set with a schema refuses as it would if served: recorded as a disagreement beside the live answer', async () => {
    const live = loadFiles({ 'rules.yaml': RULES }).policySet;
    const candidate = loadFiles({ 'schema.yaml': schema('reject'), 'rules.yaml': RULES }).policySet;
    const pipeline = new DecisionPipeline({ current: live }, decisionLog(), { shadow: { current: candidate } });
    const result = await pipeline.check(request({ principal: { attributes: acme }, resource: { ...dataset, attributes: { ...dataset.attributes, pii: 'yes' } } }), meta);
    expect(result.decision).toMatchObject({ effect: 'ALLOW', reason: 'ALLOWED_BY_RULE' });
    const reader = DecisionReader.open(decisionLog().path);
    try {
      expect(reader.get(result.decisionId)?.details).toMatchObject({
        shadow: { effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', ruleIds: [], policyVersion: candidate.version },
      });
    } finally {
      reader.close();
    }
    // A request that fits the candidate's schema: both allow, nothing to say.
    const fits = await pipeline.check(request({ principal: { attributes: acme }, resource: dataset }), meta);
    expect(fits.decision.shadow).toBeUndefined();
  });

  it('none: no check at all', async () => {
    const { policySet } = loadFiles({ 'schema.yaml': schema('none'), 'rules.yaml': RULES });
    const pipeline = new DecisionPipeline({ current: policySet }, decisionLog());
    const result = await pipeline.check(request({ principal: { attributes: acme }, resource: { ...dataset, attributes: { ...dataset.attributes, pii: 'yes' } } }), meta);
    expect(result.decision.schemaViolations).toBeUndefined();
    expect(result.decision.effect).toBe('ALLOW');
  });
});
