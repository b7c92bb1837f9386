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
 * The original request a forward-auth sub-request describes. Method and URI come
 * from `X-Original-Method` / `X-Original-URI` (NGINX, set them in the auth location)
 * or `X-Forwarded-Method` / `X-Forwarded-Uri` (Traefik, Caddy); without a method
 * header the sub-request's own method is used (NGINX's auth_request keeps it).
 * The client address is `X-Real-IP`, else the last `X-Forwarded-For` hop (the one
 * the gateway itself added).
 */
export function forwardedRequest(req: IncomingMessage): GatewayRequest {
  const headers: Record<string, string> = {};
  const repeatedHeaders = new Set<string>();
  // headersDistinct keeps every copy (req.headers drops some repeats, e.g. of authorization).
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (values === undefined) continue;
    headers[name] = values.length === 1 ? values[0]! : values.join(', ');
    if (values.length > 1) repeatedHeaders.add(name);
  }
  const forwardedFor = headers['x-forwarded-for'];
  const lastHop = forwardedFor?.split(',').at(-1)?.trim();
  return {
    method: headers['x-original-method'] ?? headers['x-forwarded-method'] ?? req.method ?? '',
    uri: headers['x-original-uri'] ?? headers['x-forwarded-uri'] ?? '',
    headers,
    repeatedHeaders,
    source: { address: headers['x-real-ip'] ?? (lastHop || null), principal: null },
    extensions: {},
    requestId: headers['x-request-id'] ?? null,
  };
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
  options: { callerOf?: (req: IncomingMessage) => string; onError?: (error: unknown) => void } = {},
): Promise<void> {
  // The body, if a gateway sends one, plays no part; drain it so the connection can be reused.
  req.resume();
  let status: number;
  let headers: Record<string, string>;
  let body: string;
  try {
    const answer = await gateway.decide(forwardedRequest(req), (options.callerOf ?? peerOf)(req));
    status = answer.status;
    headers = { ...answer.headers };
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
