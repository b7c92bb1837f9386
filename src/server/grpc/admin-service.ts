// verdict.v1.Admin over gRPC.

import { status, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { StatusError } from './status.js';
import type { ReportLoadRequest__Output } from './generated/verdict/v1/ReportLoadRequest.js';
import type { ReportLoadResponse } from './generated/verdict/v1/ReportLoadResponse.js';
import { VerdictError } from '../../errors.js';
import { adminCallerOfGrpc } from '../admin-auth.js';
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
    GetPolicyStatus: unary<GetPolicyStatusRequest__Output, PolicyStatus>('GetPolicyStatus', options, async (call) => toPolicyStatusMessage(await handlers.policyStatus(adminCallerOfGrpc(call)))),

    ReloadPolicies: unary<ReloadPoliciesRequest__Output, ReloadPoliciesResponse>('ReloadPolicies', options, async (call) => {
      const { outcome, status } = await handlers.reload(adminCallerOfGrpc(call));
      return toReloadMessage(outcome, status);
    }),

    GetDecision: unary<GetDecisionRequest__Output, DecisionRecord>('GetDecision', options, async (call) => {
      const id = call.request.decisionId;
      // The handler admits (and records) the caller first, then refuses an empty id.
      const record = await handlers.getDecision(id, adminCallerOfGrpc(call));
      if (!record) throw new VerdictError('NOT_FOUND', `no decision with id ${id}`);
      return toDecisionRecordMessage(record);
    }),

    ReportLoad: unary<ReportLoadRequest__Output, ReportLoadResponse>('ReportLoad', options, async (call) => {
      if (handlers.reportLoad === undefined) throw new StatusError(status.UNIMPLEMENTED, 'ReportLoad is not served here');
      const factors = await handlers.reportLoad(call.request.pool, call.request.load, adminCallerOfGrpc(call));
      return { loadFactors: factors.map((f) => ({ ...f })) };
    }),

    ListDecisions: unary<ListDecisionsRequest__Output, ListDecisionsResponse>('ListDecisions', options, async (call) => {
      const request = call.request;
      const query = { parameters: withoutDefaults(request), read: () => ({ filters: toDecisionFilters(request), pageToken: request.pageToken }) };
      const page = await handlers.listDecisions(query, adminCallerOfGrpc(call));
      return { decisions: page.decisions.map(toDecisionRecordMessage), nextPageToken: page.nextPageToken };
    }),
  };
}

/** The fields a request set (proto3 defaults left out), for the call's record. */
function withoutDefaults(message: object): Record<string, unknown> {
  const set: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(message)) {
    if (value === '' || value === 0 || value === null || value === undefined || value === 'EFFECT_UNSPECIFIED' || value === 'REASON_UNSPECIFIED') continue;
    set[key] = value;
  }
  return set;
}
