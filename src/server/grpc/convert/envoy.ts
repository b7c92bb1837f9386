import type { GatewayAnswer, GatewayRequest } from '../../../gateway/types.js';
import type { StructMessage } from '../messages.js';
import { jsonToStruct } from './struct.js';

// Envoy's ext_authz v3 messages as the gateway adapter's HTTP request and back:
// what Envoy's HTTP filter says of a downstream request, and the answer in
// Envoy's terms (status, headers for the upstream or the client, metadata).

// The messages of proto/envoy/service/auth/v3/*.proto as the loader presents them
// (see LOADER_OPTIONS): camelCase fields, maps as objects, absent messages as null,
// the members of a oneof present only when set.

export interface SocketAddressMessage {
  address: string;
  portValue?: number;
}

export interface AddressMessage {
  socketAddress?: SocketAddressMessage | null;
  pipe?: { path: string } | null;
}

export interface PeerMessage {
  address: AddressMessage | null;
  service: string;
  principal: string;
}

export interface HeaderValueMessage {
  key: string;
  value: string;
  rawValue: Buffer | Uint8Array;
}

export interface HttpRequestMessage {
  id: string;
  method: string;
  headers: Record<string, string>;
  path: string;
  host: string;
  scheme: string;
  query: string;
  headerMap: { headers: HeaderValueMessage[] } | null;
}

export interface AttributeContextMessage {
  source: PeerMessage | null;
  destination: PeerMessage | null;
  request: { http: HttpRequestMessage | null } | null;
  contextExtensions: Record<string, string>;
}

export interface ExtAuthzCheckRequest {
  attributes: AttributeContextMessage | null;
}

export type HeaderAppendActionName = 'APPEND_IF_EXISTS_OR_ADD' | 'ADD_IF_ABSENT' | 'OVERWRITE_IF_EXISTS_OR_ADD' | 'OVERWRITE_IF_EXISTS';

export interface HeaderValueOptionMessage {
  header: { key: string; value: string };
  appendAction: HeaderAppendActionName;
}

export type HttpStatusName = 'OK' | 'Unauthorized' | 'Forbidden' | 'TooManyRequests';

export interface ExtAuthzCheckResponse {
  status: { code: number; message: string };
  okResponse?: { headers: HeaderValueOptionMessage[]; headersToRemove: string[] };
  deniedResponse?: { status: { code: HttpStatusName }; headers: HeaderValueOptionMessage[]; body: string };
  dynamicMetadata: StructMessage;
}

/** google.rpc.Code values. */
export const RPC_CODE = { OK: 0, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, UNAUTHENTICATED: 16 } as const;

/** The request an ext_authz CheckRequest describes. */
export function fromEnvoyCheckRequest(message: ExtAuthzCheckRequest): GatewayRequest {
  const attributes = message.attributes;
  const http = attributes?.request?.http ?? null;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(http?.headers ?? {})) headers[name.toLowerCase()] = value;
  // With encode_raw_headers Envoy sends a list instead of the map, repeated names kept apart.
  for (const header of http?.headerMap?.headers ?? []) {
    const name = header.key.toLowerCase();
    const value = header.value !== '' ? header.value : Buffer.from(header.rawValue ?? []).toString('utf8');
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
    source: { address: source?.address?.socketAddress?.address || null, principal: source?.principal || null },
    extensions: attributes?.contextExtensions ?? {},
    requestId: http?.id || headers['x-request-id'] || null,
  };
}

const HTTP_STATUS_NAMES: Readonly<Record<GatewayAnswer['status'], HttpStatusName>> = {
  200: 'OK',
  401: 'Unauthorized',
  403: 'Forbidden',
  429: 'TooManyRequests',
};

function headerOptions(headers: Readonly<Record<string, string>>): HeaderValueOptionMessage[] {
  // Overwrite, so a client cannot smuggle in its own x-verdict-principal.
  return Object.entries(headers).map(([key, value]) => ({ header: { key, value }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }));
}

/**
 * The CheckResponse for a gateway answer. Allow: status OK, the principal and decision
 * id as headers for the upstream. Deny: PERMISSION_DENIED (403), UNAUTHENTICATED (401)
 * or RESOURCE_EXHAUSTED (429), with the decision id as a header for the client. Both
 * carry `dynamic_metadata` {decision_id, reason, policy_version}.
 */
export function toEnvoyCheckResponse(answer: GatewayAnswer): ExtAuthzCheckResponse {
  const dynamicMetadata = jsonToStruct({
    decision_id: answer.decisionId,
    reason: answer.decision.reason,
    policy_version: answer.decision.policyVersion,
    ...(answer.principalId !== null ? { principal_id: answer.principalId } : {}),
  });
  if (answer.status === 200) {
    return { status: { code: RPC_CODE.OK, message: '' }, okResponse: { headers: headerOptions(answer.headers), headersToRemove: [] }, dynamicMetadata };
  }
  const code = answer.status === 401 ? RPC_CODE.UNAUTHENTICATED : answer.status === 429 ? RPC_CODE.RESOURCE_EXHAUSTED : RPC_CODE.PERMISSION_DENIED;
  const headers = answer.body === '' ? answer.headers : { ...answer.headers, 'content-type': 'application/json' };
  return {
    status: { code, message: answer.decision.reason },
    deniedResponse: { status: { code: HTTP_STATUS_NAMES[answer.status] }, headers: headerOptions(headers), body: answer.body },
    dynamicMetadata,
  };
}
