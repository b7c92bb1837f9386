// The gateway adapter shared by Envoy ext_authz and forward-auth: authenticate,
// route, decide through the decide core, and answer in HTTP terms.

import type { Authenticator, AuthnResult } from '../authn/types.js';
import { AUTHN_RULE_ID, ROUTE_RULE_ID, type CheckResult, type DecisionPipeline, type InvalidRequest } from '../decide/index.js';
import { messageOf } from '../errors.js';
import type { LimitState } from '../types.js';
import { prepareCheck } from './prepare-check.js';
import {
  DECISION_ID_HEADER,
  PRINCIPAL_HEADER,
  statusFor,
  type GatewayAnswer,
  type GatewayRequest,
} from './types.js';

/**
 * The adapter every gateway transport shares (Envoy ext_authz, forward-auth):
 * authenticate the caller from the request's headers, map the route to an action
 * and a resource, decide and record through the decide core like gRPC Check, and
 * answer in HTTP terms.
 *
 * @example
 * const gateway = new GatewayAdapter(pipeline, authenticator);
 * const answer = await gateway.decide({ method: 'POST', uri: '/v1/models/m1/predict', headers, source, extensions: {}, requestId: null }, '10.0.0.7:41234');
 * answer.status; // 200, 401, 403, 429 (a rate limit: with Retry-After and RateLimit headers); 503 when the credential could not be checked (JWKS unreachable)
 */
export class GatewayAdapter {
  constructor(
    private readonly pipeline: Pick<DecisionPipeline, 'checkWith'>,
    private readonly authenticator: Authenticator,
  ) {}

  /**
   * Decides one request; `caller` (the gateway's address or identity) is recorded with it.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE when the decision cannot be recorded: answer with an error, never allow
   */
  async decide(request: GatewayRequest, caller: string): Promise<GatewayAnswer> {
    const authn = await this.authenticate(request);
    const result = await this.pipeline.checkWith((policySet) => prepareCheck(policySet, request, authn), {
      caller,
      requestId: request.requestId,
      details: { http: httpDetails(request), ...authnDetails(authn) },
    });
    const { decision, decisionId } = result;
    // Credentials that could not be checked (a JWKS URL down) are verdict's failure, not the caller's:
    // 503, so clients retry and operators are paged, rather than a 401 that blames the token.
    const status = !authn.ok && authn.reason === 'UNAVAILABLE' && decision.effect !== 'ALLOW' ? 503 : statusFor(decision.reason, decision.effect);
    const principalId = authn.ok ? authn.principal.id : null;
    if (status === 200) {
      const headers: Record<string, string> = { [DECISION_ID_HEADER]: decisionId, [PRINCIPAL_HEADER]: headerSafe(principalId ?? '') };
      if (decision.limit !== undefined) addRateLimitHeaders(headers, decision.limit, false);
      return { status, decision, decisionId, principalId, headers, body: '' };
    }
    // Why a refused request was refused helps whoever sent it; why a policy denied does not leave verdict.
    // A refusal names no deciding rule, so a policy rule that happens to be called `route` never leaks.
    const first = decision.ruleIds.length === 0 ? decision.errors[0] : undefined;
    const refusal = first !== undefined && (first.ruleId === AUTHN_RULE_ID || first.ruleId === ROUTE_RULE_ID) ? first : undefined;
    const body = JSON.stringify({
      error: status === 401 ? 'unauthenticated' : status === 429 ? 'rate limited' : status === 503 ? 'authentication unavailable' : 'forbidden',
      reason: decision.reason,
      decisionId,
      ...(refusal ? { detail: refusal.message } : {}),
    });
    const headers: Record<string, string> = { [DECISION_ID_HEADER]: decisionId };
    if (decision.limit !== undefined) addRateLimitHeaders(headers, decision.limit, status === 429);
    return { status, decision, decisionId, principalId, headers, body };
  }

  /**
   * Records a request the transport could not read (a malformed or oversized
   * message) as an error decision, so that its refusal is in the log like any other.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE when the decision cannot be recorded
   */
  refuse(input: InvalidRequest, caller: string): Promise<CheckResult> {
    return this.pipeline.checkWith(() => input, { caller, requestId: null });
  }

  private async authenticate(request: GatewayRequest): Promise<AuthnResult> {
    try {
      return await this.authenticator.authenticate(request.repeatedHeaders === undefined ? { headers: request.headers } : { headers: request.headers, repeatedHeaders: request.repeatedHeaders });
    } catch (error) {
      // An authenticator that throws has failed to authenticate; the request is refused, never let through.
      return { ok: false, reason: 'UNAVAILABLE', message: `authentication could not be completed: ${messageOf(error)}` };
    }
  }
}

/**
 * What the decision records of a refused credential beyond its error: the
 * unverified `sub` of a bearer token that failed (`details.authn.tokenSubject`),
 * which the detectors count failures by. Empty for anything else.
 */
export function authnDetails(authn: AuthnResult): { authn?: { tokenSubject: string } } {
  return !authn.ok && authn.tokenSubject !== undefined ? { authn: { tokenSubject: authn.tokenSubject } } : {};
}

/**
 * The rate-limit headers of draft-ietf-httpapi-ratelimit-headers for the limit a
 * decision reports: `RateLimit-Policy: "predict-per-user";q=100;w=60` (quota per
 * window in seconds) and `RateLimit: "predict-per-user";r=0;t=12` (remaining, and
 * seconds until the quota is back, or until a refused call would be allowed), and,
 * on a refusal, `Retry-After` in whole seconds (rounded up).
 */
export function addRateLimitHeaders(headers: Record<string, string>, limit: LimitState, refused: boolean): void {
  const name = `"${limit.limitId}"`;
  const wait = Math.ceil((refused ? limit.retryAfterMs : limit.resetMs) / 1000);
  headers['ratelimit-policy'] = `${name};q=${limit.quota};w=${Math.ceil(limit.windowSeconds)}`;
  headers['ratelimit'] = `${name};r=${limit.remaining};t=${wait}`;
  if (refused) headers['retry-after'] = String(Math.max(1, wait));
}

const RECORDED_METHOD_LENGTH = 40;
const RECORDED_PATH_LENGTH = 2048;

/**
 * The method and path of a gateway request, as recorded in the decision's
 * `details.http`: as the gateway sent them (the path without its query, still
 * percent-encoded), cut to a bounded length.
 */
export function httpDetails(request: GatewayRequest): { method: string; path: string } {
  const q = request.uri.indexOf('?');
  const path = q === -1 ? request.uri : request.uri.slice(0, q);
  return { method: request.method.slice(0, RECORDED_METHOD_LENGTH), path: path.slice(0, RECORDED_PATH_LENGTH) };
}

/** A value that can go in an HTTP header as is; anything else is percent-encoded. */
export function headerSafe(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}
