// A gateway's HTTP request as a question for the decide core: the principal from
// authentication, action, resource and context from the routes, or a refusal.

import type { AuthnResult } from '../authn/types.js';
import { RefusedRequest, noRoute, unauthenticated, unroutable, type CheckInput, type Refusal } from '../decide/index.js';
import type { PolicySet } from '../policy/policy-set.js';
import { looseQueryName, type HttpRequestFacts, type RoutedRequest } from '../policy/routes.js';
import type { Attributes, Principal } from '../types.js';
import type { GatewayRequest } from './types.js';

/** Resource type recorded for a request that no route maps; its id is the path. */
export const UNROUTED_RESOURCE_TYPE = 'http_route';

const EMPTY: Attributes = Object.freeze({});
const ANONYMOUS: Principal = Object.freeze({ id: '', roles: Object.freeze([]), attributes: EMPTY });
const METHOD = /^[A-Z]{1,24}$/;
const ANY_CASE_METHOD = /^[A-Za-z]{1,24}$/;

/**
 * Headers that ask an upstream to act on another method or path than the one
 * decided (method overrides, URL rewrites some frameworks honour). No gateway
 * sets them; a request carrying one is refused, whatever the gateway.
 */
const OVERRIDE_HEADERS: Readonly<Record<string, string>> = {
  'x-http-method-override': 'X-HTTP-Method-Override',
  'x-http-method': 'X-HTTP-Method',
  'x-method-override': 'X-Method-Override',
  'x-original-url': 'X-Original-URL',
  'x-rewrite-url': 'X-Rewrite-URL',
};
/** The headers a gateway sets for its upstream from verdict's answer (X-Verdict-Principal, X-Verdict-Decision-Id). */
const VERDICT_HEADER_PREFIX = 'x-verdict-';
/** The query parameter Rails, Laravel and others read as the method (`POST /x?_method=DELETE`). */
const METHOD_PARAMETER = '_method';

/** Why a request asks its upstream for another method, path or caller than the one decided, or null. */
function overrideAsked(headers: GatewayRequest['headers'], query: string): string | null {
  for (const name in OVERRIDE_HEADERS) {
    if (headers[name] !== undefined) return `the request carries ${OVERRIDE_HEADERS[name]}, which asks the upstream for another method or path than the one decided`;
  }
  // CGI (PHP, and servers that follow it) reads `_` in a header's name as `-`: X_HTTP_Method_Override is
  // X-HTTP-Method-Override there. NGINX drops such headers; Caddy and Envoy pass them on.
  for (const name in headers) {
    if (!name.includes('_')) continue;
    const dashedName = name.replace(/_/g, '-');
    const dashed = OVERRIDE_HEADERS[dashedName];
    if (dashed !== undefined) return `the request carries ${name}, which an upstream reads as ${dashed}: it asks for another method or path than the one decided`;
    // The gateway sets X-Verdict-Principal and X-Verdict-Decision-Id for the upstream, replacing any the client sent,
    // but not X_Verdict_Principal: a CGI upstream would read the client's beside (or instead of) the gateway's.
    if (dashedName.startsWith(VERDICT_HEADER_PREFIX)) return `the request carries ${name}, which an upstream reads as one of the X-Verdict- headers the gateway sets for it: a client may not name the caller or decision the upstream is told of`;
  }
  // Read as the loosest server reads a query's names (PHP: `.method`, `+_method` and `%20_method` are `_method`);
  // only a query that could name it is parsed.
  if (!/method|%/i.test(query)) return null;
  for (const name of new URLSearchParams(query).keys()) {
    if (looseQueryName(name) === METHOD_PARAMETER) {
      const spelled = name === METHOD_PARAMETER ? '' : ` (as ${JSON.stringify(name)}, which some servers read as ${METHOD_PARAMETER})`;
      return `the request carries the query parameter ${METHOD_PARAMETER}${spelled}, which asks the upstream for another method than the one decided`;
    }
  }
  return null;
}

