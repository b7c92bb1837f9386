import type { IncomingMessage, ServerResponse } from 'node:http';
import { VerdictError } from '../errors.js';
import type { GatewayAdapter } from './adapter.js';
import type { GatewayRequest } from './types.js';

/**
 * The forward-auth endpoint on the operator HTTP port, for NGINX `auth_request`,
 * Traefik ForwardAuth and Caddy `forward_auth`. Any method; the body is ignored.
 */
export const FORWARD_AUTH_PATH = '/forward-auth';

/**
 * Which gateway sends forward-auth requests (`forwardAuth.style` in the config),
 * and so which one pair of headers describes the original request: `nginx` reads
 * `X-Original-Method` / `X-Original-URI` (set in the auth location) and `X-Real-IP`;
 * `traefik` and `caddy` read `X-Forwarded-Method` / `X-Forwarded-Uri` (set by the
 * gateway itself) and the last `X-Forwarded-For` hop.
 */
export const FORWARD_AUTH_STYLES = ['nginx', 'traefik', 'caddy'] as const;
export type ForwardAuthStyle = (typeof FORWARD_AUTH_STYLES)[number];

interface HeaderFamily {
  readonly method: string;
  readonly uri: string;
  /** Where the client's address is read: a header the gateway sets, or the last hop of X-Forwarded-For. */
  readonly address: 'x-real-ip' | 'x-forwarded-for';
  /** The other family's method and URI headers: this gateway does not set them, so only a client can have. */
  readonly foreign: readonly string[];
}

const ORIGINAL: HeaderFamily = { method: 'x-original-method', uri: 'x-original-uri', address: 'x-real-ip', foreign: ['x-forwarded-method', 'x-forwarded-uri'] };
const FORWARDED: HeaderFamily = { method: 'x-forwarded-method', uri: 'x-forwarded-uri', address: 'x-forwarded-for', foreign: ['x-original-method', 'x-original-uri'] };
const FAMILIES: Readonly<Record<ForwardAuthStyle, HeaderFamily>> = { nginx: ORIGINAL, traefik: FORWARDED, caddy: FORWARDED };

/**
 * The original request a forward-auth sub-request describes, read from the header
 * family of the configured gateway `style` only. Its method and URI headers are
 * required, once each; a request that also carries the other family's method or URI
 * header (which only a client can have put there), or a method-override header, is
 * marked for refusal (`refusal`): the gateway passes client headers on, so reading
 * either family would let a client name the request that gets decided.
 */
export function forwardedRequest(req: IncomingMessage, style: ForwardAuthStyle = 'nginx'): GatewayRequest {
  const family = FAMILIES[style];
  // Header names are the client's: without a prototype, `constructor` or `__proto__` are names like any other.
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  const repeatedHeaders = new Set<string>();
  // headersDistinct keeps every copy (req.headers drops some repeats, e.g. of authorization).
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (values === undefined) continue;
    headers[name] = values.length === 1 ? values[0]! : values.join(', ');
    if (values.length > 1) repeatedHeaders.add(name);
  }
  let refusal: string | null = null;
  const foreign = family.foreign.find((name) => headers[name] !== undefined);
  if (foreign !== undefined) {
    refusal = `the request carries ${display(foreign)}, which a ${style} gateway does not set, so a client sent it (forwardAuth.style is ${style}: verdict reads ${display(family.method)} and ${display(family.uri)}; see docs/gateways.md)`;
  } else if (headers[family.method] === undefined) {
    refusal = `the gateway sent no ${display(family.method)} header (forwardAuth.style is ${style}; see docs/gateways.md)`;
  } else if (headers[family.uri] === undefined) {
    refusal = `the gateway sent no ${display(family.uri)} header (forwardAuth.style is ${style}; see docs/gateways.md)`;
  } else {
    const twice = [family.method, family.uri, ...(family.address === 'x-real-ip' ? [family.address] : [])].find((name) => repeatedHeaders.has(name));
    if (twice !== undefined) refusal = `the request carries the ${display(twice)} header more than once`;
  }
  const address = family.address === 'x-real-ip' ? headers['x-real-ip'] || null : headers['x-forwarded-for']?.split(',').at(-1)?.trim() || null;
  return {
    method: headers[family.method] ?? '',
    uri: headers[family.uri] ?? '',
    headers,
    repeatedHeaders,
    source: { address, principal: null },
    extensions: {},
    requestId: headers['x-request-id'] ?? null,
    refusal,
  };
}

const DISPLAY: Readonly<Record<string, string>> = {
  'x-original-method': 'X-Original-Method',
  'x-original-uri': 'X-Original-URI',
  'x-real-ip': 'X-Real-IP',
  'x-forwarded-method': 'X-Forwarded-Method',
  'x-forwarded-uri': 'X-Forwarded-Uri',
};

/** A header name as the gateways' docs write it: `x-original-uri` → `X-Original-URI`. */
function display(name: string): string {
  return DISPLAY[name] ?? name;
}

/** The caller recorded for a forward-auth request: the gateway's address. */
export function peerOf(req: IncomingMessage): string {
  const { remoteAddress, remotePort } = req.socket;
  if (remoteAddress === undefined) return 'unknown';
  return remoteAddress.includes(':') ? `[${remoteAddress}]:${remotePort}` : `${remoteAddress}:${remotePort}`;
}

/**
 * Answers one forward-auth request: 200 (with `x-verdict-principal` and
 * `x-verdict-decision-id` for the upstream), 401, 403, 429 (a rate limit, with
 * `Retry-After`, `RateLimit-Policy` and `RateLimit`), each with the decision id; 503 when the decision cannot be recorded (fail closed).
 */
export async function handleForwardAuth(
  gateway: GatewayAdapter,
  req: IncomingMessage,
  res: ServerResponse,
  options: { style?: ForwardAuthStyle; callerOf?: (req: IncomingMessage) => string; onError?: (error: unknown) => void } = {},
): Promise<void> {
  // The body, if a gateway sends one, plays no part; drain it so the connection can be reused.
  req.resume();
  let status: number;
  let headers: Record<string, string>;
  let body: string;
  try {
    const answer = await gateway.decide(forwardedRequest(req, options.style), (options.callerOf ?? peerOf)(req));
    status = answer.status;
    // Copied into an empty object, not spread: V8 (node 20) gives an object spread and then
    // given more properties a hidden class of its own, once this code is optimized, and
    // keeps each of those until a full collection, so every answer promoted about 230 bytes
    // to the old generation (README, "What each check leaves to the garbage collector").
    headers = Object.assign({}, answer.headers);
    body = answer.body;
  } catch (error) {
    status = 503;
    headers = {};
    const unavailable = error instanceof VerdictError && error.code === 'DECISION_LOG_UNAVAILABLE';
    if (!unavailable) options.onError?.(error);
    body = JSON.stringify({ error: unavailable ? 'the decision could not be recorded, so the request is refused' : 'internal error; the request is refused' });
  }
  if (body !== '') headers['content-type'] = 'application/json';
  headers['content-length'] = String(Buffer.byteLength(body));
  headers['cache-control'] = 'no-store';
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}
