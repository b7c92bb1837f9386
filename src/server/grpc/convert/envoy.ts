import { isUtf8 } from 'node:buffer';
import type { GatewayAnswer, GatewayRequest } from '../../../gateway/types.js';
import type { HeaderValueOption } from '../generated/envoy/config/core/v3/HeaderValueOption.js';
import type { CheckRequest__Output } from '../generated/envoy/service/auth/v3/CheckRequest.js';
import type { CheckResponse } from '../generated/envoy/service/auth/v3/CheckResponse.js';
import type { StatusCode__Output } from '../generated/envoy/type/v3/StatusCode.js';
import { jsonToStruct } from './struct.js';

// Envoy's ext_authz v3 messages as the gateway adapter's HTTP request and back:
// what Envoy's HTTP filter says of a downstream request, and the answer in
// Envoy's terms (status, headers for the upstream or the client, metadata).

/** google.rpc.Code values. */
export const RPC_CODE = { OK: 0, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

/**
 * Why a CheckRequest cannot be read though it decoded: a header sent as `raw_value`
 * (Envoy's encode_raw_headers) whose bytes are not UTF-8. As bytes, protobufjs does
 * not check them the way it checks a string (strict-strings.ts), and mended to U+FFFD
 * two different values would be one. Null when there is none.
 */
export function unreadableRawHeader(message: CheckRequest__Output): string | null {
  for (const header of message.attributes?.request?.http?.headerMap?.headers ?? []) {
    if (header.value === '' && header.rawValue !== undefined && !isUtf8(header.rawValue)) {
      return `header ${JSON.stringify(header.key)}: its raw_value of ${header.rawValue.length} bytes is not valid UTF-8`;
    }
  }
  return null;
}

/** The request an ext_authz CheckRequest describes. */
export function fromEnvoyCheckRequest(message: CheckRequest__Output): GatewayRequest {
  const attributes = message.attributes;
  const http = attributes?.request?.http ?? null;
  // Header names are the client's: without a prototype, `constructor` or `__proto__` are names like any other.
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  const repeatedHeaders = new Set<string>();
  // Envoy's map joins a repeated header's values with ",": one with a comma may have been sent
  // twice, so a route that reads it refuses the request (encode_raw_headers keeps them apart).
  for (const [name, value] of Object.entries(http?.headers ?? {})) {
    const lower = name.toLowerCase();
    if (headers[lower] !== undefined || value.includes(',')) repeatedHeaders.add(lower);
    headers[lower] = headers[lower] === undefined ? value : `${headers[lower]},${value}`;
  }
  // With encode_raw_headers Envoy sends a list instead of the map, repeated names kept apart.
  for (const header of http?.headerMap?.headers ?? []) {
    const name = header.key.toLowerCase();
    const value = header.value !== '' ? header.value : Buffer.from(header.rawValue ?? []).toString('utf8');
    if (headers[name] !== undefined) repeatedHeaders.add(name);
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  if (headers['host'] === undefined && http?.host) headers['host'] = http.host;
  let uri = http?.path ?? '';
  if (http?.query && !uri.includes('?')) uri = `${uri}?${http.query}`;
  const source = attributes?.source ?? null;
  return {
    method: http?.method ?? '',
    uri,
    headers,
    repeatedHeaders,
    source: { address: source?.address?.socketAddress?.address || null, principal: source?.principal || null },
    extensions: attributes?.contextExtensions ?? {},
    requestId: http?.id || headers['x-request-id'] || null,
  };
}

const HTTP_STATUS_NAMES: Readonly<Record<GatewayAnswer['status'], StatusCode__Output>> = {
  200: 'OK',
  401: 'Unauthorized',
  403: 'Forbidden',
  429: 'TooManyRequests',
  503: 'ServiceUnavailable',
};

function headerOptions(headers: Readonly<Record<string, string>>): HeaderValueOption[] {
  // Overwrite, so a client cannot smuggle in its own x-verdict-principal.
  return Object.entries(headers).map(([key, value]) => ({ header: { key, value }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }));
}

/**
 * The CheckResponse for a gateway answer. Allow: status OK, the principal and decision
 * id as headers for the upstream. Deny: PERMISSION_DENIED (403), UNAUTHENTICATED (401)
 * or RESOURCE_EXHAUSTED (429), with the decision id as a header for the client. Both
 * carry `dynamic_metadata` {decision_id, reason, policy_version}.
 */
export function toEnvoyCheckResponse(answer: GatewayAnswer): CheckResponse {
  const dynamicMetadata = jsonToStruct({
    decision_id: answer.decisionId,
    reason: answer.decision.reason,
    policy_version: answer.decision.policyVersion,
    ...(answer.principalId !== null ? { principal_id: answer.principalId } : {}),
  });
  if (answer.status === 200) {
    return { status: { code: RPC_CODE.OK, message: '' }, okResponse: { headers: headerOptions(answer.headers), headersToRemove: [] }, dynamicMetadata };
  }
  const code =
    answer.status === 401 ? RPC_CODE.UNAUTHENTICATED : answer.status === 429 ? RPC_CODE.RESOURCE_EXHAUSTED : answer.status === 503 ? RPC_CODE.UNAVAILABLE : RPC_CODE.PERMISSION_DENIED;
  const headers = answer.body === '' ? answer.headers : { ...answer.headers, 'content-type': 'application/json' };
  return {
    status: { code, message: answer.decision.reason },
    deniedResponse: { status: { code: HTTP_STATUS_NAMES[answer.status] }, headers: headerOptions(headers), body: answer.body },
    dynamicMetadata,
  };
}
