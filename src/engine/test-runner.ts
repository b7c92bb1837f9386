import type { PolicyTestCase } from '../policy/load.js';
import type { PolicySet } from '../policy/policy-set.js';
import { explain, type Explanation } from './explain.js';

export interface TestCaseResult {
  readonly testCase: PolicyTestCase;
  readonly passed: boolean;
  /** What differed from the expectation; empty when the case passed. */
  readonly problems: readonly string[];
  readonly explanation: Explanation;
}

export interface TestRunSummary {
  readonly results: readonly TestCaseResult[];
  readonly passed: number;
  readonly failed: number;
  /** Rules that no case matched or erred on: behaviour nobody has pinned down. */
  readonly unexercised: readonly { readonly id: string; readonly file: string; readonly line: number }[];
}

/** Runs policy test cases against a policy set. Pure: no I/O, no clock. */
export function runPolicyTests(policySet: PolicySet, cases: readonly PolicyTestCase[]): TestRunSummary {
  const exercised = new Set<string>();
  const results = cases.map((testCase): TestCaseResult => {
    const explanation = explain(policySet, testCase.request);
    for (const rule of explanation.considered) if (rule.outcome !== 'not-matched') exercised.add(rule.ruleId);
    const { decision } = explanation;
    const problems: string[] = [];
    if (decision.effect !== testCase.expect.effect) {
      problems.push(`expected ${testCase.expect.effect}, got ${decision.effect} (${decision.reason})`);
    }
    if (testCase.expect.reason !== null && decision.reason !== testCase.expect.reason) {
      problems.push(`expected reason ${testCase.expect.reason}, got ${decision.reason}`);
    }
    if (testCase.expect.rules !== null) {
      const want = [...testCase.expect.rules].sort();
      const got = [...decision.ruleIds].sort();
      if (want.join('\u0000') !== got.join('\u0000')) {
        problems.push(`expected deciding rules [${want.join(', ')}], got [${got.join(', ')}]`);
      }
    }
    return { testCase, passed: problems.length === 0, problems, explanation };
  });
  const unexercised = policySet.rules
    .filter((rule) => !exercised.has(rule.id))
    .map((rule) => ({ id: rule.id, file: rule.file, line: rule.line }))
    .sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
  const passed = results.filter((r) => r.passed).length;
  return { results, passed, failed: results.length - passed, unexercised };
}
