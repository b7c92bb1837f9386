import { valueProblem } from '../policy/attribute-schema.js';
import { conditionErrorMessage, type ConditionInput } from '../policy/condition.js';
import type { CompiledRule, PolicySet } from '../policy/policy-set.js';
import type { ConditionError, Decision, DecisionRequest } from '../types.js';

const NONE: readonly never[] = Object.freeze([]);

/**
 * True when the rule's roles and attribute matchers all hold, conditions aside. The
 * resource type is not tested: PolicySet.candidates offers a rule only for its types.
 */
export function matchesStatically(rule: CompiledRule, request: DecisionRequest): boolean {
  if (!rolesHold(rule, request.principal.roles)) return false;
  const matchers = rule.matchers;
  for (let i = 0; i < matchers.length; i++) {
    const matcher = matchers[i]!;
    if (!matcher.test(matcher.read(request))) return false;
  }
  return true;
}

/** The rule's `roles` (one of them held) and `notRoles` (none held) hold for these roles. */
function rolesHold(rule: CompiledRule, roles: readonly string[]): boolean {
  const holders = rule.roleHolders;
  if (holders !== null) {
    let held = false;
    for (let i = 0; i < roles.length && !held; i++) held = holders.has(roles[i]!);
    if (!held) return false;
  }
  const excluded = rule.excludedHolders;
  if (excluded !== null) for (let i = 0; i < roles.length; i++) if (excluded.has(roles[i]!)) return false;
  return true;
}

/**
 * For a deny rule that did not match: why it cannot tell whether it applies, or null (the
 * rule really does not apply). It cannot tell when every other part of the rule holds and
 * an attribute it matches on holds a value that cannot be compared (a list where the rule
 * compares with text: `["secret"]` against `secret`), or, with an attribute schema, is
 * absent or not of its declared type where the schema marks it required.
 */
export function unsureDeny(rule: CompiledRule, request: DecisionRequest): string | null {
  const matchers = rule.matchers;
  if (matchers.length === 0) return null;
  if (!rolesHold(rule, request.principal.roles)) return null;
  const guards = rule.guards;
  let problem: string | null = null;
  for (let i = 0; i < matchers.length; i++) {
    const matcher = matchers[i]!;
    const value = matcher.read(request);
    const declared = guards == null ? null : guards[i];
    if (declared != null) {
      const wrong = value === undefined ? 'is absent' : valueProblem(declared, value);
      if (wrong !== null) {
        problem ??= `${matcher.label} ${wrong}, and the attribute schema requires it: the deny cannot tell whether it applies, so it denies`;
        continue;
      }
    }
    const mismatch = matcher.mismatch === null ? null : matcher.mismatch(value);
    if (mismatch !== null) {
      problem ??= `${matcher.label} ${mismatch}: the deny cannot tell whether it applies, so it denies`;
      continue;
    }
    if (!matcher.test(value)) return null;
  }
  return problem;
}

/** Runs a rule's condition. Returns true, false, or the error that kept it from being evaluated. */
export function runCondition(rule: CompiledRule, request: DecisionRequest): boolean | string {
  if (rule.condition === null) return true;
  try {
    // The request has exactly the variables a condition may name, so it is the activation itself.
    const result = rule.condition(request as ConditionInput);
    if (result === true) return true;
    if (result === false) return false;
    return `condition returned ${typeof result}, expected true or false`;
  } catch (error) {
    return conditionErrorMessage(error);
  }
}

/**
 * Decides one request. Pure: the same policy set and request always give the same
 * decision. Any matching deny wins; else any matching allow; else deny by default.
 * A condition that cannot be evaluated never grants, and in a deny rule it denies.
 */
export function evaluate(policySet: PolicySet, request: DecisionRequest): Decision {
  const candidates = policySet.candidates(request.resource.type, request.action);
  let denied: string[] | null = null;
  let deniedByError: string[] | null = null;
  let allowed: string[] | null = null;
  let allowErrored: string[] | null = null;
  let errors: ConditionError[] | null = null;

  // Candidates come denies first, so once a deny has matched the allows need no look.
  for (let i = 0; i < candidates.length; i++) {
    const rule = candidates[i]!;
    const isDeny = rule.effect === 'DENY';
    if (!isDeny && denied !== null) break;
    if (!matchesStatically(rule, request)) {
      // A deny never silently misses for a value it cannot compare (or a required attribute absent or mistyped): it denies by error.
      const problem = isDeny ? unsureDeny(rule, request) : null;
      if (problem !== null) {
        (errors ??= []).push({ ruleId: rule.id, message: problem });
        (deniedByError ??= []).push(rule.id);
      }
      continue;
    }
    const outcome = runCondition(rule, request);
    if (outcome === true) {
      if (isDeny) (denied ??= []).push(rule.id);
      else (allowed ??= []).push(rule.id);
    } else if (outcome !== false) {
      (errors ??= []).push({ ruleId: rule.id, message: outcome });
      if (isDeny) (deniedByError ??= []).push(rule.id);
      else (allowErrored ??= []).push(rule.id);
    }
  }

  const version = policySet.version;
  const errorList = errors ?? NONE;
  if (denied !== null) return { effect: 'DENY', reason: 'DENIED_BY_RULE', ruleIds: denied, errors: errorList, policyVersion: version };
  if (deniedByError !== null) return { effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: deniedByError, errors: errorList, policyVersion: version };
  if (allowed !== null) return { effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: allowed, errors: errorList, policyVersion: version };
  if (allowErrored !== null) return { effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: allowErrored, errors: errorList, policyVersion: version };
  return { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: NONE, errors: NONE, policyVersion: version };
}
