// Finding the credential in a request's headers, by its shape.

import { API_KEY_PREFIX } from './api-key-format.js';

/** What a request's headers carry, by shape. */
export type Credential =
  | { readonly kind: 'none' }
  | { readonly kind: 'api-key'; readonly value: string }
  | { readonly kind: 'jwt'; readonly value: string }
  | { readonly kind: 'malformed'; readonly message: string };

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** The token of `Bearer <token>` (scheme case-insensitive), or null when the header is absent or another scheme. */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match ? match[1]! : null;
}

/**
 * Finds the one credential in the headers: `authorization: Bearer vk_...` or
 * the API key header is an API key, `authorization: Bearer <a.b.c>` a JWT (an
 * empty third part too, so `alg: none` tokens are refused as such rather than as
 * malformed). Two credentials at once are refused, since which one decides would
 * be a guess.
 */
export function findCredential(headers: Readonly<Record<string, string | undefined>>, apiKeyHeader: string): Credential {
  const authorization = nonEmpty(headers.authorization);
  const apiKey = apiKeyHeader === 'authorization' ? undefined : nonEmpty(headers[apiKeyHeader]);
  if (authorization !== undefined && apiKey !== undefined) {
    return { kind: 'malformed', message: `both an authorization header and ${apiKeyHeader} were sent; send one credential` };
  }
  if (apiKey !== undefined) return { kind: 'api-key', value: apiKey.trim() };
  if (authorization === undefined) return { kind: 'none' };
  const token = bearerToken(authorization);
  if (token === null) {
    const scheme = /^\S+/.exec(authorization)?.[0] ?? '';
    return { kind: 'malformed', message: `authorization scheme ${JSON.stringify(scheme.slice(0, 20))} is not supported; use Bearer` };
  }
  if (token.startsWith(API_KEY_PREFIX)) return { kind: 'api-key', value: token };
  if (JWT_SHAPE.test(token)) return { kind: 'jwt', value: token };
  return { kind: 'malformed', message: 'the bearer credential is neither an API key (vk_...) nor a JWT' };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}
