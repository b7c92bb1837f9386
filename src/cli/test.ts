import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { messageOf } from '../errors.js';
import { jsonReport, junitReport } from './test-report.js';
import { runPolicyTests, type RuleCoverage } from '../engine/test-runner.js';
import { formatExplanation } from './check.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { loadValidPolicies } from './policies.js';

const HELP = `Usage: verdict test [DIR] [--verbose] [--min-coverage PERCENT]

Runs the test files (kind: tests) of a policy directory (default: policies). Each
case is a request and the expected effect, optionally the expected reason and
deciding rules. Prints each failure with an explanation, the coverage of the
rules, and a summary line "N passed, N failed".

Coverage counts two sides of each rule: a case whose decision it made, and (for a
rule with roles, attributes or a condition) a case it was asked and did not match.
A rule that only matched where another rule decided (a deny overrode it) has not
been seen deciding.

Options:
  --min-coverage P   fail (exit 1) when coverage is below P percent
  --junit FILE       also write the results as JUnit XML (for CI test reports)
  --json FILE        also write the results and the coverage of every rule as JSON
  -v, --verbose      list every passing case too

Exit codes: 0 all passed, 1 a test failed or coverage is below --min-coverage,
2 usage error (a report file that cannot be written too), 3 invalid policies.
`;

export async function runTest(argv: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    { help: { type: 'boolean', short: 'h' }, verbose: { type: 'boolean', short: 'v' }, 'min-coverage': { type: 'string' }, junit: { type: 'string' }, json: { type: 'string' } },
    true,
  );
  if (values.help) {
    io.stdout(HELP);
    return EXIT.OK;
  }
  let minCoverage: number | null = null;
  if (values['min-coverage'] !== undefined) {
    minCoverage = Number(values['min-coverage'].replace(/%$/, ''));
    if (!/^\d+(\.\d+)?%?$/.test(values['min-coverage']) || minCoverage > 100) {
      io.stderr(`verdict test: --min-coverage must be a percentage from 0 to 100, not "${values['min-coverage']}"\n`);
      return EXIT.USAGE;
    }
  }
  if (positionals.length > 1) {
    io.stderr(`verdict test: expected at most one directory, got ${positionals.length}\n`);
    return EXIT.USAGE;
  }
  // Without trailing slashes, so locations print as dir/file, not dir//file.
  const dir = positionals[0] ?? 'policies';
  const policies = loadValidPolicies(dir, io, 'test');
  if (!policies) return EXIT.POLICY_INVALID;
  if (policies.tests.length === 0) {
    io.stderr(`verdict test: ${dir} has no test cases; add a file with "kind: tests"\n`);
    return EXIT.FAILED;
  }
  const summary = runPolicyTests(policies.policySet, policies.tests);
  for (const [file, render] of [
    [values.junit, junitReport],
    [values.json, jsonReport],
  ] as const) {
    if (file === undefined) continue;
    try {
      writeFileSync(file, render(summary, dir));
    } catch (error) {
      io.stderr(`verdict test: cannot write the report ${file}: ${messageOf(error)}\n`);
      return EXIT.USAGE;
    }
  }
  for (const result of summary.results) {
    const { testCase } = result;
    const title = `${testCase.suite} › ${testCase.name}  (${join(dir, testCase.file)}:${testCase.line})`;
    if (result.passed) {
      if (values.verbose) io.stdout(`PASS ${title}\n`);
      continue;
    }
    io.stdout(`FAIL ${title}\n`);
    for (const problem of result.problems) io.stdout(`  ${problem}\n`);
    io.stdout(formatExplanation(result.explanation, dir).replace(/^(?=.)/gm, '  '));
  }
  const { coverage } = summary;
  const where = (rule: RuleCoverage): string => `${rule.id}  (${join(dir, rule.file)}:${rule.line})`;
  const undecided = coverage.rules.filter((rule) => !rule.decided);
  if (undecided.length > 0) {
    io.stdout(`\nrules no test saw deciding (${undecided.length}):\n`);
    for (const rule of undecided) io.stdout(`  ${where(rule)}${rule.overridden ? '  matched only where other rules decided' : ''}\n`);
  }
  const alwaysMatched = coverage.rules.filter((rule) => rule.conditional && !rule.notMatched);
  if (alwaysMatched.length > 0) {
    io.stdout(`\nrules no test saw not matching (${alwaysMatched.length}):\n`);
    for (const rule of alwaysMatched) io.stdout(`  ${where(rule)}\n`);
  }
  const percent = Math.floor(coverage.percent * 10) / 10;
  io.stdout(`\ncoverage: ${percent}% (${coverage.seen} of ${coverage.possible} rule outcomes seen)\n`);
  io.stdout(`${summary.passed} passed, ${summary.failed} failed\n`);
  if (summary.failed > 0) return EXIT.FAILED;
  if (minCoverage !== null && coverage.percent < minCoverage) {
    io.stderr(`verdict test: coverage ${percent}% is below --min-coverage ${minCoverage}%; add cases for the rules listed above\n`);
    return EXIT.FAILED;
  }
  return EXIT.OK;
}
