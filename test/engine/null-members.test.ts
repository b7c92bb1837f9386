import { describe, expect, it } from 'vitest';
import { withoutNullMembers } from '../../src/engine/null-members.js';
import type { DecisionRequest } from '../../src/types.js';

const ask = (resource: Record<string, unknown>, context: Record<string, unknown> = {}): DecisionRequest =>
  ({ principal: { id: 'p', roles: [], attributes: { org: 'acme' } }, action: 'read', resource: { type: 'doc', id: 'd', attributes: resource }, context: { attributes: context } }) as DecisionRequest;

describe('attributes sent as null', () => {
  it('are left out at any depth of a map; list items stay as sent; member order is kept', () => {
    const request = ask({ a: 1, env: null, meta: { team: 'x', owner: null, deep: { z: null } }, tags: [null, 'x', { k: null }] }, { ticket: null });
    const kept = withoutNullMembers(request);
    expect(kept.resource.attributes).toEqual({ a: 1, meta: { team: 'x', deep: {} }, tags: [null, 'x', {}] });
    expect(Object.keys(kept.resource.attributes)).toEqual(['a', 'meta', 'tags']);
    expect(kept.context.attributes).toEqual({});
    // What held no null is shared, and the request as sent is untouched.
    expect(kept.principal).toBe(request.principal);
    expect(request.resource.attributes).toHaveProperty('env', null);
  });

  it('returns a request without any null as it is', () => {
    const request = ask({ a: 1, list: [1, 'x'], m: { b: false } });
    expect(withoutNullMembers(request)).toBe(request);
  });
});
