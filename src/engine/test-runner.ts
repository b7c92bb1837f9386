import type { PolicyTestCase } from '../policy/load.js';
import type { CompiledRule, PolicySet } from '../policy/policy-set.js';
import { explain, type Explanation } from './explain.js';
import { withoutNullMembers } from './null-members.js';
import { decideAsServed, isSchemaRefusal } from './schema-checked.js';

export interface TestCaseResult {
  readonly testCase: PolicyTestCase;
  readonly passed: boolean;
  /** What differed from the expectation; empty when the case passed. */
  readonly problems: readonly string[];
  readonly explanation: Explanation;
}

/** What the tests saw one rule do. */
export interface RuleCoverage {
  readonly id: string;
  readonly file: string;
  readonly line: number;
  /** A case's decision named it: it allowed or denied. */
  readonly decided: boolean;
  /** It matched (or erred) in a case where other rules decided: a deny overrode it, or it was one of several. */
  readonly overridden: boolean;
  /** It was asked (action and type fit) and did not match: its roles, matchers or condition held it back. */
  readonly notMatched: boolean;
  /** It names roles, attributes or a condition, so it can fail to match; a rule that cannot has one side to cover. */
  readonly conditional: boolean;
}

export interface Coverage {
  /** Per rule, in file and line order. */
  readonly rules: readonly RuleCoverage[];
  /** Sides seen: a rule deciding, and (when it is conditional) a rule not matching. */
  readonly seen: number;
  readonly possible: number;
  /** seen / possible, 0–100; 100 when there are no rules. */
  readonly percent: number;
}

export interface TestRunSummary {
  readonly results: readonly TestCaseResult[];
  readonly passed: number;
  readonly failed: number;
  /** Rules no case saw deciding: behaviour nobody has pinned down. */
  readonly unexercised: readonly { readonly id: string; readonly file: string; readonly line: number }[];
  readonly coverage: Coverage;
}

/** Runs policy test cases against a policy set. Pure: no I/O, no clock. */
export function runPolicyTests(policySet: PolicySet, cases: readonly PolicyTestCase[]): TestRunSummary {
  const decided = new Set<string>();
  const overridden = new Set<string>();
  const notMatched = new Set<string>();
  const results = cases.map((testCase): TestCaseResult => {
    const sent = withoutNullMembers(testCase.request);
    const explained = explain(policySet, sent);
    // Decided as served: the directories fill the request in, then the attribute schema may refuse it before any rule.
    const decision = decideAsServed(policySet, sent);
    const explanation: Explanation = { ...explained, decision };
    for (const id of decision.ruleIds) decided.add(id);
    // A request the schema refuses never reaches the rules: what they would have said is no coverage.
    for (const rule of isSchemaRefusal(decision) ? [] : explanation.considered) {
      if (rule.outcome === 'not-matched') notMatched.add(rule.ruleId);
      else if (!decision.ruleIds.includes(rule.ruleId)) overridden.add(rule.ruleId);
    }
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
  const rules = [...policySet.rules]
    .sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line)
    .map((rule): RuleCoverage => ({
      id: rule.id,
      file: rule.file,
      line: rule.line,
      decided: decided.has(rule.id),
      overridden: overridden.has(rule.id),
      notMatched: notMatched.has(rule.id),
      conditional: isConditional(rule),
    }));
  let seen = 0;
  let possible = 0;
  for (const rule of rules) {
    possible += rule.conditional ? 2 : 1;
    seen += (rule.decided ? 1 : 0) + (rule.conditional && rule.notMatched ? 1 : 0);
  }
  const coverage: Coverage = { rules, seen, possible, percent: possible === 0 ? 100 : (100 * seen) / possible };
  const unexercised = rules.filter((rule) => !rule.decided).map(({ id, file, line }) => ({ id, file, line }));
  const passed = results.filter((r) => r.passed).length;
  return { results, passed, failed: results.length - passed, unexercised, coverage };
}

function isConditional(rule: CompiledRule): boolean {
  return rule.roleHolders !== null || rule.excludedHolders !== null || rule.matchers.length > 0 || rule.condition !== null;
}
