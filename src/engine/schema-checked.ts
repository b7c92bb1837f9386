import { SCHEMA_RULE_ID, schemaViolationMessage } from '../policy/attribute-schema.js';
import type { PolicySet } from '../policy/policy-set.js';
import type { Decision, DecisionRequest } from '../types.js';
import { completeRequest, spelledOtherwise } from './complete.js';
import { decisionWith } from './decision-with.js';
import { evaluate } from './evaluate.js';

const NO_RULES: readonly string[] = Object.freeze([]);

/**
 * A request (its directory facts already in, see complete.ts) decided as the server
 * decides it before rate limits: under `enforcement: reject`, a request that breaks the
 * set's attribute schema is refused (`DENIED_INVALID_REQUEST`, the violations recorded
 * under rule id `schema`) and never evaluated; under `warn` it is evaluated and the
 * violations ride along (`schemaViolations`); under `none`, or without a schema, it is
 * simply evaluated. The live pipeline, the shadow set and replay all decide through it,
 * so a candidate's schema refuses in a replay what it would refuse when served.
 */
export function evaluateAsServed(policySet: PolicySet, request: DecisionRequest): Decision {
  const schemas = policySet.attributeSchemas;
  const violations = schemas === null || schemas.enforcement === 'none' ? null : schemas.violations(request);
  if (violations !== null && schemas!.enforcement === 'reject') {
    return { effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', ruleIds: NO_RULES, errors: [{ ruleId: SCHEMA_RULE_ID, message: schemaViolationMessage(violations) }], policyVersion: policySet.version };
  }
  const decision = evaluate(policySet, request);
  return violations === null ? decision : decisionWith(decision, { schemaViolations: violations });
}

/** Whether a decision is a refusal for breaking the attribute schema. */
export function isSchemaRefusal(decision: Decision): boolean {
  return decision.reason === 'DENIED_INVALID_REQUEST' && decision.errors.length === 1 && decision.errors[0]!.ruleId === SCHEMA_RULE_ID;
}

/**
 * A request as the caller sent it, decided as the server decides it before rate limits:
 * an id the directories list under another spelling is refused (complete.ts), the
 * directories' facts are put in, then the schema and the rules (evaluateAsServed). What
 * `verdict check`, `verdict test`, replay and the shadow set decide with.
 */
export function decideAsServed(policySet: PolicySet, sent: DecisionRequest): Decision {
  const spelling = spelledOtherwise(policySet, sent);
  if (spelling !== null) return { effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', ruleIds: NO_RULES, errors: [{ ruleId: '', message: spelling }], policyVersion: policySet.version };
  return evaluateAsServed(policySet, completeRequest(policySet, sent));
}
