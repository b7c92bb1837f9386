import type { CompiledRule, PolicySet } from '../policy/policy-set.js';
import { describeValue } from '../policy/matcher.js';
import { completeRequest } from './complete.js';
import { evaluate, runCondition, unsureDeny } from './evaluate.js';
import { explainClauses, type ClauseExplanation } from './clauses.js';
import type { Decision, DecisionRequest } from '../types.js';

export type RuleOutcome = 'matched' | 'not-matched' | 'error';

/** Why one considered rule did or did not apply. */
export interface RuleExplanation {
  readonly ruleId: string;
  readonly effect: Decision['effect'];
  readonly file: string;
  readonly line: number;
  readonly outcome: RuleOutcome;
  readonly detail: string;
  /** For a condition that was false or erred: each clause of its top-level && / || (clauses.ts). */
  readonly clauses?: readonly ClauseExplanation[];
}

export interface Explanation {
  readonly decision: Decision;
  /** Every rule the index offered for this resource type and action, in evaluation order. */
  readonly considered: readonly RuleExplanation[];
  /** How many rules the policy set holds in all, to show what the index skipped. */
  readonly totalRules: number;
}

/**
 * The slow, talkative twin of `evaluate`: the same decision, plus the reason each
 * candidate rule matched or not. For `verdict check --explain` and failing tests.
 */
export function explain(policySet: PolicySet, sent: DecisionRequest): Explanation {
  // Decided as the server decides it: completed from the directories.
  const request = completeRequest(policySet, sent);
  const decision = evaluate(policySet, request);
  const considered = policySet.candidates(request.resource.type, request.action).map((rule) => withClauses(explainRule(rule, request), rule, policySet, request));
  return { decision, considered, totalRules: policySet.rules.length };
}

/** A false or erring condition's clauses, explained. */
function withClauses(explanation: RuleExplanation, rule: CompiledRule, policySet: PolicySet, request: DecisionRequest): RuleExplanation {
  const text = rule.conditionExpanded ?? rule.conditionSource;
  const conditionFailed = explanation.detail.startsWith('condition is false') || explanation.detail.startsWith('condition could not be evaluated');
  if (text === null || !conditionFailed) return explanation;
  const clauses = explainClauses(text, policySet, request);
  return clauses.length === 0 ? explanation : { ...explanation, clauses };
}

export function explainRule(rule: CompiledRule, request: DecisionRequest): RuleExplanation {
  const base = { ruleId: rule.id, effect: rule.effect, file: rule.file, line: rule.line };
  const mismatch = firstMismatch(rule, request);
  const unsure = mismatch !== null && rule.effect === 'DENY' ? unsureDeny(rule, request) : null;
  if (unsure !== null) return { ...base, outcome: 'error', detail: unsure };
  if (mismatch !== null) return { ...base, outcome: 'not-matched', detail: mismatch };
  const outcome = runCondition(rule, request);
  if (outcome === true) {
    return { ...base, outcome: 'matched', detail: rule.conditionSource ? `all matchers hold and the condition is true` : 'all matchers hold' };
  }
  if (outcome === false) return { ...base, outcome: 'not-matched', detail: `condition is false: ${rule.conditionSource}` };
  return { ...base, outcome: 'error', detail: `condition could not be evaluated: ${outcome}` };
}

function firstMismatch(rule: CompiledRule, request: DecisionRequest): string | null {
  if (rule.roleHolders !== null && !request.principal.roles.some((r) => rule.roleHolders!.has(r))) {
    const held = request.principal.roles.length ? JSON.stringify(request.principal.roles) : 'no roles';
    return `principal needs role ${(rule.roles ?? []).join(' or ')} (directly or by inheritance), has ${held}`;
  }
  const excluded = rule.excludedHolders;
  const barred = excluded === null ? undefined : request.principal.roles.find((r) => excluded.has(r));
  if (barred !== undefined) return `principal must hold none of ${(rule.excludedRoles ?? []).join(', ')} (directly or by inheritance), has ${barred}`;
  for (const matcher of rule.matchers) {
    const value = matcher.read(request);
    if (!matcher.test(value)) return `${matcher.label} ${matcher.expected} — is ${describeValue(value)}`;
  }
  return null;
}
