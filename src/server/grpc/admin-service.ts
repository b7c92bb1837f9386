import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { VerdictError } from '../../errors.js';
import { callMeta, unary, type CallOptions } from './call.js';
import { toDecisionQuery, toDecisionRecordMessage, toPolicyStatusMessage, toReloadMessage } from './convert.js';
import type { AdminHandlers } from './handlers.js';
import { RequestFieldError } from './invalid-request.js';
import type {
  DecisionRecordMessage,
  GetDecisionRequestMessage,
  ListDecisionsRequestMessage,
  ListDecisionsResponseMessage,
  PolicyStatusMessage,
  ReloadPoliciesResponseMessage,
} from './messages.js';

export const ADMIN_SERVICE = 'verdict.v1.Admin';

/** verdict.v1.Admin over the application's handlers. */
export function adminService(handlers: AdminHandlers, options: CallOptions): UntypedServiceImplementation {
  return {
    GetPolicyStatus: unary<unknown, PolicyStatusMessage>('GetPolicyStatus', options, async (call) =>
      toPolicyStatusMessage(await handlers.policyStatus(callMeta(call, '', options))),
    ),

    ReloadPolicies: unary<unknown, ReloadPoliciesResponseMessage>('ReloadPolicies', options, async (call) =>
      toReloadMessage(await handlers.reload(callMeta(call, '', options))),
    ),

    GetDecision: unary<GetDecisionRequestMessage, DecisionRecordMessage>('GetDecision', options, async (call) => {
      const id = call.request.decisionId;
      if (id === '') throw RequestFieldError.required('decision_id');
      const record = await handlers.getDecision(id, callMeta(call, '', options));
      if (!record) throw new VerdictError('NOT_FOUND', `no decision with id ${id}`);
      return toDecisionRecordMessage(record);
    }),

    ListDecisions: unary<ListDecisionsRequestMessage, ListDecisionsResponseMessage>('ListDecisions', options, async (call) => {
      const query = toDecisionQuery(call.request);
      const records = await handlers.listDecisions(query, callMeta(call, '', options));
      return { decisions: records.map(toDecisionRecordMessage) };
    }),
  };
}
