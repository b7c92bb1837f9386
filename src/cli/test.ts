import { join } from 'node:path';
import { runPolicyTests } from '../engine/test-runner.js';
import { formatExplanation } from './check.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { loadValidPolicies } from './policies.js';

const HELP = `Usage: verdict test [DIR] [--verbose]

Runs the test files (kind: tests) of a policy directory (default: policies). Each
case is a request and the expected effect, optionally the expected reason and
deciding rules. Prints each failure with an explanation, a summary line
"N passed, N failed", and the rules that no test exercised.

Exit codes: 0 all passed, 1 a test failed, 2 usage error, 3 invalid policies.
`;

export async function runTest(argv: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseFlags(argv, { help: { type: 'boolean', short: 'h' }, verbose: { type: 'boolean', short: 'v' } }, true);
  if (values.help) {
    io.stdout(HELP);
    return EXIT.OK;
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
  if (summary.unexercised.length > 0) {
    io.stdout(`\nrules no test exercised (${summary.unexercised.length}):\n`);
    for (const rule of summary.unexercised) io.stdout(`  ${rule.id}  (${join(dir, rule.file)}:${rule.line})\n`);
  }
  io.stdout(`\n${summary.passed} passed, ${summary.failed} failed\n`);
  return summary.failed === 0 ? EXIT.OK : EXIT.FAILED;
}
