import { completeRequest } from '../engine/complete.js';
import { matchesStatically, runCondition } from '../engine/evaluate.js';
import { conditionReads } from './condition-reads.js';
import type { DirectoryPrecedence } from '../policy/directory.js';
import type { AttributeMatcher } from '../policy/matcher.js';
import type { CompiledRule, PolicySet } from '../policy/policy-set.js';
import type { DecisionRequest } from '../types.js';

/**
 * The access review: who can do what on which resource, and by which rule or role
 * grant, for every principal and resource of the policy set's directories and every
 * action the policies name for the resource's type. Each (principal, action,
 * resource) is decided as a request naming them with no context would be; a rule
 * that reads `context`, or a principal attribute the directory leaves to the request,
 * cannot be decided without a request, so a grant that hangs on one is reported as
 * conditional, with what it asks, never guessed. What a condition reads is asked of its
 * parsed expression with its named conditions put in (condition-reads.ts).
 */

export interface AccessGrant {
  readonly principal: string;
  readonly action: string;
  readonly resourceType: string;
  readonly resourceId: string;
  /** `allowed`: whatever the request sends; `conditional`: depends on its context or a principal attribute it supplies (see `conditions`). */
  readonly access: 'allowed' | 'conditional';
  /** The allow rules that grant it (rule ids; a role grant is `role:<role>:<id>`). */
  readonly rules: readonly string[];
  /** For role grants: the role the principal holds that grants it, and the granting role when inherited (`analyst → viewer`). */
  readonly via: readonly string[];
  /** The conditions on the request it depends on: `<rule id>: <condition>`, denies included. */
  readonly conditions: readonly string[];
}

export interface AccessReviewFilter {
  readonly principal?: string;
  readonly resource?: { readonly type: string; readonly id: string };
  readonly action?: string;
}

/** The condition as it runs: with its named conditions and constants put in. */
const conditionAsRun = (rule: CompiledRule): string | null => rule.conditionExpanded ?? rule.conditionSource;

const isContextMatcher = (matcher: AttributeMatcher): boolean => matcher.label.startsWith('context.');

/** The top-level principal attribute a matcher tests (`principal.attributes.labels.team` → `labels`), or null. */
function matchedPrincipalAttribute(matcher: AttributeMatcher): string | null {
  const [part, attributes, name] = matcher.label.split('.');
  return part === 'principal' && attributes === 'attributes' && name !== undefined ? name : null;
}

/**
 * What of a rule hangs on the request rather than on the directories: the matchers and
 * the condition that read its context, or a principal attribute the directory leaves to
 * the request (one the principal's entry does not define, or one whose `precedence` lets
 * the request's value win). An allow's matcher on such an attribute counts; a deny's does
 * not, since a request that leaves the attribute out leaves the deny out too, which the
 * review already takes as the deny not holding.
 */
interface RequestDependence {
  /** The matchers that read the request (their test is left to it). */
  readonly matchers: readonly AttributeMatcher[];
  /** The condition reads the request. */
  readonly condition: boolean;
}

function requestDependence(rule: CompiledRule, request: DecisionRequest, precedence: DirectoryPrecedence): RequestDependence | null {
  const fromRequest = (attribute: string): boolean => !Object.hasOwn(request.principal.attributes, attribute) || precedence.requestWins.has(attribute);
  const matchers = rule.matchers.filter((matcher) => {
    if (isContextMatcher(matcher)) return true;
    const attribute = rule.effect === 'ALLOW' ? matchedPrincipalAttribute(matcher) : null;
    return attribute !== null && fromRequest(attribute);
  });
  const text = conditionAsRun(rule);
  let condition = false;
  if (text !== null) {
    const reads = conditionReads(text);
    condition = reads.context || (reads.principalAttributes === 'all' ? true : [...reads.principalAttributes].some(fromRequest));
  }
  return matchers.length === 0 && !condition ? null : { matchers, condition };
}

/** What a request-dependent rule asks of the request: those matchers and its condition (named conditions put in). */
function requestCondition(rule: CompiledRule, dependence: RequestDependence): string {
  const parts = dependence.matchers.map((m) => `${m.label} ${m.expected}`);
  const text = conditionAsRun(rule);
  if (text !== null) parts.push(text);
  return parts.join(' && ');
}

/** The rule's other parts hold (the matchers left to the request and its condition aside). */
function matchesApartFromRequest(rule: CompiledRule, request: DecisionRequest, dependence: RequestDependence): boolean {
  return matchesStatically({ ...rule, matchers: rule.matchers.filter((m) => !dependence.matchers.includes(m)) }, request);
}

