// Envoy's ext_authz over gRPC: envoy.service.auth.v3.Authorization in front of
// the gateway adapter.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { GatewayAdapter } from '../../gateway/adapter.js';
import { unary, type CallOptions } from './call.js';
import { fromEnvoyCheckRequest, toEnvoyCheckResponse } from './convert/envoy.js';
import type { CheckRequest__Output } from './generated/envoy/service/auth/v3/CheckRequest.js';
import type { CheckResponse } from './generated/envoy/service/auth/v3/CheckResponse.js';

/** Envoy's external authorization service, as Envoy and Istio call it. */
export const EXT_AUTHZ_SERVICE = 'envoy.service.auth.v3.Authorization';

/**
 * envoy.service.auth.v3.Authorization over the gateway adapter. A decision that
 * cannot be recorded fails the call with UNAVAILABLE, which Envoy (with
 * failure_mode_allow: false) turns into a denial.
 */
export function extAuthzService(gateway: Pick<GatewayAdapter, 'decide'>, options: CallOptions): UntypedServiceImplementation {
  return {
    Check: unary<CheckRequest__Output, CheckResponse>('envoy.Check', options, async (call) => {
      const answer = await gateway.decide(fromEnvoyCheckRequest(call.request), options.callerOf(call));
      return toEnvoyCheckResponse(answer);
    }),
  };
}
