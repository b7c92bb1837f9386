import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect as globalExpect, it, type ExpectStatic } from 'vitest';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { loadPolicies } from '../../src/policy/load.js';

/**
 * Runs the real `verdict` binary (bin/verdict.js over dist/) as a CI script would.
 * Paths are given relative to the repository root, which is the working directory.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const BROKEN = 'test/fixtures/broken/all-errors';
const UNEXERCISED = 'test/fixtures/cli/unexercised';
const FAILING = 'test/fixtures/cli/failing-test';
const REQUEST_FILE = 'test/fixtures/requests/delete-production.json';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `verdict <args>` with `input` on stdin (empty by default). Never rejects. */
function verdict(args: string[], input = ''): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      process.execPath,
      ['bin/verdict.js', ...args],
      { cwd: ROOT, encoding: 'utf8', timeout: 30_000, env: { ...process.env, VERDICT_DEBUG: '', NO_COLOR: '1' } },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') reject(error);
        else resolvePromise({ status: child.exitCode, stdout, stderr });
      },
    );
    child.stdin?.end(input);
  });
}

/** No stack trace, ever: a frame line looks like "    at fn (file:1:2)". */
function expectNoStackTrace(expect: ExpectStatic, run: Run): void {
  expect(run.stderr).not.toContain('    at ');
  expect(run.stdout).not.toContain('    at ');
}

const DANA = {
  principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
  action: 'predict',
  resource: { type: 'model', id: 'fraud-detector-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } },
  context: { attributes: {} },
};

/** The version the binary must report for policies/: computed by the library itself. */
let policiesVersion = '';

beforeAll(() => {
  // test/global-setup.ts has built dist/ once for every test file.
  globalExpect(existsSync(join(ROOT, 'dist/cli/main.js'))).toBe(true);
  const loaded = loadPolicies(join(ROOT, 'policies'));
  if (!loaded.ok) throw new Error('policies/ is invalid');
  policiesVersion = loaded.policies.policySet.version;
}, 200_000);

describe.concurrent('verdict validate', () => {
  it('prints dir/file locations whether or not DIR ends in a slash', async ({ expect }) => {
    const run = await verdict(['validate', `${BROKEN}/`]);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`${BROKEN}/rules.yaml:`);
    expect(run.stderr).not.toContain('//');
  });

  it('accepts the shipped policies: exit 0 and a summary with the version', async ({ expect }) => {
    const run = await verdict(['validate', 'policies']);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^policies: valid — \d+ files, \d+ rules, .*\d+ test cases.*; version \S+\n$/);
    expect(run.stdout).toContain(`version ${policiesVersion}`);
  });

  it('defaults to the policies directory', async ({ expect }) => {
    const run = await verdict(['validate']);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^policies: valid/);
  });

  it('reports every error of a broken directory as dir/file:line:col: message, exit 1', async ({ expect }) => {
    const run = await verdict(['validate', BROKEN]);
    expect(run.status).toBe(1);
    expectNoStackTrace(expect, run);
    const result = loadPolicies(join(ROOT, BROKEN));
    if (result.ok) throw new Error('expected the broken fixtures to be invalid');
    const lines = run.stderr.trimEnd().split('\n');
    const located = lines.filter((line) => /^test\/fixtures\/broken\/all-errors\/[\w./-]+:\d+:\d+: \S/.test(line));
    expect(located).toHaveLength(result.diagnostics.length);
    for (const d of result.diagnostics) expect(lines).toContain(`${BROKEN}/${formatDiagnostic(d)}`);
    // A few pinned exactly, as a reader sees them.
    expect(lines).toContain(`${BROKEN}/rules.yaml:10:13: effect must be allow or deny (at rules[2].effect)`);
    expect(lines).toContainEqual(expect.stringMatching(/^test\/fixtures\/broken\/all-errors\/unknown-kind\.yaml:1:7: unknown kind "rulez": expected one of rules, roles, tests\b.* \(at kind\)$/));
    expect(lines).toContainEqual(expect.stringMatching(/^test\/fixtures\/broken\/all-errors\/roles\.yaml:14:15: role "chicken" inherits itself through a cycle/));
    expect(lines).toContainEqual(expect.stringMatching(/^test\/fixtures\/broken\/all-errors\/tests\/cases\.yaml:22:38: expected rule "no-such-rule" does not exist/));
    expect(lines).toContainEqual(expect.stringMatching(/^test\/fixtures\/broken\/all-errors\/syntax\.yaml:\d+:\d+: /));
    expect(lines.at(-1)).toBe(`${result.diagnostics.length} errors in ${BROKEN}`);
  });

  it('--json reports the errors as data', async ({ expect }) => {
    const run = await verdict(['validate', BROKEN, '--json']);
    expect(run.status).toBe(1);
    const report = JSON.parse(run.stdout) as { valid: boolean; errors: { file: string; line: number; col: number; path: string; message: string }[] };
    expect(report.valid).toBe(false);
    expect(report.errors).toContainEqual({ file: 'rules.yaml', line: 10, col: 13, path: 'rules[2].effect', message: 'effect must be allow or deny' });
    const ok = JSON.parse((await verdict(['validate', 'policies', '--json'])).stdout) as { valid: boolean; version: string };
    expect(ok).toMatchObject({ valid: true, version: policiesVersion });
  });

  it('a missing directory: exit 3, one line', async ({ expect }) => {
    const run = await verdict(['validate', 'no/such/dir']);
    expect(run.status).toBe(3);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('no/such/dir');
    expectNoStackTrace(expect, run);
  });
});

