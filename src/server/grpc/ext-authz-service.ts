// Envoy's ext_authz over gRPC: envoy.service.auth.v3.Authorization in front of
// the gateway adapter.

import { Metadata, status, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { GatewayAdapter } from '../../gateway/adapter.js';
import { unary, type CallOptions } from './call.js';
import { fromEnvoyCheckRequest, toEnvoyCheckResponse } from './convert/envoy.js';
import type { CheckRequest__Output } from './generated/envoy/service/auth/v3/CheckRequest.js';
import type { CheckResponse } from './generated/envoy/service/auth/v3/CheckResponse.js';
import { isUnreadable, type UnreadableMessage } from './oversized.js';
import { StatusError } from './status.js';

/** Trailer carrying the id under which a refused request was recorded (as on verdict.v1.Authorization). */
const DECISION_ID_TRAILER = 'verdict-decision-id';

/** Envoy's external authorization service, as Envoy and Istio call it. */
export const EXT_AUTHZ_SERVICE = 'envoy.service.auth.v3.Authorization';

/**
 * envoy.service.auth.v3.Authorization over the gateway adapter. A decision that
 * cannot be recorded fails the call with UNAVAILABLE, which Envoy (with
 * failure_mode_allow: false) turns into a denial. A message that does not decode
 * (or is over the size limit) is recorded as an invalid request and answered
 * INVALID_ARGUMENT, with the decision id in the `verdict-decision-id` trailer.
 */
export function extAuthzService(gateway: Pick<GatewayAdapter, 'decide' | 'refuse'>, options: CallOptions): UntypedServiceImplementation {
  return {
    Check: unary<CheckRequest__Output | UnreadableMessage, CheckResponse>('envoy.Check', options, async (call) => {
      if (isUnreadable(call.request)) {
        const input = call.request.toInvalidRequest();
        const result = await gateway.refuse(input, options.callerOf(call));
        const trailers = new Metadata();
        trailers.set(DECISION_ID_TRAILER, result.decisionId);
        throw new StatusError(status.INVALID_ARGUMENT, input.error.message, trailers);
      }
      const answer = await gateway.decide(fromEnvoyCheckRequest(call.request), options.callerOf(call));
      return toEnvoyCheckResponse(answer);
    }),
  };
}
