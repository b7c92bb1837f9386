import { afterAll, describe, expect, it } from 'vitest';
import { runPolicyTests } from '../../src/engine/test-runner.js';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { LOAD_STAGES, loadPolicies } from '../../src/policy/load.js';
import { runToEnd } from '../../src/policy/pipeline.js';
import { syncReader } from '../../src/policy/stages/read.js';
import { newLoadState } from '../../src/policy/stages/state.js';
import { MATRIX_CASES_PER_PAUSE, MAX_MATRIX_CASES, testsStage } from '../../src/policy/stages/tests.js';
import { loadFiles, removeTempDirs, writePolicyDir, type PolicyFiles } from '../helpers/policies.js';

afterAll(removeTempDirs);

const RULES = `kind: rules
rules:
  - id: members-read
    effect: allow
    actions: [read, list]
    principal: { roles: [member] }
    when: resource.attributes.team == principal.attributes.team
  - id: admins-all
    effect: allow
    actions: ["*"]
    principal: { roles: [admin] }
`;
const ROLES = `kind: roles
roles:
  - name: member
  - name: admin
`;
const FIXTURES = `kind: fixtures
name: people
principals:
  mia: { id: mia, roles: [member], attributes: { team: red } }
  ada: { id: ada, roles: [admin] }
resources:
  red-doc: { type: doc, id: r1, attributes: { team: red } }
  blue-doc: { type: doc, id: b1, attributes: { team: blue } }
`;

const files = (tests: Record<string, string>): PolicyFiles => ({ 'rules.yaml': RULES, 'roles.yaml': ROLES, 'fixtures/people.yaml': FIXTURES, ...tests });

describe('shared fixtures and matrix cases', () => {
  it('lets any test file name the fixtures of a fixtures file, and expands a matrix case with an expectation table', () => {
    const { policySet, tests } = loadFiles(
      files({
        'a.test.yaml': `kind: tests
name: single
fixtures: [people]
cases:
  - name: a member reads a doc of their team
    principal: mia
    action: read
    resource: red-doc
    expect: { effect: allow, rules: [members-read] }
`,
        'b.test.yaml': `kind: tests
name: matrix
fixtures: [people]
cases:
  - name: who may do what
    principals: [mia, ada]
    actions: [read, delete]
    resources: [red-doc, blue-doc]
    expect:
      - principal: mia
        resource: red-doc
        actions: { read: allow }
      - principal: ada
        resource: [red-doc, blue-doc]
        actions: { read: allow, delete: allow }
`,
      }),
    );
    expect(tests.map((t) => t.name)).toEqual([
      'a member reads a doc of their team',
      'who may do what [mia read red-doc]',
      'who may do what [mia read blue-doc]',
      'who may do what [mia delete red-doc]',
      'who may do what [mia delete blue-doc]',
      'who may do what [ada read red-doc]',
      'who may do what [ada read blue-doc]',
      'who may do what [ada delete red-doc]',
      'who may do what [ada delete blue-doc]',
    ]);
    // Combinations the table does not list are expected to be denied.
    expect(tests.filter((t) => t.expect.effect === 'DENY').map((t) => t.name)).toEqual(['who may do what [mia read blue-doc]', 'who may do what [mia delete red-doc]', 'who may do what [mia delete blue-doc]']);
    const run = runPolicyTests(policySet, tests);
    expect(run.failed).toBe(0);
    expect(run.passed).toBe(9);
  });

  it('a matrix cell that disagrees fails as its own case', () => {
    const { policySet, tests } = loadFiles(
      files({
        'b.test.yaml': `kind: tests
name: matrix
fixtures: [people]
cases:
  - name: wrong
    principals: [mia]
    actions: [read]
    resources: [blue-doc]
    expect:
      - { principal: mia, resource: blue-doc, actions: { read: allow } }
`,
      }),
    );
    const run = runPolicyTests(policySet, tests);
    expect(run.results.map((r) => [r.testCase.name, r.passed])).toEqual([['wrong [mia read blue-doc]', false]]);
  });

  it('reports unknown fixtures files, names and table entries at file:line:col', () => {
    const result = loadPolicies(
      writePolicyDir(
        files({
          't.test.yaml': `kind: tests
name: bad
fixtures: [peopel]
cases:
  - name: m
    principals: [mia, nobody]
    actions: [read]
    resources: [red-doc]
    expect:
      - { principal: mia, resource: red-doc, actions: { write: allow } }
`,
        }),
      ),
    );
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringMatching(/^t\.test\.yaml:3:12: unknown fixtures "peopel": .*did you mean "people"\?/),
      expect.stringMatching(/^t\.test\.yaml:6:18: unknown principal "mia"/),
      expect.stringMatching(/^t\.test\.yaml:6:23: unknown principal "nobody"/),
      expect.stringMatching(/^t\.test\.yaml:8:17: unknown resource "red-doc"/),
      expect.stringMatching(/^t\.test\.yaml:10:64: "write" is not one of the case's actions \(read\)/),
    ]);
  });

  it('fixtures files, like tests, do not change the policy version', () => {
    const a = loadFiles(files({})).policySet.version;
    const b = loadFiles({ ...files({}), 'fixtures/people.yaml': FIXTURES.replace('team: red }', 'team: green }') }).policySet.version;
    expect(b).toBe(a);
  });
});