describe.concurrent('verdict test', () => {
  it('passes on the shipped policies: exit 0 and an "N passed, 0 failed" summary', async ({ expect }) => {
    const run = await verdict(['test', 'policies']);
    expect(run.status).toBe(0);
    const loaded = loadPolicies(join(ROOT, 'policies'));
    const count = loaded.ok ? loaded.policies.tests.length : -1;
    expect(count).toBeGreaterThanOrEqual(20);
    expect(run.stdout).toMatch(new RegExp(`\\n${count} passed, 0 failed\\n$`));
    expect(run.stdout).not.toContain('FAIL');
  });

  it('--verbose lists every passing case', async ({ expect }) => {
    const run = await verdict(['test', 'policies', '--verbose']);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^PASS model access › a data scientist calls a model of their own organisation {2}\(policies\/tests\/model-access\.yaml:\d+\)$/m);
  });

  it('reports coverage: rules never seen deciding, rules never seen not matching, and the figure', async ({ expect }) => {
    const run = await verdict(['test', UNEXERCISED]);
    expect(run.status).toBe(0);
    const [, undecided] = run.stdout.split(/\n(?=rules no test saw deciding)/);
    expect(undecided).toMatch(new RegExp(`^rules no test saw deciding \\(1\\):\n {2}nobody-tested-this {2}\\(${UNEXERCISED}/rules\\.yaml:10\\)\n`));
    // members-read decided its case, but no case showed it refusing a non-member.
    expect(run.stdout).toMatch(new RegExp(`rules no test saw not matching \\(1\\):\n {2}members-read {2}\\(${UNEXERCISED}/rules\\.yaml:3\\)\n`));
    expect(run.stdout).toMatch(/\ncoverage: 33\.3% \(1 of 3 rule outcomes seen\)\n1 passed, 0 failed\n$/);
  });

  it('--min-coverage fails a run whose coverage is lower, and passes one at or above it', async ({ expect }) => {
    const low = await verdict(['test', UNEXERCISED, '--min-coverage', '90']);
    expect(low.status).toBe(1);
    expect(low.stderr).toMatch(/^verdict test: coverage 33\.3% is below --min-coverage 90%/);
    expect((await verdict(['test', 'policies', '--min-coverage', '100%'])).status).toBe(0);
    const bad = await verdict(['test', 'policies', '--min-coverage', 'most']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--min-coverage must be a percentage');
  });

  it('--junit and --json write machine-readable reports beside the text output', async ({ expect }) => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-report-'));
    try {
      const junit = join(dir, 'results.xml');
      const json = join(dir, 'results.json');
      const run = await verdict(['test', FAILING, '--junit', junit, '--json', json]);
      expect(run.status).toBe(1);
      expect(run.stdout).toMatch(/\n1 passed, 1 failed\n$/);
      const xml = readFileSync(junit, 'utf8');
      expect(xml).toMatch(/^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites name="verdict test" tests="2" failures="1">\n {2}<testsuite name="failing" tests="2" failures="1">\n/);
      expect(xml).toContain(`<testcase classname="failing" name="a member reads" file="${FAILING}/tests/cases.yaml" line="4"/>`);
      expect(xml).toContain(`<testcase classname="failing" name="a guest reads (this expectation is wrong on purpose)" file="${FAILING}/tests/cases.yaml" line="10">`);
      expect(xml).toContain('<failure message="expected ALLOW, got DENY (DENIED_BY_DEFAULT)">expected ALLOW, got DENY (DENIED_BY_DEFAULT)\nexpected deciding rules [members-read], got []</failure>');
      const report = JSON.parse(readFileSync(json, 'utf8')) as { passed: number; failed: number; cases: { name: string; passed: boolean }[]; coverage: { possible: number; rules: { id: string }[] } };
      expect(report).toMatchObject({ passed: 1, failed: 1, coverage: { possible: 2 } });
      expect(report.cases.map((c) => [c.name, c.passed])).toEqual([['a member reads', true], ['a guest reads (this expectation is wrong on purpose)', false]]);
      const unwritable = await verdict(['test', FAILING, '--junit', join(dir, 'no', 'such', 'dir', 'r.xml')]);
      expect(unwritable.status).toBe(2);
      expect(unwritable.stderr).toMatch(/^verdict test: cannot write the report .*r\.xml: ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a failing case: exit 1, a FAIL line with what differed and why', async ({ expect }) => {
    const run = await verdict(['test', FAILING]);
    expect(run.status).toBe(1);
    const out = run.stdout;
    expect(out).toMatch(new RegExp(`^FAIL failing › a guest reads \\(this expectation is wrong on purpose\\) {2}\\(${FAILING}/tests/cases\\.yaml:10\\)$`, 'm'));
    expect(out).toContain('expected ALLOW, got DENY (DENIED_BY_DEFAULT)');
    expect(out).toContain('expected deciding rules [members-read], got []');
    expect(out).toMatch(/considered 1 of 1 rules/);
    expect(out).toContain('principal.attributes.member equals true — is false');
    expect(out).not.toContain('FAIL failing › a member reads');
    expect(out).toMatch(/\n1 passed, 1 failed\n$/);
  });

  it('invalid policies: exit 3, with the errors', async ({ expect }) => {
    const run = await verdict(['test', BROKEN]);
    expect(run.status).toBe(3);
    expect(run.stderr).toContain(`${BROKEN}/rules.yaml:10:13: effect must be allow or deny`);
    expect(run.stderr).toMatch(/has 23 error\(s\)/);
    expect(run.stdout).not.toMatch(/passed/);
    expectNoStackTrace(expect, run);
  });

  it('a missing directory: exit 3', async ({ expect }) => {
    const run = await verdict(['test', 'no/such/dir']);
    expect(run.status).toBe(3);
    expect(run.stderr).toContain('no/such/dir');
    expectNoStackTrace(expect, run);
  });
});

describe.concurrent('verdict check', () => {
  it('--request: prints effect, reason, rules, errors and version', async ({ expect }) => {
    const run = await verdict(['check', '--request', JSON.stringify(DANA)]);
    expect(run.status).toBe(0);
    expect(run.stdout).toBe(
      [
        'ALLOW  allowed by rule (ALLOWED_BY_RULE)',
        '  rules:    ds-read-predict-own-org',
        '  errors:   (none)',
        `  version:  ${policiesVersion}`,
        '',
      ].join('\n'),
    );
  });

  it('--file: reads the request from a file', async ({ expect }) => {
    const run = await verdict(['check', '--file', REQUEST_FILE]);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^DENY  denied by rule \(DENIED_BY_RULE\)$/m);
    expect(run.stdout).toMatch(/^ {2}rules: {4}no-delete-production-models$/m);
    expect(run.stdout).toContain(`version:  ${policiesVersion}`);
  });

  it('--file: refuses a request nested a million levels deep at once (the YAML parser kept gigabytes), exit 4', async ({ expect }) => {
    const file = join(mkdtempSync(join(tmpdir(), 'verdict-check-')), 'deep.json');
    const deep = 1_000_000;
    writeFileSync(file, `{"principal":{"id":"a","roles":[],"attributes":{"x":${'['.repeat(deep)}${']'.repeat(deep)}}},"action":"read","resource":{"type":"doc","id":"d","attributes":{}}}`);
    const run = await verdict(['check', '--file', file]);
    expect(run.status).toBe(4);
    expect(run.stderr).toBe('verdict check: the request nests deeper than 64 levels (at character 114); no request needs that many\n');
  });

  it('stdin: reads the request when no flag gives it, and with --file -', async ({ expect }) => {
    for (const args of [['check'], ['check', '--file', '-']]) {
      const run = await verdict(args, JSON.stringify(DANA));
      expect(run.status, args.join(' ')).toBe(0);
      expect(run.stdout).toMatch(/^ALLOW {2}allowed by rule/);
    }
  });

  it('--policies picks another directory', async ({ expect }) => {
    const request = { principal: { id: 'm', attributes: { member: true } }, action: 'read', resource: { type: 'doc', id: 'd' } };
    const run = await verdict(['check', '--policies', UNEXERCISED, '--request', JSON.stringify(request)]);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^ALLOW .*\n {2}rules: {4}members-read\n/);
    expect(run.stdout).toMatch(/version: {2}sha256:[0-9a-f]{64}|version: {2}[0-9a-f]{40}/);
  });

  it('a default deny names no rule', async ({ expect }) => {
    const run = await verdict(['check', '--request', JSON.stringify({ ...DANA, action: 'launch' })]);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^DENY {2}denied by default: no rule allows it \(DENIED_BY_DEFAULT\)\n {2}rules: {4}\(none\)\n/);
  });

  it('a condition error is shown with the rule that erred', async ({ expect }) => {
    const orgless = { ...DANA, principal: { id: 'drift', roles: ['data_scientist'] } };
    const run = await verdict(['check', '--request', JSON.stringify(orgless)]);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^DENY .*\(DENIED_BY_ERROR\)$/m);
    expect(run.stdout).toMatch(/^ {2}error: {4}ds-read-predict-own-org: .*org/m);
  });

  it('--explain: lists every considered rule and why it did or did not match', async ({ expect }) => {
    const run = await verdict(['check', '--explain', '--request', JSON.stringify(DANA)]);
    expect(run.status).toBe(0);
    const out = run.stdout;
    expect(out).toMatch(/^ALLOW {2}allowed by rule/);
    expect(out).toMatch(/^considered \d+ of \d+ rules \(the others are for other resource types or actions\):$/m);
    expect(out).toMatch(/^ {2}MATCH allow ds-read-predict-own-org {2}\(policies\/models\.yaml:\d+\)\n {8}all matchers hold and the condition is true$/m);
    expect(out).toMatch(/^ {2}skip {2}deny {2}suspended-principals {2}\(policies\/models\.yaml:\d+\)\n {8}principal\.attributes\.status equals "suspended" — is absent$/m);
    expect(out).toMatch(/^ {2}skip {2}allow admin-break-glass {2}\(policies\/models\.yaml:\d+\)\n {8}principal needs role admin/m);
    // Rules for other actions are not considered at all.
    expect(out).not.toContain('owners-retrain');
    expect(out).not.toContain('no-delete-production-models');
  });

  it('--explain shows a condition that errs', async ({ expect }) => {
    const orgless = { ...DANA, principal: { id: 'drift', roles: ['data_scientist'] } };
    const run = await verdict(['check', '--explain', '--request', JSON.stringify(orgless)]);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^ {2}ERROR allow ds-read-predict-own-org .*\n {8}condition could not be evaluated: .*org/m);
  });

  it('--json: the decision as JSON', async ({ expect }) => {
    const run = await verdict(['check', '--json', '--request', JSON.stringify(DANA)]);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      effect: 'ALLOW',
      reason: 'ALLOWED_BY_RULE',
      ruleIds: ['ds-read-predict-own-org'],
      errors: [],
      policyVersion: policiesVersion,
    });
  });

  it('--explain --json: the decision and every considered rule as JSON', async ({ expect }) => {
    const run = await verdict(['check', '--explain', '--json', '--request', JSON.stringify(DANA)]);
    expect(run.status).toBe(0);
    const explanation = JSON.parse(run.stdout) as { decision: { effect: string }; considered: { ruleId: string; outcome: string; detail: string }[]; totalRules: number };
    expect(explanation.decision.effect).toBe('ALLOW');
    expect(explanation.considered).toContainEqual(expect.objectContaining({ ruleId: 'ds-read-predict-own-org', outcome: 'matched' }));
    expect(explanation.considered).toContainEqual(expect.objectContaining({ ruleId: 'suspended-principals', outcome: 'not-matched' }));
    expect(explanation.totalRules).toBeGreaterThan(explanation.considered.length);
  });

  it('decides as the server does: under reject a request that breaks the schema is refused, under warn its violations are shown', async ({ expect }) => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-check-schema-'));
    try {
      const policy = (enforcement: string): string => `kind: schema
enforcement: ${enforcement}
schemas:
  - for: principal
    attributes:
      clearance: { type: int, required: true }
---
kind: rules
rules:
  - id: everyone-reads
    effect: allow
    actions: [read]
`;
      const asked = JSON.stringify({ principal: { id: 'sam', attributes: { clearance: '3' } }, action: 'read', resource: { type: 'doc', id: 'd' } });
      writeFileSync(join(dir, 'policy.yaml'), policy('reject'));
      const refused = await verdict(['check', '--policies', dir, '--request', asked]);
      expect(refused.stdout).toContain('DENY  denied: invalid request (DENIED_INVALID_REQUEST)');
      expect(refused.stdout).toContain('error:    schema: the request breaks the attribute schema: principal.attributes.clearance must be a whole number (int), not the string "3"');
      const explained = await verdict(['check', '--policies', dir, '--explain', '--request', asked]);
      expect(explained.stdout).toMatch(/DENIED_INVALID_REQUEST[\s\S]*the server refuses this request before any rule; the rules, had it fitted the schema:\nconsidered 1 of 1 rules[\s\S]*MATCH allow everyone-reads/);
      writeFileSync(join(dir, 'policy.yaml'), policy('warn'));
      const warned = await verdict(['check', '--policies', dir, '--request', asked]);
      expect(warned.stdout).toContain('ALLOW  allowed by rule (ALLOWED_BY_RULE)');
      expect(warned.stdout).toContain('schema:   principal.attributes.clearance must be a whole number (int), not the string "3" (enforcement: warn)');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a bad flag: exit 2, one line, no stack trace', async ({ expect }) => {
    const run = await verdict(['check', '--frobnicate']);
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('--frobnicate');
    expectNoStackTrace(expect, run);
  });

  it('a flag missing its value: exit 2, one line', async ({ expect }) => {
    const run = await verdict(['check', '--request']);
    expect(run.status).toBe(2);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expectNoStackTrace(expect, run);
  });

  it('--request and --file together: exit 2', async ({ expect }) => {
    const run = await verdict(['check', '--request', '{}', '--file', REQUEST_FILE]);
    expect(run.status).toBe(2);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('an unreadable --file: exit 4, naming the file', async ({ expect }) => {
    const run = await verdict(['check', '--file', 'no/such/request.json']);
    expect(run.status).toBe(4);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('no/such/request.json');
    expectNoStackTrace(expect, run);
  });

  it('a request that is not JSON: exit 4, one line', async ({ expect }) => {
    const run = await verdict(['check', '--request', '{"principal": {"id": "x"']);
    expect(run.status).toBe(4);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/not valid JSON/);
    expectNoStackTrace(expect, run);
  });

  it('an invalid request: exit 4, naming the fields', async ({ expect }) => {
    const bad = { principal: { id: '' }, action: 'read', resource: { id: 'x' }, extra: 1 };
    const run = await verdict(['check', '--request', JSON.stringify(bad)]);
    expect(run.status).toBe(4);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('principal.id');
    expect(run.stderr).toContain('resource.type');
    expect(run.stderr).toContain('extra');
    expectNoStackTrace(expect, run);
  });

  it('an attribute of the wrong shape: exit 4, naming the field', async ({ expect }) => {
    const run = await verdict(['check', '--request', JSON.stringify({ ...DANA, principal: { ...DANA.principal, roles: 'admin' } })]);
    expect(run.status).toBe(4);
    expect(run.stderr).toContain('principal.roles');
  });

  it('an empty request on stdin: exit 4', async ({ expect }) => {
    const run = await verdict(['check'], '');
    expect(run.status).toBe(4);
    expect(run.stderr).toMatch(/empty/);
  });

  it('a missing policy directory: exit 3', async ({ expect }) => {
    const run = await verdict(['check', '--policies', 'no/such/dir', '--request', JSON.stringify(DANA)]);
    expect(run.status).toBe(3);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('no/such/dir');
    expectNoStackTrace(expect, run);
  });

  it('invalid policies: exit 3 with the errors', async ({ expect }) => {
    const run = await verdict(['check', '--policies', BROKEN, '--request', JSON.stringify(DANA)]);
    expect(run.status).toBe(3);
    expect(run.stderr).toContain(`${BROKEN}/rules.yaml:10:13: effect must be allow or deny`);
    expect(run.stdout).toBe('');
  });
});