const MAX_URI_LENGTH = 8192;
const RECORDED_PATH_LENGTH = 512;

/**
 * The question a gateway request asks, with the policy set that will decide it (so
 * routes and rules come from the same version): the authenticated principal, and
 * the action, resource and context its route makes of the request. A failed
 * authentication, or a request no route maps, is refused; the refused request
 * still carries what could be read (principal id '' when unauthenticated; method
 * as the action and `{type: http_route, id: <path>}` as the resource when unrouted).
 * Pure.
 */
export function prepareCheck(policySet: PolicySet, request: GatewayRequest, authn: AuthnResult): CheckInput {
  const principal = authn.ok ? authn.principal : ANONYMOUS;
  // Methods are case-sensitive (RFC 9110): `get` is not GET to every upstream, so it is not decided as GET.
  const method = request.method;
  const q = request.uri.indexOf('?');
  const path = q === -1 ? request.uri : request.uri.slice(0, q);
  const unrouted = (action: string): RoutedRequest => ({
    action,
    resource: { type: UNROUTED_RESOURCE_TYPE, id: path.slice(0, RECORDED_PATH_LENGTH), attributes: EMPTY },
    context: { attributes: EMPTY },
  });

  let routed: RoutedRequest;
  let routeRefusal: Refusal | null = null;
  let override: string | null;
  if (request.refusal) {
    routed = unrouted(METHOD.test(method) ? method : 'UNKNOWN');
    routeRefusal = unroutable(request.refusal);
  } else if (!METHOD.test(method)) {
    routed = unrouted('UNKNOWN');
    routeRefusal = unroutable(
      ANY_CASE_METHOD.test(method)
        ? `the method ${JSON.stringify(method)} is not in upper case: methods are case-sensitive and an upstream may read it as another; send ${method.toUpperCase()}`
        : `not an HTTP method: ${JSON.stringify(request.method.slice(0, 40))}`,
    );
  } else if (path === '') {
    routed = unrouted(method);
    routeRefusal = unroutable('the gateway sent no request URI (NGINX: set X-Original-URI; Traefik and Caddy send X-Forwarded-Uri; see forwardAuth.style)');
  } else if (request.uri.length > MAX_URI_LENGTH) {
    routed = unrouted(method);
    routeRefusal = unroutable(`the request URI is longer than ${MAX_URI_LENGTH} characters`);
  } else if ((override = overrideAsked(request.headers, q === -1 ? '' : request.uri.slice(q + 1))) !== null) {
    routed = unrouted(method);
    routeRefusal = unroutable(override);
  } else {
    const match = policySet.routes.match(method, path);
    if (match.kind === 'matched') {
      const facts: HttpRequestFacts = {
        method,
        path,
        query: q === -1 ? '' : request.uri.slice(q + 1),
        headers: request.headers,
        ...(request.repeatedHeaders ? { repeatedHeaders: request.repeatedHeaders } : {}),
        source: request.source,
        extensions: request.extensions,
      };
      routed = match.route.resolve(facts, match.params);
      // An id the directory lists under another spelling is refused by the decide core, as on every transport.
      if (routed.refusal !== undefined) routeRefusal = unroutable(routed.refusal);
    } else if (match.kind === 'invalid') {
      routed = unrouted(method);
      routeRefusal = unroutable(match.message);
    } else {
      routed = unrouted(method);
      routeRefusal = noRoute(method, path.slice(0, RECORDED_PATH_LENGTH));
    }
  }

  const decisionRequest = { principal, action: routed.action, resource: routed.resource, context: routed.context };
  // A failed authentication is answered 401 whatever the route: who is asking comes first.
  if (!authn.ok) return new RefusedRequest(decisionRequest, unauthenticated(authn));
  return routeRefusal === null ? decisionRequest : new RefusedRequest(decisionRequest, routeRefusal);
}
