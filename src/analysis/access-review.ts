import { completeRequest } from '../engine/complete.js';
import { matchesStatically, runCondition } from '../engine/evaluate.js';
import type { CompiledRule, PolicySet } from '../policy/policy-set.js';
import type { DecisionRequest } from '../types.js';

/**
 * The access review: who can do what on which resource, and by which rule or role
 * grant, for every principal and resource of the policy set's directories and every
 * action the policies name for the resource's type. Each (principal, action,
 * resource) is decided as a request naming them with no context would be; a rule
 * whose condition reads `context` cannot be decided without a request, so a grant
 * that hangs on one is reported as conditional, with the condition, never guessed.
 */

export interface AccessGrant {
  readonly principal: string;
  readonly action: string;
  readonly resourceType: string;
  readonly resourceId: string;
  /** `allowed`: whatever the context; `conditional`: depends on the request's context (see `conditions`). */
  readonly access: 'allowed' | 'conditional';
  /** The allow rules that grant it (rule ids; a role grant is `role:<role>:<id>`). */
  readonly rules: readonly string[];
  /** For role grants: the role the principal holds that grants it, and the granting role when inherited (`analyst → viewer`). */
  readonly via: readonly string[];
  /** The conditions on context it depends on: `<rule id>: <condition>`, denies included. */
  readonly conditions: readonly string[];
}

export interface AccessReviewFilter {
  readonly principal?: string;
  readonly resource?: { readonly type: string; readonly id: string };
  readonly action?: string;
}

const readsContext = (rule: CompiledRule): boolean =>
  (rule.conditionSource !== null && /\bcontext\b/.test(rule.conditionSource)) || rule.matchers.some((m) => m.label.startsWith('context.'));

/** What a context-dependent rule asks of the context: its context matchers and its condition, as written. */
function contextCondition(rule: CompiledRule): string {
  const parts = rule.matchers.filter((m) => m.label.startsWith('context.')).map((m) => `${m.label} ${m.expected}`);
  if (rule.conditionSource !== null) parts.push(rule.conditionSource);
  return parts.join(' && ');
}

/** The rule's principal and resource parts hold (its context matchers and condition aside). */
function matchesApartFromContext(rule: CompiledRule, request: DecisionRequest): boolean {
  return matchesStatically({ ...rule, matchers: rule.matchers.filter((m) => !m.label.startsWith('context.')) }, request);
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
  const conditional: CompiledRule[] = [];
  for (const rule of set.candidates(type, action)) {
    if (readsContext(rule)) {
      if (matchesApartFromContext(rule, request)) conditional.push(rule);
      continue;
    }
    if (!matchesStatically(rule, request)) continue;
    const outcome = runCondition(rule, request);
    if (rule.effect === 'DENY' && outcome !== false) return null;
    if (rule.effect === 'ALLOW' && outcome === true) allows.push(rule);
  }
  const conditionalAllows = conditional.filter((r) => r.effect === 'ALLOW');
  const conditionalDenies = conditional.filter((r) => r.effect === 'DENY');
  const granting = allows.length > 0 ? allows : conditionalAllows;
  if (granting.length === 0) return null;
  const access = allows.length > 0 && conditionalDenies.length === 0 ? 'allowed' : 'conditional';
  const conditions = access === 'allowed' ? [] : [...(allows.length > 0 ? [] : conditionalAllows), ...conditionalDenies].map((r) => `${r.effect === 'DENY' ? 'unless ' : ''}${r.id}: ${contextCondition(r)}`);
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
