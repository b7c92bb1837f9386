import { mergedRoles, type DirectoryPrecedence } from '../policy/directory.js';
import type { PolicySet } from '../policy/policy-set.js';
import type { AttributeValue, Attributes, DecisionRequest } from '../types.js';

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
    /** What the request itself sent where the directory's facts replaced it: enough to rebuild the request as sent (replay). */
    readonly sent: SentPrincipalFacts;
  };
  readonly resource?: {
    readonly attributes: readonly string[];
    readonly overridden?: readonly string[];
    readonly sent: SentFacts;
  };
}

/**
 * The request's own facts that completing it replaced: the values of the attributes
 * listed `overridden`. Always present (empty when nothing was replaced), so a reader
 * can tell a row carrying it from one written before it was recorded.
 */
export interface SentFacts {
  readonly attributes?: Attributes;
}

export interface SentPrincipalFacts extends SentFacts {
  /** The roles the request sent, when they differ from the roles decided with. */
  readonly roles?: readonly string[];
}

/**
 * The request as it is decided: completed from the directories when it names a
 * principal (by id) or a resource (by type and id) they list; else the request
 * itself (see Directory.complete).
 */
export function completeRequest(policySet: PolicySet, request: DecisionRequest): DecisionRequest {
  return policySet.directory.complete(request);
}

/** C0 and C1 control characters and DEL: never part of a name, and read differently by different readers. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Why a request must not be decided as sent, or null when it may:
 * - its principal id, action, resource type or resource id holds a control character
 *   (`leo\u0000`): code that reads C strings, or strips such characters, acts on `leo`,
 *   while the rules and the directories see another name;
 * - it names an action or resource type the policies name under another spelling
 *   (`DELETE` for `delete`, `Model` for `model`): only the rules for every action or
 *   type would be asked, so a deny written for `delete` would let `DELETE` through;
 * - it names a principal or resource that the directories list under another spelling
 *   (`LEO` for `leo`, `credit-risk-v2 ` for `credit-risk-v2`): decided as sent it would go
 *   without the directory's facts (a contractor's `restricted` model without
 *   `restricted`, a principal without the roles the directory grants instead of the ones
 *   it claims).
 * In each case whatever acts on the decision may read the name leniently and act on
 * the one the policies meant.
 */
export function spelledOtherwise(policySet: PolicySet, request: DecisionRequest): string | null {
  const control = controlCharacterIn(request);
  if (control !== null) return control;
  const action = policySet.actionSpelledOtherwise(request.action);
  if (action !== undefined) return otherName('action', request.action, action);
  const type = policySet.typeSpelledOtherwise(request.resource.type);
  if (type !== undefined) return otherName('resource type', request.resource.type, type);
  const directory = policySet.directory;
  if (directory.empty) return null;
  const principal = directory.principalSpelledOtherwise(request.principal.id);
  if (principal !== undefined) return otherSpelling('principal', request.principal.id, principal);
  const resource = directory.resourceSpelledOtherwise(request.resource.type, request.resource.id);
  if (resource !== undefined) return otherSpelling(request.resource.type, request.resource.id, resource);
  return null;
}

function controlCharacterIn(request: DecisionRequest): string | null {
  // On every decision: a scan of the four names, and nothing built unless one holds a control character.
  if (!hasControl(request.principal.id) && !hasControl(request.action) && !hasControl(request.resource.type) && !hasControl(request.resource.id)) return null;
  const named: ReadonlyArray<readonly [string, string]> = [
    ['principal.id', request.principal.id],
    ['action', request.action],
    ['resource.type', request.resource.type],
    ['resource.id', request.resource.id],
  ];
  for (const [field, value] of named) {
    const found = CONTROL.exec(value);
    if (found === null) continue;
    const code = `U+${found[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
    return `${field} ${JSON.stringify(value)} holds a control character (${code}): whatever reads it as a C string or strips such characters would act on another name than the one decided; send ids, actions and types without control characters`;
  }
  return null;
}

/** Whether `text` holds a character of CONTROL. */
function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return true;
  }
  return false;
}

function otherSpelling(what: string, sent: string, listed: string): string {
  return `the ${what} ${JSON.stringify(sent)} differs from the directory's ${JSON.stringify(listed)} only in case, spacing or Unicode form: whatever reads it leniently would act on ${JSON.stringify(listed)}, decided without its directory facts; send the id as the directory spells it`;
}

function otherName(what: 'action' | 'resource type', sent: string, named: string): string {
  const every = what === 'action' ? 'every action' : 'every type';
  return `the ${what} ${JSON.stringify(sent)} differs from ${JSON.stringify(named)}, which the policies name, only in case, spacing or Unicode form: only the rules for ${every} would be asked, while whatever reads it leniently would act on ${JSON.stringify(named)}; send the ${what} as the policies spell it`;
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
    const decidedRoles = mergedRoles(sent.principal.roles, principal.roles, precedence);
    sources.principal = {
      roles,
      ...(ignoredRoles.length > 0 ? { ignoredRoles } : {}),
      attributes: fromDirectory(sent.principal.attributes, principal.keys, precedence),
      ...(overridden.length > 0 ? { overridden } : {}),
      sent: {
        ...(sameList(decidedRoles, sent.principal.roles) ? {} : { roles: sent.principal.roles }),
        ...replacedValues(sent.principal.attributes, overridden),
      },
    };
  }
  if (resource !== undefined) {
    const precedence = directory.resourcePrecedence;
    const overridden = overriddenKeys(sent.resource.attributes, resource.keys, precedence);
    sources.resource = {
      attributes: fromDirectory(sent.resource.attributes, resource.keys, precedence),
      ...(overridden.length > 0 ? { overridden } : {}),
      sent: replacedValues(sent.resource.attributes, overridden),
    };
  }
  return sources;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item, i) => item === b[i]);
}

/** The sent values of the attributes the directory overrode, as `SentFacts`. */
function replacedValues(sent: Attributes, overridden: readonly string[]): SentFacts {
  if (overridden.length === 0) return {};
  const attributes: Record<string, AttributeValue> = {};
  for (const key of overridden) attributes[key] = sent[key]!;
  return { attributes };
}
