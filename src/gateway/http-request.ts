import { AUTHN_RULE_ID } from '../authn/decision.js';
import type { Authenticator, AuthnResult } from '../authn/types.js';
import type { Attributes, Principal } from '../types.js';
import { messageOf } from '../errors.js';
import type { PolicySet } from '../policy/policy-set.js';
import type { HttpRequestFacts, RoutedRequest } from '../policy/routes.js';
import type { PreparedRequest } from '../server/decision-service.js';
import {
  DECISION_ID_HEADER,
  PRINCIPAL_HEADER,
  statusFor,
  type GatewayAnswer,
  type GatewayDecider,
  type GatewayRequest,
} from './types.js';

/**
 * The adapter every gateway transport shares (Envoy ext_authz, forward-auth):
 * authenticate the caller from the request's headers, map the route to an action
 * and a resource, decide and record through the same decision path as gRPC
 * Check, and answer in HTTP terms.
 *
 * @example
 * const gateway = new GatewayAdapter(decisionService, authenticator);
 * const answer = await gateway.decide({ method: 'POST', uri: '/v1/models/m1/predict', headers, source, extensions: {}, requestId: null }, '10.0.0.7:41234');
 * answer.status; // 200, 401, 403 (429 once rate limits exist)
 */
export class GatewayAdapter {
  constructor(
    private readonly decider: GatewayDecider,
    private readonly authenticator: Authenticator,
  ) {}

  /**
   * Decides one request; `caller` (the gateway's address or identity) is recorded with it.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE when the decision cannot be recorded: answer with an error, never allow
   */
  async decide(request: GatewayRequest, caller: string): Promise<GatewayAnswer> {
    const authn = await this.authenticate(request);
    const result = await this.decider.decideHttp((policySet) => prepareRequest(policySet, request, authn), {
      caller,
      requestId: request.requestId,
    });
    const { decision, decisionId } = result;
    const status = statusFor(decision.reason, decision.effect);
    const principalId = authn.ok ? authn.principal.id : null;
    if (status === 200) {
      return {
        status,
        decision,
        decisionId,
        principalId,
        headers: { [DECISION_ID_HEADER]: decisionId, [PRINCIPAL_HEADER]: headerSafe(principalId ?? '') },
        body: '',
      };
    }
    // Why a refused request was refused helps whoever sent it; why a policy denied does not leave verdict.
    const refusal = decision.errors.find((e) => e.ruleId === AUTHN_RULE_ID || e.ruleId === ROUTE_RULE_ID);
    const body = JSON.stringify({
      error: status === 401 ? 'unauthenticated' : status === 429 ? 'rate limited' : 'forbidden',
      reason: decision.reason,
      decisionId,
      ...(refusal ? { detail: refusal.message } : {}),
    });
    return { status, decision, decisionId, principalId, headers: { [DECISION_ID_HEADER]: decisionId }, body };
  }

  private async authenticate(request: GatewayRequest): Promise<AuthnResult> {
    try {
      return await this.authenticator.authenticate({ headers: request.headers });
    } catch (error) {
      // An authenticator that throws has failed to authenticate; the request is refused, never let through.
      return { ok: false, reason: 'UNAVAILABLE', message: `authentication could not be completed: ${messageOf(error)}` };
    }
  }
}

/** Rule id of the error recorded for a request no route maps, or one whose path cannot be routed. */
export const ROUTE_RULE_ID = 'route';
/** Resource type recorded for a request that no route maps; its id is the path. */
export const UNROUTED_RESOURCE_TYPE = 'http_route';

const EMPTY: Attributes = Object.freeze({});
const ANONYMOUS: Principal = Object.freeze({ id: '', roles: Object.freeze([]), attributes: EMPTY });
const METHOD = /^[A-Z]{1,24}$/;
const MAX_URI_LENGTH = 8192;
const RECORDED_PATH_LENGTH = 512;

/**
 * The decision request for a gateway request, with the policy set that will decide
 * it (so routes and rules come from the same version). Pure.
 */
export function prepareRequest(policySet: PolicySet, request: GatewayRequest, authn: AuthnResult): PreparedRequest {
  const principal = authn.ok ? authn.principal : ANONYMOUS;
  const method = request.method.toUpperCase();
  const q = request.uri.indexOf('?');
  const path = q === -1 ? request.uri : request.uri.slice(0, q);
  const unrouted = (action: string): RoutedRequest => ({
    action,
    resource: { type: UNROUTED_RESOURCE_TYPE, id: path.slice(0, RECORDED_PATH_LENGTH), attributes: EMPTY },
    context: { attributes: EMPTY },
  });

  let routed: RoutedRequest;
  let routeProblem: PreparedRequest['refusal'] = null;
  if (!METHOD.test(method)) {
    routed = unrouted('UNKNOWN');
    routeProblem = { reason: 'DENIED_INVALID_REQUEST', ruleId: ROUTE_RULE_ID, message: `not an HTTP method: ${JSON.stringify(request.method.slice(0, 40))}` };
  } else if (path === '') {
    routed = unrouted(method);
    routeProblem = {
      reason: 'DENIED_INVALID_REQUEST',
      ruleId: ROUTE_RULE_ID,
      message: 'the gateway sent no request URI (NGINX: set X-Original-URI; Traefik and Caddy send X-Forwarded-Uri)',
    };
  } else if (request.uri.length > MAX_URI_LENGTH) {
    routed = unrouted(method);
    routeProblem = { reason: 'DENIED_INVALID_REQUEST', ruleId: ROUTE_RULE_ID, message: `the request URI is longer than ${MAX_URI_LENGTH} characters` };
  } else {
    const match = policySet.routes.match(method, path);
    if (match.kind === 'matched') {
      const facts: HttpRequestFacts = {
        method,
        path,
        query: q === -1 ? '' : request.uri.slice(q + 1),
        headers: request.headers,
        source: request.source,
        extensions: request.extensions,
      };
      routed = match.route.resolve(facts, match.params);
    } else if (match.kind === 'invalid') {
      routed = unrouted(method);
      routeProblem = { reason: 'DENIED_INVALID_REQUEST', ruleId: ROUTE_RULE_ID, message: match.message };
    } else {
      routed = unrouted(method);
      routeProblem = { reason: 'DENIED_BY_DEFAULT', ruleId: ROUTE_RULE_ID, message: `no route matches ${method} ${path.slice(0, RECORDED_PATH_LENGTH)}` };
    }
  }

  const decisionRequest = { principal, action: routed.action, resource: routed.resource, context: routed.context };
  // A failed authentication is answered 401 whatever the route: who is asking comes first.
  if (!authn.ok) {
    return { request: decisionRequest, refusal: { reason: 'DENIED_UNAUTHENTICATED', ruleId: AUTHN_RULE_ID, message: `${authn.reason}: ${authn.message}` } };
  }
  return { request: decisionRequest, refusal: routeProblem };
}

/** A value that can go in an HTTP header as is; anything else is percent-encoded. */
export function headerSafe(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}