describe('a large matrix case', () => {
  // 400 principals × 400 resources: 160,000 cases from a file of a few kilobytes. They were
  // added to the load as the arguments of one call, which overflowed the stack, and made
  // in one go, which held a reload's deciding thread for 167 ms.
  it.each([
    ['one table entry', 'principal: p0\n        resource: r0', 1],
    ['a table of every combination', 'principal: [ALLP]\n        resource: [ALLR]', 2],
  ])('expands to every combination, a slice at a time, with %s', (_title, row, passes) => {
    const names = (prefix: string) => Array.from({ length: 400 }, (_, i) => `${prefix}${i}`);
    const fixtures = `kind: fixtures
name: many
principals:
${names('p').map((n) => `  ${n}: { id: ${n}, roles: [member], attributes: { team: red } }`).join('\n')}
resources:
${names('r').map((n) => `  ${n}: { type: doc, id: ${n}, attributes: { team: blue } }`).join('\n')}
`;
    const dir = writePolicyDir({
      'rules.yaml': RULES,
      'roles.yaml': ROLES,
      'fixtures/many.yaml': fixtures,
      'm.test.yaml': `kind: tests
name: matrix
fixtures: [many]
cases:
  - name: nobody reads another team's docs
    principals: [${names('p').join(', ')}]
    actions: [read]
    resources: [${names('r').join(', ')}]
    expect:
      - ${row.replace('ALLP', names('p').join(', ')).replace('ALLR', names('r').join(', '))}
        actions: { read: deny }
`,
    });
    const state = newLoadState(dir, syncReader);
    for (const stage of LOAD_STAGES.slice(0, LOAD_STAGES.indexOf(testsStage))) runToEnd(stage.run(state));
    const run = testsStage.run(state);
    let steps = 0;
    for (let step = run.next(); !step.done; step = run.next()) steps++;
    expect(state.diagnostics.map(formatDiagnostic)).toEqual([]);
    expect(state.tests).toHaveLength(160_000);
    expect(state.tests.at(-1)?.name).toBe("nobody reads another team's docs [p399 read r399]");
    // A chance to pause every MATRIX_CASES_PER_PAUSE combinations (the slice driver takes it once its slice is spent),
    // and as often while the table is spelled out (it held the thread for 90–100 ms in one go).
    expect(steps).toBeGreaterThanOrEqual((passes * 160_000) / MATRIX_CASES_PER_PAUSE);
  }, 300_000);
});

describe('matrix cases past what a load may make', () => {
  // One fixture named a thousand times in each list: a 9 KB file asked for a billion
  // cases, and the load (and a server reloading it) ran out of memory. One table row
  // naming 5,000 principals and 5,000 resources spelled out 25 million entries.
  const many = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  const testFile = (cases: string) => `kind: tests
name: big
principals:
${many('p', 300).map((n) => `  ${n}: { id: ${n}, roles: [member] }`).join('\n')}
resources:
${many('r', 300).map((n) => `  ${n}: { type: doc, id: ${n} }`).join('\n')}
cases:
${cases}`;
  const errorsOf = (files: PolicyFiles): string[] => {
    const result = loadPolicies(writePolicyDir(files));
    return result.ok ? [] : result.diagnostics.map(formatDiagnostic);
  };

  it('refuses a case that would make more than MAX_MATRIX_CASES, before making any', () => {
    const repeated = (name: string) => `[${Array(1000).fill(name).join(', ')}]`;
    expect(errorsOf({ 'rules.yaml': RULES, 'roles.yaml': ROLES, 't.test.yaml': testFile(`  - name: everything
    principals: ${repeated('p0')}
    actions: ${repeated('read')}
    resources: ${repeated('r0')}
    expect: [{ principal: p0, resource: r0, actions: { read: allow } }]
`) })).toEqual([expect.stringMatching(new RegExp(`^t\\.test\\.yaml:\\d+:\\d+: a matrix case of 1000 principals × 1000 actions × 1000 resources makes 1000000000 cases; the matrix cases of a policy set may make at most ${MAX_MATRIX_CASES} in all`))]);
  });

  it('refuses a table that spells out more, and cases past what the earlier ones left', () => {
    const all = (prefix: string) => `[${many(prefix, 300).join(', ')}]`;
    const errors = errorsOf({ 'rules.yaml': RULES, 'roles.yaml': ROLES, 't.test.yaml': testFile(`  - name: a table too large
    principals: [p0]
    actions: [read, list, write]
    resources: [r0]
    expect: [{ principal: ${all('p')}, resource: ${all('r')}, actions: { read: allow, list: allow, write: allow } }]
  - name: first
    principals: ${all('p')}
    actions: [read]
    resources: ${all('r')}
    expect: [{ principal: p0, resource: r0, actions: { read: deny } }]
  - name: second
    principals: ${all('p')}
    actions: [read, list]
    resources: ${all('r')}
    expect: [{ principal: p0, resource: r0, actions: { read: deny } }]
`) });
    expect(errors).toEqual([
      expect.stringContaining('a matrix case of 1 principals × 3 actions × 1 resources makes 3 cases and its table spells out 270000;'),
      expect.stringContaining(`a matrix case of 300 principals × 2 actions × 300 resources makes 180000 cases; the matrix cases of a policy set may make at most ${MAX_MATRIX_CASES} in all (${MAX_MATRIX_CASES - 90_000} left for this one)`),
    ]);
  });
});
