// `verdict test`, `verdict check` and the loader decide and refuse as the server does:
// the directory fills a request in before the attribute schema is checked, directory
// entries are checked against the schema at load, and the request checks the server
// makes before deciding (finite numbers, reserved names, sizes) run on a request given
// to `verdict check` and on every test case.
import { afterAll, describe, expect, it } from 'vitest';
import { runCheck } from '../../src/cli/check.js';
import { runTest } from '../../src/cli/test.js';
import { runValidate } from '../../src/cli/validate.js';
import { RequestMeter } from '../../src/decide/bounds.js';
import { runPolicyTests } from '../../src/engine/test-runner.js';
import { loadPolicies } from '../../src/policy/load.js';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { loadValid, removeTempDirs, writePolicyDir } from '../helpers/policies.js';

afterAll(() => removeTempDirs());

async function cli(run: (argv: string[], io: { stdout: (s: string) => void; stderr: (s: string) => void }) => Promise<number>, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

const READS = `kind: rules
rules:
  - id: anyone-reads-models
    effect: allow
    actions: [read]
    resource: { type: model }
`;
const schema = (enforcement: string): string => `kind: schema
enforcement: ${enforcement}
schemas:
  - for: principal
    attributes:
      tier: { type: enum, values: [free, premium], required: true }
`;
const leoWithTier = (tier: string): string => `kind: principals
principals:
  - id: leo
    roles: []
    attributes: { tier: ${tier} }
`;
const LEO_READS = `kind: tests
name: dir vs schema
cases:
  - name: leo reads a model
    principal: { id: leo, attributes: { tier: free } }
    action: read
    resource: { type: model, id: m }
    expect: { effect: allow }
`;

describe('directory entries against the attribute schema', () => {
  it('under enforcement: reject, an entry breaking the schema is a load error at its file:line:col', async () => {
    const dir = writePolicyDir({ 'rules.yaml': READS, 'schema.yaml': schema('reject'), 'principals.yaml': leoWithTier('standard'), 'tests.yaml': LEO_READS });
    const result = loadPolicies(dir);
    expect(result.ok).toBe(false);
    const messages = result.ok ? [] : result.diagnostics.map(formatDiagnostic);
    expect(messages).toEqual([
      expect.stringMatching(/^principals\.yaml:3:5: principal "leo": attribute tier must be one of .*free.*premium.*not the string "standard", so every request naming it is refused \(enforcement: reject\); fix the entry or the schema/),
      // The case, completed by the directory as served, breaks the schema too.
      expect.stringMatching(/^tests\.yaml:4:5: this case's request breaks the attribute schema .*principal\.attributes\.tier must be one of .*not the string "standard"/),
    ]);
    // `verdict test` no longer passes a case the server refuses.
    const run = await cli(runTest, dir);
    expect(run.code).not.toBe(0);
    expect(run.stdout + run.stderr).toContain('principals.yaml:3:5');
  });

  it('under enforcement: warn, the set loads and verdict validate warns at the entry', async () => {
    const dir = writePolicyDir({ 'rules.yaml': READS, 'schema.yaml': schema('warn'), 'principals.yaml': leoWithTier('standard') });
    const run = await cli(runValidate, dir);
    expect(run.code).toBe(0);
    expect(run.stdout + run.stderr).toMatch(/principals\.yaml:3:5: warning: principal "leo": attribute tier must be .* every request naming it breaks the schema \(enforcement: warn\)/);
  });
});

describe('test cases decided as served', () => {
  it('a case is schema-checked after the directory filled it in: one the directory completes loads', () => {
    // The case leaves tier out; the directory gives it, so the server accepts the request.
    const dir = writePolicyDir({
      'rules.yaml': READS,
      'schema.yaml': schema('reject'),
      'principals.yaml': leoWithTier('premium'),
      'tests.yaml': LEO_READS.replace('principal: { id: leo, attributes: { tier: free } }', 'principal: { id: leo }'),
    });
    const loaded = loadValid(dir);
    expect(runPolicyTests(loaded.policySet, loaded.tests)).toMatchObject({ passed: 1, failed: 0 });
  });

  it('the runner fills the request in and checks the schema before the rules, as the server does', () => {
    const { policySet } = loadValid(writePolicyDir({ 'rules.yaml': READS, 'schema.yaml': schema('reject'), 'principals.yaml': 'kind: principals\nprincipals:\n  - id: leo\n    roles: []\n' }));
    const request = { principal: { id: 'leo', roles: [], attributes: {} }, action: 'read', resource: { type: 'model', id: 'm', attributes: {} }, context: { attributes: {} } };
    const summary = runPolicyTests(policySet, [{ suite: 's', name: 'no tier', file: 't.yaml', line: 1, request, expect: { effect: 'ALLOW', reason: null, rules: null } }]);
    expect(summary.failed).toBe(1);
    expect(summary.results[0]!.problems).toEqual(['expected ALLOW, got DENY (DENIED_INVALID_REQUEST)']);
    // The rules never ran, so they were not seen deciding.
    expect(summary.coverage.seen).toBe(0);
  });
});

const RISK = `kind: rules
rules:
  - id: allow-read
    effect: allow
    actions: [read]
    resource: { type: model }
  - id: deny-risky
    effect: deny
    actions: [read]
    resource: { type: model }
    when: principal.attributes.risk > 0.8
`;

describe('the request checks the server makes before deciding', () => {
  it('verdict check refuses NaN, as the server does, instead of deciding it', async () => {
    const dir = writePolicyDir({ 'rules.yaml': RISK });
    const nan = await cli(runCheck, '--policies', dir, '--request', '{principal: {id: u, attributes: {risk: .nan}}, action: read, resource: {type: model, id: m}}');
    expect(nan.code).toBe(4);
    expect(nan.stdout).toBe('');
    expect(nan.stderr).toContain('the server refuses this request (DENIED_INVALID_REQUEST): principal.attributes.risk: number must be finite');
    const infinite = await cli(runCheck, '--policies', dir, '--request', '{principal: {id: u, attributes: {risk: [1, .inf]}}, action: read, resource: {type: model, id: m}}');
    expect(infinite.code).toBe(4);
    expect(infinite.stderr).toContain('principal.attributes.risk[1]: number must be finite');
    const reserved = await cli(runCheck, '--policies', dir, '--request', '{"principal": {"id": "u", "attributes": {"constructor": 1}}, "action": "read", "resource": {"type": "model", "id": "m"}}');
    expect(reserved.code).toBe(4);
    expect(reserved.stderr).toContain('principal.attributes.constructor: cannot be an attribute name');
    const long = await cli(runCheck, '--policies', dir, '--request', JSON.stringify({ principal: { id: 'u' }, action: 'read', resource: { type: 'model', id: 'm'.repeat(9000) } }));
    expect(long.code).toBe(4);
    expect(long.stderr).toContain('resource.id: 9000 characters, over the limit of 8192');
    const fine = await cli(runCheck, '--policies', dir, '--request', '{principal: {id: u, attributes: {risk: 0.9}}, action: read, resource: {type: model, id: m}}');
    expect(fine.code).toBe(0);
    expect(fine.stdout).toMatch(/^DENY {2}denied by rule/);
  });

  it('a test case the server would refuse is a load error at its file:line:col', async () => {
    const dir = writePolicyDir({
      'rules.yaml': RISK,
      'tests.yaml': `kind: tests
name: risk
cases:
  - name: a risky principal is denied
    principal: { id: u, attributes: { risk: .nan } }
    action: read
    resource: { type: model, id: m }
    expect: { effect: allow }
`,
    });
    const result = loadPolicies(dir);
    expect(result.ok ? [] : result.diagnostics.map(formatDiagnostic)).toEqual([
      'tests.yaml:4:5: this case\'s request is one the server refuses (DENIED_INVALID_REQUEST) before any rule: principal.attributes.risk: number must be finite (NaN and Infinity are not JSON) (at cases[0])',
    ]);
    expect((await cli(runTest, dir)).code).not.toBe(0);
  });

  it('the request limits refuse a number that is not finite wherever the request came from', () => {
    const meter = new RequestMeter();
    const request = (risk: number) => ({ principal: { id: 'u', roles: [], attributes: { nested: { risk } } }, action: 'read', resource: { type: 'model', id: 'm', attributes: {} }, context: { attributes: {} } });
    expect(meter.problem(request(Number.NaN))).toBe('principal.attributes.nested.risk: number must be finite (NaN and Infinity are not JSON)');
    expect(meter.problem(request(Number.NEGATIVE_INFINITY))).toMatch(/must be finite/);
    expect(meter.problem(request(0.9))).toBeNull();
  });
});

describe('an id the directories list under another spelling', () => {
  const dir = writePolicyDir({ 'rules.yaml': READS, 'principals.yaml': leoWithTier('free') });

  it('is refused by verdict check, as the server refuses it, where the listed spelling is decided', async () => {
    const listed = await cli(runCheck, '--policies', dir, '--json', '--request', '{principal: {id: leo}, action: read, resource: {type: model, id: m}}');
    expect(JSON.parse(listed.stdout)).toMatchObject({ effect: 'ALLOW' });
    const shouted = await cli(runCheck, '--policies', dir, '--json', '--request', '{principal: {id: LEO}, action: read, resource: {type: model, id: m}}');
    expect(JSON.parse(shouted.stdout)).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', errors: [{ message: expect.stringMatching(/^the principal "LEO" differs from the directory's "leo" only in case/) }] });
  });

  it('is refused in a policy test case too', () => {
    const { policySet } = loadValid(dir);
    const request = { principal: { id: 'LEO', roles: [], attributes: {} }, action: 'read', resource: { type: 'model', id: 'm', attributes: {} }, context: { attributes: {} } };
    const summary = runPolicyTests(policySet, [{ suite: 's', name: 'shouted', file: 't.yaml', line: 1, request, expect: { effect: 'ALLOW', reason: null, rules: null } }]);
    expect(summary.results[0]!.problems).toEqual(['expected ALLOW, got DENY (DENIED_INVALID_REQUEST)']);
  });
});
