/**
 * Gateways: Envoy ext_authz and HTTP forward-auth (NGINX, Traefik, Caddy). An HTTP
 * request becomes a decision request (authentication, then the policy set's routes),
 * takes the same decision path as gRPC Check, and is answered in the gateway's terms.
 * See docs/gateways.md.
 */
export { GatewayAdapter, prepareRequest, headerSafe, ROUTE_RULE_ID, UNROUTED_RESOURCE_TYPE } from './http-request.js';
export { DECISION_ID_HEADER, PRINCIPAL_HEADER, statusFor, type GatewayAnswer, type GatewayDecider, type GatewayRequest, type GatewayStatus } from './types.js';
export { FORWARD_AUTH_PATH, forwardedRequest, handleForwardAuth, peerOf } from './forward-auth.js';
export { EXT_AUTHZ_SERVICE, extAuthzService, fromCheckRequest, toCheckResponse, type ExtAuthzCheckRequest, type ExtAuthzCheckResponse } from './ext-authz.js';
export { TrustedHeaderAuthenticator, UNCONFIGURED_AUTHENTICATOR, trustedPrincipalSchema, type TrustedPrincipalConfig } from './trusted-headers.js';
