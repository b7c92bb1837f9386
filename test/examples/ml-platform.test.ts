import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';

/**
 * The second shipped example, examples/ml-platform: a multi-team ML platform written with
 * variables, effective roles, typed attribute schemas, shared fixtures and matrix cases.
 * `make test` validates it and runs its tests with the real `verdict` binary, as CI would.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const EXAMPLE = 'examples/ml-platform';
afterAll(removeTempDirs);

function verdict(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done, reject) => {
    const child = execFile(process.execPath, ['bin/verdict.js', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') reject(error);
      else done({ status: child.exitCode, stdout, stderr });
    });
  });
}

describe('examples/ml-platform', () => {
  it('validates, and every test passes with full coverage', async () => {
    const validate = await verdict(['validate', EXAMPLE]);
    expect(validate.stderr).toBe('');
    expect(validate.status).toBe(0);
    expect(validate.stdout).toMatch(/valid — 8 files, 16 rules, 8 roles, 0 limits, \d+ test cases/);
    const test = await verdict(['test', EXAMPLE, '--min-coverage', '100']);
    expect(test.stdout).toMatch(/coverage: 100% \(32 of 32 rule outcomes seen\)\n\d+ passed, 0 failed/);
    expect(test.status).toBe(0);
  }, 120_000);

  it('a mistyped attribute, a wrong-type comparison and a mis-cased enum fail validation at file:line:col, before anything is decided', async () => {
    const copy = makeTempDir('verdict-ml-platform-');
    cpSync(join(ROOT, EXAMPLE), copy, { recursive: true });
    const rulesFile = join(copy, 'rules.yaml');
    const lines = readFileSync(rulesFile, 'utf8').trimEnd().split('\n').length;
    writeFileSync(
      rulesFile,
      `${readFileSync(rulesFile, 'utf8').trimEnd()}

  - id: typo
    effect: deny
    actions: [read]
    resource: { type: dataset }
    when: resource.attributes.regoin == "eu"

  - id: wrong-type
    effect: allow
    actions: [read]
    resource: { type: model }
    when: principal.attributes.clearance >= "3"

  - id: miscased
    effect: deny
    actions: [read]
    principal:
      attributes: { employment: Contractor }
`,
    );
    const validate = await verdict(['validate', copy]);
    expect(validate.status).toBe(1);
    const at = (n: number, col: number): string => `${copy}/rules.yaml:${lines + n}:${col}: `;
    expect(validate.stderr.trim().split('\n')).toEqual([
      expect.stringContaining(`${at(6, 11)}condition does not type-check against the attribute schema: unknown attribute resource.attributes.regoin: the schema of resource type dataset declares tenant, team, region, pii; did you mean "region"? (column 21 of the condition)`),
      expect.stringContaining(`${at(12, 11)}condition does not type-check against the attribute schema: no such overload: int >= string`),
      expect.stringContaining(`${at(18, 33)}principal.attributes.employment: the matcher's value "Contractor" can never match: the attribute must be one of "employee", "contractor"`),
      `3 errors in ${copy}`,
    ]);
    // The test run refuses to decide anything with a set that does not validate.
    const test = await verdict(['test', copy]);
    expect(test.status).toBe(3);
    expect(test.stdout).not.toMatch(/passed/);
  }, 120_000);
});
