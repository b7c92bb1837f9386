import type { DirectoryPrecedence, DirectoryPrincipal, DirectoryResource } from '../policy/directory.js';
import type { PolicySet } from '../policy/policy-set.js';
import type { AttributeValue, Attributes, DecisionRequest, Principal, Resource } from '../types.js';

/**
 * Completing a request from the policy set's directories (`principals` and
 * `resources` files): a request naming a principal or resource the directory knows
 * is decided with the directory's roles and attributes, the directory winning
 * where the two disagree unless its `precedence` says otherwise. Pure, like the
 * engine: the same set and request always give the same completed request. A
 * request that names nothing the directory knows, or whose named entries change
 * nothing, is returned as it is (no copy); where the directory alone decides a
 * principal's or resource's facts, its frozen object (built at load) is used as it is.
 */

/** Which facts of a decision came from the directory, as the decision log records them (`details.directory`). */
export interface DirectorySources {
  readonly principal?: {
    /** The roles decided with: the directory's, the request's, or both (its roles precedence). */
    readonly roles: 'directory' | 'request' | 'merge';
    /** The roles the request claimed that were not granted (only where the directory's roles win). */
    readonly ignoredRoles?: readonly string[];
    /** The attributes taken from the directory. */
    readonly attributes: readonly string[];
    /** Of those, the ones the request also sent, whose value the directory's replaced. */
    readonly overridden?: readonly string[];
  };
  readonly resource?: {
    readonly attributes: readonly string[];
    readonly overridden?: readonly string[];
  };
}

/**
 * The request's attributes completed with the entry's: the directory's value wins unless
 * the attribute is one where the request does and it sent one. The directory's own
 * frozen object, not a copy, whenever the request sends nothing the directory's
 * values would not replace (nothing at all, or only attributes the directory defines
 * and wins on).
 */
function mergedAttributes(sent: Attributes, keys: readonly string[], own: Attributes, precedence: DirectoryPrecedence): Attributes {
  if (keys.length === 0) return sent;
  const requestWins = precedence.requestWins;
  let covered = true;
  for (const key in sent) {
    if (!Object.hasOwn(own, key) || (requestWins.size > 0 && requestWins.has(key))) {
      covered = false;
      break;
    }
  }
  if (covered) return own;
  let out: Record<string, AttributeValue> | null = null;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (requestWins.size > 0 && requestWins.has(key) && key in sent) continue;
    out ??= { ...sent };
    out[key] = own[key]!;
  }
  // Every attribute the directory defines is one the request sent and wins on: the request's, as sent.
  return out ?? sent;
}

function mergedRoles(sent: readonly string[], own: readonly string[], precedence: DirectoryPrecedence): readonly string[] {
  switch (precedence.roles) {
    case 'directory':
      return own;
    case 'request':
      return sent.length > 0 ? sent : own;
    case 'merge': {
      if (sent.length === 0) return own;
      if (own.length === 0) return sent;
      const out = [...own];
      for (const role of sent) if (!own.includes(role)) out.push(role);
      return out;
    }
  }
}

/** The principal decided with: the directory's frozen one when it alone decides, the request's when the directory changes nothing, else a new one. */
function completedPrincipal(sent: Principal, entry: DirectoryPrincipal, precedence: DirectoryPrecedence): Principal {
  const roles = mergedRoles(sent.roles, entry.roles, precedence);
  const attributes = mergedAttributes(sent.attributes, entry.keys, entry.attributes, precedence);
  if (roles === entry.roles && attributes === entry.attributes) return entry.asPrincipal;
  if (roles === sent.roles && attributes === sent.attributes) return sent;
  return { id: sent.id, roles, attributes };
}

function completedResource(sent: Resource, entry: DirectoryResource, precedence: DirectoryPrecedence): Resource {
  const attributes = mergedAttributes(sent.attributes, entry.keys, entry.attributes, precedence);
  if (attributes === entry.attributes) return entry.asResource;
  if (attributes === sent.attributes) return sent;
  return { type: sent.type, id: sent.id, attributes };
}

/**
 * The request as it is decided: completed from the directories when it names a
 * principal (by id) or a resource (by type and id) they list; else the request
 * itself. Two map lookups when the directories are not empty, none when they are;
 * at most one new request, principal and resource object.
 */
