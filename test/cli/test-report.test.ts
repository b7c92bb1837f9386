import { afterAll, describe, expect, it } from 'vitest';
import { jsonReport, junitReport } from '../../src/cli/test-report.js';
import { runPolicyTests } from '../../src/engine/test-runner.js';
import { loadFiles, removeTempDirs, rulesDoc } from '../helpers/policies.js';

afterAll(removeTempDirs);

describe('verdict test reports', () => {
  const { policySet, tests } = loadFiles({
    'rules.yaml': rulesDoc([{ id: 'r', effect: 'allow', actions: ['read'] }]),
    'tests/t.yaml': {
      kind: 'tests',
      name: 'suite <"A" & \'B\'>',
      cases: [
        { name: 'reads \u0007 <ok>', principal: { id: 'p' }, action: 'read', resource: { type: 'doc', id: 'd' }, expect: { effect: 'allow' } },
        { name: 'writes & "fails"', principal: { id: 'p' }, action: 'write', resource: { type: 'doc', id: 'd' }, expect: { effect: 'allow' } },
      ],
    },
  });
  const summary = runPolicyTests(policySet, tests);

  it('JUnit XML escapes markup in names and messages and drops characters XML cannot carry', () => {
    const xml = junitReport(summary, 'policies');
    expect(xml).toContain('<testsuite name="suite &lt;&quot;A&quot; &amp; &apos;B&apos;&gt;" tests="2" failures="1">');
    expect(xml).toContain('name="reads  &lt;ok&gt;" file="policies/tests/t.yaml"');
    expect(xml).toContain('name="writes &amp; &quot;fails&quot;"');
    expect(xml).not.toContain('\u0007');
    expect(xml.match(/<failure /g)).toHaveLength(1);
  });

  it('JSON carries every case and the coverage of every rule, files under the policy directory', () => {
    const report = JSON.parse(jsonReport(summary, 'policies')) as { passed: number; failed: number; cases: { file: string; passed: boolean }[]; coverage: { percent: number; rules: { id: string; file: string; decided: boolean }[] } };
    expect(report).toMatchObject({ passed: 1, failed: 1, coverage: { percent: 100 } });
    expect(report.cases.map((c) => c.passed)).toEqual([true, false]);
    expect(report.coverage.rules).toEqual([expect.objectContaining({ id: 'r', file: 'policies/rules.yaml', decided: true })]);
  });
});
