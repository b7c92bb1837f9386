import { join } from 'node:path';
import type { TestRunSummary } from '../engine/test-runner.js';

// Machine-readable reports of `verdict test`, for CI systems that show test results
// (JUnit XML) or for scripts (JSON). `dir` prefixes the files, as the text output does.

/** The run as JSON: every case with its outcome and problems, and the coverage of every rule. */
export function jsonReport(summary: TestRunSummary, dir: string): string {
  return `${JSON.stringify(
    {
      passed: summary.passed,
      failed: summary.failed,
      cases: summary.results.map(({ testCase, passed, problems }) => ({
        suite: testCase.suite,
        name: testCase.name,
        file: join(dir, testCase.file),
        line: testCase.line,
        passed,
        problems,
      })),
      coverage: {
        percent: Math.floor(summary.coverage.percent * 10) / 10,
        seen: summary.coverage.seen,
        possible: summary.coverage.possible,
        rules: summary.coverage.rules.map((rule) => ({ ...rule, file: join(dir, rule.file) })),
      },
    },
    null,
    2,
  )}\n`;
}

/** The run as JUnit XML: one testsuite per test file's suite, one testcase per case, a failure with what differed. */
export function junitReport(summary: TestRunSummary, dir: string): string {
  const suites = new Map<string, TestRunSummary['results'][number][]>();
  for (const result of summary.results) {
    const list = suites.get(result.testCase.suite) ?? [];
    list.push(result);
    suites.set(result.testCase.suite, list);
  }
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>', `<testsuites name="verdict test" tests="${summary.results.length}" failures="${summary.failed}">`];
  for (const [suite, results] of suites) {
    const failures = results.filter((r) => !r.passed).length;
    lines.push(`  <testsuite name="${xml(suite)}" tests="${results.length}" failures="${failures}">`);
    for (const { testCase, passed, problems } of results) {
      const open = `    <testcase classname="${xml(suite)}" name="${xml(testCase.name)}" file="${xml(join(dir, testCase.file))}" line="${testCase.line}"`;
      if (passed) {
        lines.push(`${open}/>`);
        continue;
      }
      lines.push(`${open}>`, `      <failure message="${xml(problems[0] ?? 'failed')}">${xml(problems.join('\n'))}</failure>`, '    </testcase>');
    }
    lines.push('  </testsuite>');
  }
  lines.push('</testsuites>', '');
  return lines.join('\n');
}

/** Text safe inside an XML attribute or element: markup escaped, characters XML 1.0 cannot carry dropped. */
function xml(text: string): string {
  return text
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}
