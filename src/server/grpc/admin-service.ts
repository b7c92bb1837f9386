// verdict.v1.Admin over gRPC.

import { status, type ServerWritableStream, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { WATCH_BUFFER } from '../alerts.js';
import type { Alert as AlertMessage } from './generated/verdict/v1/Alert.js';
import type { WatchAlertsRequest__Output } from './generated/verdict/v1/WatchAlertsRequest.js';
import { StatusError, toStatus } from './status.js';
import type { ReportLoadRequest__Output } from './generated/verdict/v1/ReportLoadRequest.js';
import type { ReportLoadResponse } from './generated/verdict/v1/ReportLoadResponse.js';
import { VerdictError } from '../../errors.js';
import { adminCallerOfGrpc } from '../admin-auth.js';
import { unary, type CallOptions } from './call.js';
import { fromDuration, toAlertMessage, toDecisionFilters, toDecisionRecordMessage, toPolicyStatusMessage, toReloadMessage, toSuspensionMessage } from './convert/verdict.js';
import type { AdminHandlers } from './handlers.js';
import type { DecisionRecord } from './generated/verdict/v1/DecisionRecord.js';
import type { GetDecisionRequest__Output } from './generated/verdict/v1/GetDecisionRequest.js';
import type { GetPolicyStatusRequest__Output } from './generated/verdict/v1/GetPolicyStatusRequest.js';
import type { ListDecisionsRequest__Output } from './generated/verdict/v1/ListDecisionsRequest.js';
import type { ListDecisionsResponse } from './generated/verdict/v1/ListDecisionsResponse.js';
import type { PolicyStatus } from './generated/verdict/v1/PolicyStatus.js';
import type { ReloadPoliciesRequest__Output } from './generated/verdict/v1/ReloadPoliciesRequest.js';
import type { ReloadPoliciesResponse } from './generated/verdict/v1/ReloadPoliciesResponse.js';
import type { LiftSuspensionRequest__Output } from './generated/verdict/v1/LiftSuspensionRequest.js';
import type { ListSuspensionsRequest__Output } from './generated/verdict/v1/ListSuspensionsRequest.js';
import type { ListSuspensionsResponse } from './generated/verdict/v1/ListSuspensionsResponse.js';
import type { SuspendPrincipalRequest__Output } from './generated/verdict/v1/SuspendPrincipalRequest.js';
import type { Suspension } from './generated/verdict/v1/Suspension.js';

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

    WatchAlerts: (call: ServerWritableStream<WatchAlertsRequest__Output, AlertMessage>) => {
      const watch = handlers.watchAlerts;
      if (watch === undefined) {
        call.emit('error', toStatus(new StatusError(status.UNIMPLEMENTED, 'this server does not stream alerts')));
        return;
      }
      let ended = false;
      let stop: (() => void) | null = null;
      const finish = (error: unknown): void => {
        if (ended) return;
        ended = true;
        stop?.();
        if (error === null) call.end();
        else call.emit('error', toStatus(error, (e) => options.report(e, 'WatchAlerts')));
      };
      call.on('cancelled', () => {
        ended = true;
        stop?.();
      });
      call.on('error', () => {
        ended = true;
        stop?.();
      });
      const filter = { types: [...call.request.types], subjectId: call.request.subjectId };
      watch
        .call(handlers, filter, adminCallerOfGrpc(call), {
          send: (alert, sent) => {
            if (ended) {
              sent();
              return;
            }
            call.write(toAlertMessage(alert), () => sent());
          },
          drop: () => finish(new StatusError(status.RESOURCE_EXHAUSTED, `more than ${WATCH_BUFFER} alerts were waiting to be sent; reconnect, and read what was missed with verdict alerts --since`)),
          end: () => finish(new StatusError(status.UNAVAILABLE, 'verdict is shutting down')),
          revoked: () => finish(new StatusError(status.UNAUTHENTICATED, 'admin: the credential this stream was opened with is no longer accepted (the admin token was rotated or its file cannot be used, or the client certificate was removed from admin.clientsFile); call again with one that is accepted now')),
        })
        .then(
          (unsubscribe) => {
            if (ended) unsubscribe();
            else stop = unsubscribe;
          },
          (error: unknown) => finish(error),
        );
    },
    SuspendPrincipal: unary<SuspendPrincipalRequest__Output, Suspension>('SuspendPrincipal', options, async (call) => {
      const { principalId, duration, note } = call.request;
      // The duration is read after the caller is admitted and recorded, like every invalid Admin call.
      const request = { principalId, note, durationMs: () => fromDuration(duration, 'duration') };
      return toSuspensionMessage(await handlers.suspendPrincipal(request, adminCallerOfGrpc(call)));
    }),

    ListSuspensions: unary<ListSuspensionsRequest__Output, ListSuspensionsResponse>('ListSuspensions', options, async (call) => {
      const { pageSize, pageToken } = call.request;
      const page = await handlers.listSuspensions({ pageSize, pageToken }, adminCallerOfGrpc(call));
      return { suspensions: page.suspensions.map(toSuspensionMessage), nextPageToken: page.nextPageToken };
    }),

    LiftSuspension: unary<LiftSuspensionRequest__Output, Suspension>('LiftSuspension', options, async (call) => {
      const id = call.request.principalId;
      const lifted = await handlers.liftSuspension(id, adminCallerOfGrpc(call));
      if (!lifted) throw new VerdictError('NOT_FOUND', `principal ${id} is not suspended`);
      return toSuspensionMessage(lifted);
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