/** The role of the rule a principal's roles satisfy it by: `held` or `held → granting` when inherited. */
function viaRole(rule: CompiledRule, roles: readonly string[]): string | null {
  if (rule.roleHolders === null) return null;
  const held = roles.find((role) => rule.roleHolders!.has(role));
  if (held === undefined) return null;
  const granting = rule.origin === 'role' ? [rule.id.split(':')[1] ?? held] : (rule.roles ?? [held]);
  return granting.includes(held) ? held : `${held} → ${granting.join('|')}`;
}

/** The actions the allow rules and role grants name for a type (`*` aside), sorted. */
export function reviewActions(set: PolicySet, type: string): string[] {
  const actions = new Set<string>();
  for (const rule of set.rules) {
    if (rule.effect !== 'ALLOW' || (rule.resourceTypes !== null && !rule.resourceTypes.includes(type))) continue;
    for (const action of rule.actions) if (action !== '*') actions.add(action);
  }
  return [...actions].sort();
}

/** One grant, or null when the principal may not (whatever the context). */
export function reviewOne(set: PolicySet, principal: string, action: string, type: string, id: string): AccessGrant | null {
  const request: DecisionRequest = completeRequest(set, {
    principal: { id: principal, roles: [], attributes: {} },
    action,
    resource: { type, id, attributes: {} },
    context: { attributes: {} },
  });
  const allows: CompiledRule[] = [];
  const conditional: { readonly rule: CompiledRule; readonly dependence: RequestDependence }[] = [];
  for (const rule of set.candidates(type, action)) {
    const dependence = requestDependence(rule, request, set.directory.principalPrecedence);
    if (dependence !== null) {
      if (matchesApartFromRequest(rule, request, dependence)) conditional.push({ rule, dependence });
      continue;
    }
    if (!matchesStatically(rule, request)) continue;
    const outcome = runCondition(rule, request);
    if (rule.effect === 'DENY' && outcome !== false) return null;
    if (rule.effect === 'ALLOW' && outcome === true) allows.push(rule);
  }
  const conditionalAllows = conditional.filter((c) => c.rule.effect === 'ALLOW');
  const conditionalDenies = conditional.filter((c) => c.rule.effect === 'DENY');
  const granting = allows.length > 0 ? allows : conditionalAllows.map((c) => c.rule);
  if (granting.length === 0) return null;
  const access = allows.length > 0 && conditionalDenies.length === 0 ? 'allowed' : 'conditional';
  const conditions = access === 'allowed' ? [] : [...(allows.length > 0 ? [] : conditionalAllows), ...conditionalDenies].map((c) => `${c.rule.effect === 'DENY' ? 'unless ' : ''}${c.rule.id}: ${requestCondition(c.rule, c.dependence)}`);
  const via = [...new Set(granting.map((r) => viaRole(r, request.principal.roles)).filter((v): v is string => v !== null))];
  return { principal, action, resourceType: type, resourceId: id, access, rules: granting.map((r) => r.id).sort(), via, conditions };
}

/** Every grant over the directories (filtered), ordered by resource, principal, action. */
export function accessReview(set: PolicySet, filter: AccessReviewFilter = {}): AccessGrant[] {
  const grants: AccessGrant[] = [];
  const principals = filter.principal !== undefined ? [filter.principal] : [...set.directory.principals.keys()].sort();
  const types = filter.resource !== undefined ? [filter.resource.type] : [...set.directory.resources.keys()].sort();
  for (const type of types) {
    const ids = filter.resource !== undefined ? [filter.resource.id] : [...(set.directory.resources.get(type)?.keys() ?? [])].sort();
    const actions = filter.action !== undefined ? [filter.action] : reviewActions(set, type);
    for (const id of ids) {
      for (const principal of principals) {
        for (const action of actions) {
          const grant = reviewOne(set, principal, action, type, id);
          if (grant !== null) grants.push(grant);
        }
      }
    }
  }
  return grants;
}

export interface AccessReviewDiff {
  /** In the new review, not the old (or changed from conditional to allowed, or back: listed in both). */
  readonly added: readonly AccessGrant[];
  readonly removed: readonly AccessGrant[];
}

const grantKey = (g: AccessGrant): string => JSON.stringify([g.resourceType, g.resourceId, g.principal, g.action, g.access, g.rules, g.conditions]);

/** What changed between two reviews: grants gained and lost (a grant whose rules or conditions changed is both). */
export function diffReviews(before: readonly AccessGrant[], after: readonly AccessGrant[]): AccessReviewDiff {
  const old = new Set(before.map(grantKey));
  const now = new Set(after.map(grantKey));
  return { added: after.filter((g) => !old.has(grantKey(g))), removed: before.filter((g) => !now.has(grantKey(g))) };
}
