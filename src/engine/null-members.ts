// Attributes sent as null, read as absent: the one place that says what null means
// to a policy, used by every way to a decision (the decide core, replay, `verdict
// check` and `verdict test`).

import type { AttributeValue, Attributes, DecisionRequest } from '../types.js';
/**
 * The request with every attribute whose value is null left out, in maps at any depth
 * (list items are kept): null is how JSON and SQL say "unknown", and unknown is what an
 * absent attribute means to a policy. A deny rule written as `resource.attributes.env ==
 * "production"` errs on an absent env and fails closed, where `null == "production"` is
 * simply false and the deny did not apply. (Where a directory lets the request's value
 * win, an absent attribute takes the directory's, a null one would have kept it out.)
 * Only the parts holding a null are copied; a request without one is returned as it is.
 */
export function withoutNullMembers(request: DecisionRequest): DecisionRequest {
  const principal = request.principal;
  const principalAttributes = dropNulls(principal.attributes);
  const resourceAttributes = dropNulls(request.resource.attributes);
  const contextAttributes = dropNulls(request.context.attributes);
  if (principalAttributes === principal.attributes && resourceAttributes === request.resource.attributes && contextAttributes === request.context.attributes) return request;
  return {
    ...request,
    principal: principalAttributes === principal.attributes ? principal : { ...principal, attributes: principalAttributes },
    resource: resourceAttributes === request.resource.attributes ? request.resource : { ...request.resource, attributes: resourceAttributes },
    context: contextAttributes === request.context.attributes ? request.context : { ...request.context, attributes: contextAttributes },
  };
}

/** The map without null members, at any depth; the same map when it holds none. */
function dropNulls(map: Attributes): Attributes {
  let copy: Record<string, AttributeValue> | null = null;
  for (const key in map) {
    if (!Object.prototype.hasOwnProperty.call(map, key)) continue;
    const value = map[key]!;
    const kept = value === null ? undefined : dropNullsIn(value);
    if (kept === value) {
      if (copy !== null) copy[key] = value;
      continue;
    }
    if (copy === null) {
      copy = {};
      for (const earlier in map) {
        if (earlier === key) break;
        if (Object.prototype.hasOwnProperty.call(map, earlier)) copy[earlier] = map[earlier]!;
      }
    }
    if (kept !== undefined) copy[key] = kept;
  }
  return copy === null ? map : (copy as Attributes);
}

function dropNullsIn(value: AttributeValue): AttributeValue {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    let copy: AttributeValue[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const item = value[i]!;
      const kept = dropNullsIn(item);
      if (kept !== item && copy === null) copy = value.slice(0, i);
      if (copy !== null) copy.push(kept);
    }
    return copy ?? value;
  }
  return dropNulls(value as Attributes);
}