export function completeRequest(policySet: PolicySet, request: DecisionRequest): DecisionRequest {
  const directory = policySet.directory;
  if (directory.empty) return request;
  const principal = directory.principals.get(request.principal.id);
  const resource = directory.resources.get(request.resource.type)?.get(request.resource.id);
  if (principal === undefined && resource === undefined) return request;
  const completedP = principal === undefined ? request.principal : completedPrincipal(request.principal, principal, directory.principalPrecedence);
  const completedR = resource === undefined ? request.resource : completedResource(request.resource, resource, directory.resourcePrecedence);
  if (completedP === request.principal && completedR === request.resource) return request;
  return { principal: completedP, action: request.action, resource: completedR, context: request.context };
}

/**
 * Why a request must not be decided as sent: it names a principal or resource that
 * the directories list under another spelling (`LEO` for `leo`, `credit-risk-v2 ` for
 * `credit-risk-v2`). Decided as sent it would go without the directory's facts (a
 * contractor's `restricted` model without `restricted`, a principal without the roles
 * the directory grants instead of the ones it claims), while whatever acts on the
 * decision may read the id leniently and act on the listed one. Null when the request
 * names either as listed, or nothing a directory entry folds to.
 */
export function spelledOtherwise(policySet: PolicySet, request: DecisionRequest): string | null {
  const directory = policySet.directory;
  if (directory.empty) return null;
  const principal = directory.principalSpelledOtherwise(request.principal.id);
  if (principal !== undefined) return otherSpelling('principal', request.principal.id, principal);
  const resource = directory.resourceSpelledOtherwise(request.resource.type, request.resource.id);
  if (resource !== undefined) return otherSpelling(request.resource.type, request.resource.id, resource);
  return null;
}

function otherSpelling(what: string, sent: string, listed: string): string {
  return `the ${what} ${JSON.stringify(sent)} differs from the directory's ${JSON.stringify(listed)} only in case, spacing or Unicode form: whatever reads it leniently would act on ${JSON.stringify(listed)}, decided without its directory facts; send the id as the directory spells it`;
}

function overriddenKeys(sent: Attributes, keys: readonly string[], precedence: DirectoryPrecedence): string[] {
  return keys.filter((key) => key in sent && !precedence.requestWins.has(key));
}

function fromDirectory(sent: Attributes, keys: readonly string[], precedence: DirectoryPrecedence): string[] {
  return keys.filter((key) => !(precedence.requestWins.has(key) && key in sent));
}

/**
 * Which facts of `sent` (the request as the caller sent it) the directories
 * supplied or replaced; null when they played no part. Worked out only for the
 * decision log, after the decision (off the engine's path).
 */
export function directorySources(policySet: PolicySet, sent: DecisionRequest): DirectorySources | null {
  const directory = policySet.directory;
  if (directory.empty) return null;
  const principal = directory.principal(sent.principal.id);
  const resource = directory.resource(sent.resource.type, sent.resource.id);
  if (principal === undefined && resource === undefined) return null;
  const sources: { principal?: DirectorySources['principal']; resource?: DirectorySources['resource'] } = {};
  if (principal !== undefined) {
    const precedence = directory.principalPrecedence;
    const roles = precedence.roles === 'request' && sent.principal.roles.length === 0 ? 'directory' : precedence.roles;
    const ignoredRoles = roles === 'directory' ? sent.principal.roles.filter((role) => !principal.roles.includes(role)) : [];
    const overridden = overriddenKeys(sent.principal.attributes, principal.keys, precedence);
    sources.principal = {
      roles,
      ...(ignoredRoles.length > 0 ? { ignoredRoles } : {}),
      attributes: fromDirectory(sent.principal.attributes, principal.keys, precedence),
      ...(overridden.length > 0 ? { overridden } : {}),
    };
  }
  if (resource !== undefined) {
    const precedence = directory.resourcePrecedence;
    const overridden = overriddenKeys(sent.resource.attributes, resource.keys, precedence);
    sources.resource = { attributes: fromDirectory(sent.resource.attributes, resource.keys, precedence), ...(overridden.length > 0 ? { overridden } : {}) };
  }
  return sources;
}