describe.concurrent('the command line as a whole', () => {
  it('an unknown command: exit 2, one line', async ({ expect }) => {
    const run = await verdict(['frobnicate']);
    expect(run.status).toBe(2);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('unknown command "frobnicate"');
    expectNoStackTrace(expect, run);
  });

  it('no command: usage on stderr, exit 2', async ({ expect }) => {
    const run = await verdict([]);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^Usage: verdict <command>/);
  });

  it('--help lists the commands and the exit codes, exit 0', async ({ expect }) => {
    const run = await verdict(['--help']);
    expect(run.status).toBe(0);
    for (const command of ['validate', 'check', 'test']) expect(run.stdout).toMatch(new RegExp(`^ {2}${command} `, 'm'));
    expect(run.stdout).toMatch(/Exit codes:/);
  });

  it.for(['validate', 'check', 'test'])('%s --help: usage and exit codes on stdout, exit 0', async (command, { expect }) => {
    for (const flag of ['--help', '-h']) {
      const run = await verdict([command, flag]);
      expect(run.status).toBe(0);
      expect(run.stdout).toMatch(new RegExp(`^Usage: verdict ${command}`));
      expect(run.stdout).toMatch(/Exit codes:/);
      expect(run.stderr).toBe('');
    }
  });

  it('a bad flag on each command: exit 2, one line', async ({ expect }) => {
    for (const command of ['validate', 'test']) {
      const run = await verdict([command, '--nope']);
      expect(run.status, command).toBe(2);
      expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
      expectNoStackTrace(expect, run);
    }
  });

  it('too many directories: exit 2', async ({ expect }) => {
    expect((await verdict(['validate', 'policies', 'policies'])).status).toBe(2);
    expect((await verdict(['test', 'policies', 'policies'])).status).toBe(2);
  });

  it('the exit codes are distinct: usage 2, failed 1, invalid policies 3, bad input 4', async ({ expect }) => {
    const codes = {
      usage: (await verdict(['check', '--nope'])).status,
      failed: (await verdict(['test', FAILING])).status,
      invalid: (await verdict(['test', BROKEN])).status,
      input: (await verdict(['check', '--request', '{}'])).status,
    };
    expect(codes).toEqual({ usage: 2, failed: 1, invalid: 3, input: 4 });
  });
});
