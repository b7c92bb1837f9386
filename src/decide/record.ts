// The decision record of one answered request, built one way: by the pipeline for
// every decision it answers, and by whatever writes a log of its own (replay's test
// fixtures, the replay and audit benchmarks), so a new column cannot drift between them.

import type { DecisionDetails, DecisionRecord } from '../decisions/record.js';
import type { Decision, DecisionRequest } from '../types.js';
import { newDecisionId } from './decision-id.js';
import type { CallMeta } from './request.js';

/**
 * What the log stores of `request` answered with `decision` at `time` (ms since the
 * epoch, which also dates the decision id), after `latencyUs` of work.
 *
 * @example
 * await log.append(decisionRecord(request, evaluate(policySet, request), { caller: 'ipv4:10.0.0.7:50000', requestId: null }, Date.now(), 42));
 */
export function decisionRecord(
  request: DecisionRequest,
  decision: Decision,
  meta: Pick<CallMeta, 'caller' | 'requestId'>,
  time: number,
  latencyUs: number,
  details: DecisionDetails | null = null,
): DecisionRecord {
  return {
    decisionId: newDecisionId(time),
    time,
    caller: meta.caller,
    requestId: meta.requestId,
    principalId: request.principal.id,
    action: request.action,
    resourceType: request.resource.type,
    resourceId: request.resource.id,
    effect: decision.effect,
    reason: decision.reason,
    ruleIds: decision.ruleIds,
    errors: decision.errors,
    policyVersion: decision.policyVersion,
    request: {
      principal: { roles: request.principal.roles, attributes: request.principal.attributes },
      resource: { attributes: request.resource.attributes },
      context: { attributes: request.context.attributes },
    },
    latencyUs,
    details,
  };
}
