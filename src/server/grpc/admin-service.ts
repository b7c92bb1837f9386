import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { RequestFieldError } from '../../decide/index.js';
import { VerdictError } from '../../errors.js';
import { unary, type CallOptions } from './call.js';
import { toDecisionFilters, toDecisionRecordMessage, toPolicyStatusMessage, toReloadMessage } from './convert/verdict.js';
import type { AdminHandlers } from './handlers.js';
import type {
  DecisionRecordMessage,
  GetDecisionRequestMessage,
  ListDecisionsRequestMessage,
  ListDecisionsResponseMessage,
  PolicyStatusMessage,
  ReloadPoliciesResponseMessage,
} from './messages.js';

export const ADMIN_SERVICE = 'verdict.v1.Admin';

/** verdict.v1.Admin over the server's admin handlers. */
export function adminService(handlers: AdminHandlers, options: CallOptions): UntypedServiceImplementation {
  return {
    GetPolicyStatus: unary<unknown, PolicyStatusMessage>('GetPolicyStatus', options, async () => toPolicyStatusMessage(await handlers.policyStatus())),

    ReloadPolicies: unary<unknown, ReloadPoliciesResponseMessage>('ReloadPolicies', options, async () => {
      const { outcome, status } = await handlers.reload();
      return toReloadMessage(outcome, status);
    }),

    GetDecision: unary<GetDecisionRequestMessage, DecisionRecordMessage>('GetDecision', options, async (call) => {
      const id = call.request.decisionId;
      if (id === '') throw RequestFieldError.required('decision_id');
      const record = await handlers.getDecision(id);
      if (!record) throw new VerdictError('NOT_FOUND', `no decision with id ${id}`);
      return toDecisionRecordMessage(record);
    }),

    ListDecisions: unary<ListDecisionsRequestMessage, ListDecisionsResponseMessage>('ListDecisions', options, async (call) => {
      const records = await handlers.listDecisions(toDecisionFilters(call.request));
      return { decisions: records.map(toDecisionRecordMessage) };
    }),
  };
}
