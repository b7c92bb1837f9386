// verdict.v1.Admin over gRPC.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { RequestFieldError } from '../../decide/index.js';
import { VerdictError } from '../../errors.js';
import { unary, type CallOptions } from './call.js';
import { toDecisionFilters, toDecisionRecordMessage, toPolicyStatusMessage, toReloadMessage } from './convert/verdict.js';
import type { AdminHandlers } from './handlers.js';
import type { DecisionRecord } from './generated/verdict/v1/DecisionRecord.js';
import type { GetDecisionRequest__Output } from './generated/verdict/v1/GetDecisionRequest.js';
import type { GetPolicyStatusRequest__Output } from './generated/verdict/v1/GetPolicyStatusRequest.js';
import type { ListDecisionsRequest__Output } from './generated/verdict/v1/ListDecisionsRequest.js';
import type { ListDecisionsResponse } from './generated/verdict/v1/ListDecisionsResponse.js';
import type { PolicyStatus } from './generated/verdict/v1/PolicyStatus.js';
import type { ReloadPoliciesRequest__Output } from './generated/verdict/v1/ReloadPoliciesRequest.js';
import type { ReloadPoliciesResponse } from './generated/verdict/v1/ReloadPoliciesResponse.js';

export const ADMIN_SERVICE = 'verdict.v1.Admin';

/** verdict.v1.Admin over the server's admin handlers. */
export function adminService(handlers: AdminHandlers, options: CallOptions): UntypedServiceImplementation {
  return {
    GetPolicyStatus: unary<GetPolicyStatusRequest__Output, PolicyStatus>('GetPolicyStatus', options, async () => toPolicyStatusMessage(await handlers.policyStatus())),

    ReloadPolicies: unary<ReloadPoliciesRequest__Output, ReloadPoliciesResponse>('ReloadPolicies', options, async () => {
      const { outcome, status } = await handlers.reload();
      return toReloadMessage(outcome, status);
    }),

    GetDecision: unary<GetDecisionRequest__Output, DecisionRecord>('GetDecision', options, async (call) => {
      const id = call.request.decisionId;
      if (id === '') throw RequestFieldError.required('decision_id');
      const record = await handlers.getDecision(id);
      if (!record) throw new VerdictError('NOT_FOUND', `no decision with id ${id}`);
      return toDecisionRecordMessage(record);
    }),

    ListDecisions: unary<ListDecisionsRequest__Output, ListDecisionsResponse>('ListDecisions', options, async (call) => {
      const records = await handlers.listDecisions(toDecisionFilters(call.request));
      return { decisions: records.map(toDecisionRecordMessage) };
    }),
  };
}
