import type { PolicySet } from '../policy/policy-set.js';
import type { AttributeValue, Attributes, DecisionRequest } from '../types.js';

/**
 * Undoing what a directory filled in. The decision log records a request as it was
 * decided (the directory's roles and attributes in), and `details.directory` says
 * which facts came from the directory and, since it carries `sent`, what the request
 * itself had sent in their place. Replay rebuilds the request as sent from the two,
 * so each set it asks completes it with its own directory, as the server would: a
 * candidate that drops a principal from its directory, or lets the request's roles
 * win, is asked with the roles and attributes the caller really sent.
 *
 * Rows written before `sent` was recorded lost some of it: the values of `overridden`
 * attributes, and the roles sent wherever the directory's roles won or were merged.
 * Such a row is still replayed exactly when every set asked replaces those facts
 * anyway (the same principal or resource listed, defining those attributes, with the
 * directory's precedence); otherwise it is not replayable, never decided on guesses.
 */

/** What an old row's directory facts lost: needed by a set only if its directory does not replace them. */
export interface LostFacts {
  /** The roles the request sent are unknown. */
  readonly roles: boolean;
  /** Principal attributes the request sent, values unknown. */
  readonly principalAttributes: readonly string[];
  /** Resource attributes the request sent, values unknown; of the resource the row recorded. */
  readonly resourceAttributes: readonly string[];
}

export type AsSent =
  | { readonly kind: 'sent'; readonly request: DecisionRequest; readonly lost: LostFacts | null }
  | { readonly kind: 'unreadable' };

const UNREADABLE: AsSent = { kind: 'unreadable' };

/**
 * The request as its caller sent it, from the request recorded and the row's
 * `details.directory` (`directory`, parsed; undefined when the row has none).
 * `lost` names what a row written before `sent` was recorded cannot tell (null: nothing).
 */
export function requestAsSent(recorded: DecisionRequest, directory: unknown): AsSent {
  if (directory === undefined) return { kind: 'sent', request: recorded, lost: null };
  if (!isObject(directory)) return UNREADABLE;
  let request = recorded;
  let lostRoles = false;
  let lostPrincipal: readonly string[] = [];
  let lostResource: readonly string[] = [];
  if (directory.principal !== undefined) {
    const facts = partFacts(directory.principal);
    if (facts === null) return UNREADABLE;
    const part = directory.principal as Record<string, unknown>;
    const recordedRoles = recorded.principal.roles;
    let roles: readonly string[];
    if (facts.sent !== null) {
      const sentRoles = facts.sent.roles;
      if (sentRoles !== undefined && !(Array.isArray(sentRoles) && sentRoles.every((r) => typeof r === 'string'))) return UNREADABLE;
      roles = (sentRoles as readonly string[] | undefined) ?? recordedRoles;
    } else {
      const ignored = part.ignoredRoles ?? [];
      if (!Array.isArray(ignored) || !ignored.every((r) => typeof r === 'string')) return UNREADABLE;
      // The request's roles were used as sent (`request`); with `directory` and no roles of the directory's own, they were exactly the ignored ones.
      if (part.roles === 'request') roles = recordedRoles;
      else if (part.roles === 'directory' && recordedRoles.length === 0) roles = ignored as string[];
      else {
        roles = ignored as string[];
        lostRoles = true;
      }
    }
    const attributes = undone(recorded.principal.attributes, facts);
    if (facts.sent === null) lostPrincipal = facts.overridden;
    request = { ...request, principal: { id: recorded.principal.id, roles, attributes } };
  }
  if (directory.resource !== undefined) {
    const facts = partFacts(directory.resource);
    if (facts === null) return UNREADABLE;
    if (facts.sent === null) lostResource = facts.overridden;
    request = { ...request, resource: { ...recorded.resource, attributes: undone(recorded.resource.attributes, facts) } };
  }
  const lost = lostRoles || lostPrincipal.length > 0 || lostResource.length > 0 ? { roles: lostRoles, principalAttributes: lostPrincipal, resourceAttributes: lostResource } : null;
  return { kind: 'sent', request, lost };
}

/**
 * Whether `set`, asked `question` (the request as sent, or a gateway request routed
 * again), would read a fact `lost` says is unknown: its directory does not replace it.
 * `recordedResource` is the resource the row recorded, whose lost attributes they are.
 */
export function needsLostFacts(set: PolicySet, question: DecisionRequest, lost: LostFacts, recordedResource: { readonly type: string; readonly id: string }): boolean {
  const directory = set.directory;
  if (lost.roles || lost.principalAttributes.length > 0) {
    const entry = directory.principal(question.principal.id);
    if (entry === undefined) return true;
    const precedence = directory.principalPrecedence;
    if (lost.roles && precedence.roles !== 'directory') return true;
    if (lost.principalAttributes.some((key) => !Object.hasOwn(entry.attributes, key) || precedence.requestWins.has(key))) return true;
  }
  if (lost.resourceAttributes.length > 0) {
    if (question.resource.type !== recordedResource.type || question.resource.id !== recordedResource.id) return true;
    const entry = directory.resource(question.resource.type, question.resource.id);
    if (entry === undefined) return true;
    const precedence = directory.resourcePrecedence;
    if (lost.resourceAttributes.some((key) => !Object.hasOwn(entry.attributes, key) || precedence.requestWins.has(key))) return true;
  }
  return false;
}

interface PartFacts {
  /** The attributes the directory supplied. */
  readonly fromDirectory: readonly string[];
  /** Of those, the ones the request had sent too. */
  readonly overridden: readonly string[];
  /** `sent`, or null on a row written before it was recorded. */
  readonly sent: { readonly roles?: unknown; readonly attributes: Attributes } | null;
}

/** One part (`principal`, `resource`) of `details.directory`, checked; null when it is not what the server writes. */
function partFacts(part: unknown): PartFacts | null {
  if (!isObject(part)) return null;
  const fromDirectory = part.attributes;
  const overridden = part.overridden ?? [];
  if (!isStringList(fromDirectory) || !isStringList(overridden)) return null;
  if (part.sent === undefined) return { fromDirectory, overridden, sent: null };
  const sent = part.sent;
  if (!isObject(sent)) return null;
  const attributes = sent.attributes ?? {};
  if (!isObject(attributes)) return null;
  // Every overridden attribute's sent value is recorded; a row that says otherwise was not written by the server.
  if (!overridden.every((key) => Object.hasOwn(attributes, key))) return null;
  return { fromDirectory, overridden, sent: { roles: sent.roles, attributes: attributes as Attributes } };
}

/** The attributes as sent: without those the directory supplied, with the values it replaced (unknown ones left out). */
function undone(recorded: Attributes, facts: PartFacts): Attributes {
  if (facts.fromDirectory.length === 0) return recorded;
  const out: Record<string, AttributeValue> = {};
  const supplied = new Set(facts.fromDirectory);
  for (const key of Object.keys(recorded)) if (!supplied.has(key)) out[key] = recorded[key]!;
  if (facts.sent !== null) for (const key of facts.overridden) out[key] = facts.sent.attributes[key]!;
  return out;
}

function isStringList(value: unknown): value is readonly string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
