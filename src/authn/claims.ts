// A JWT's verified claims as a principal, by the configured claim mapping.

import type { AttributeValue, Attributes, Principal } from '../types.js';
import type { ClaimPath, JwtClaimMapping } from './config.js';

/**
 * The value at `path` in a JWT payload. A string path is first tried as one
 * claim name (namespaced claims such as `https://example.com/roles` contain dots),
 * then as a dotted path (`realm_access.roles`); an array is a list of segments.
 */
export function claimAt(payload: Readonly<Record<string, unknown>>, path: ClaimPath): unknown {
  if (typeof path === 'string') {
    if (Object.hasOwn(payload, path)) return payload[path];
    return walk(payload, path.split('.'));
  }
  return walk(payload, path);
}

function walk(value: unknown, segments: readonly string[]): unknown {
  let current = value;
  for (const segment of segments) {
    if (current === null || typeof current !== 'object' || Array.isArray(current) || !Object.hasOwn(current, segment)) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}

function describe(path: ClaimPath): string {
  return typeof path === 'string' ? path : path.join('.');
}

/** A principal from verified claims, or why the claims do not make one. */
export function principalFromClaims(
  payload: Readonly<Record<string, unknown>>,
  mapping: JwtClaimMapping | undefined,
): { ok: true; principal: Principal } | { ok: false; message: string } {
  const idPath = mapping?.principalId ?? 'sub';
  const id = claimAt(payload, idPath);
  if (typeof id !== 'string' || id === '') return { ok: false, message: `token has no principal id (claim ${describe(idPath)} missing or not a string)` };

  let roles: string[] = [];
  if (mapping?.roles !== undefined) {
    const value = claimAt(payload, mapping.roles);
    if (typeof value === 'string') roles = value.split(/\s+/).filter((r) => r !== '');
    else if (Array.isArray(value) && value.every((r) => typeof r === 'string')) roles = value as string[];
    else if (value !== undefined && value !== null) return { ok: false, message: `claim ${describe(mapping.roles)} is not a list of role names` };
  }

  const attributes: Record<string, AttributeValue> = {};
  for (const [name, path] of Object.entries(mapping?.attributes ?? {})) {
    const value = claimAt(payload, path);
    if (value === undefined) continue;
    // The payload came from JSON.parse, which reads 1e999 as Infinity: a rule would compare it,
    // the decision log could only record null, and gRPC and AuthZEN refuse the same value.
    const infinite = nonFiniteAt(value, describe(path));
    if (infinite !== null) return { ok: false, message: `claim ${infinite}: number must be finite (1e999 and the like overflow a double)` };
    attributes[name] = value as AttributeValue;
  }
  return { ok: true, principal: { id, roles, attributes: attributes as Attributes } };
}

/**
 * The path of the first non-finite number in a claim's value, or null. Walked with
 * an explicit stack: a signed token may nest thousands of levels within its 16 KiB.
 */
function nonFiniteAt(value: unknown, path: string): string | null {
  const pending: [unknown, string][] = [[value, path]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [current, at] = next;
    if (typeof current === 'number') {
      if (!Number.isFinite(current)) return at;
    } else if (Array.isArray(current)) {
      for (let i = current.length - 1; i >= 0; i--) pending.push([current[i], `${at}[${i}]`]);
    } else if (typeof current === 'object' && current !== null) {
      for (const key of Object.keys(current).reverse()) pending.push([(current as Record<string, unknown>)[key], `${at}.${key}`]);
    }
  }
  return null;
}
