import type { Effect } from '../types.js';
import type { Condition } from './condition.js';
import type { AttributeMatcher } from './matcher.js';
import { RouteTable } from './routes.js';

/** A rule ready to evaluate: every string parsed, every pattern and condition compiled. */
export interface CompiledRule {
  readonly id: string;
  readonly effect: Effect;
  readonly description: string | null;
  /** Where the rule was written, for explanations. */
  readonly file: string;
  readonly line: number;
  /** `rule` for rules files; `role` for the grants a role's permissions compile into. */
  readonly origin: 'rule' | 'role';
  readonly actions: readonly string[];
  /** null: any resource type. */
  readonly resourceTypes: readonly string[] | null;
  /** The roles as written; null when the rule names none. */
  readonly roles: readonly string[] | null;
  /** Every role whose holder satisfies `roles`, inheritance included. */
  readonly roleHolders: ReadonlySet<string> | null;
  readonly matchers: readonly AttributeMatcher[];
  readonly condition: Condition | null;
  readonly conditionSource: string | null;
}

export interface CompiledRole {
  readonly name: string;
  readonly inherits: readonly string[];
  /** This role and every role it inherits from, transitively. */
  readonly effectiveRoles: readonly string[];
}

/** The candidate rules for one resource type, by action. */
interface ActionTable {
  readonly byAction: ReadonlyMap<string, readonly CompiledRule[]>;
  readonly anyAction: readonly CompiledRule[];
}

/**
 * An immutable, indexed set of compiled rules. Lookup by resource type and action
 * returns only the rules that could apply, denies first, so the cost of a decision
 * does not grow with rules written for other types or actions.
 */
export class PolicySet {
  readonly version: string;
  readonly rules: readonly CompiledRule[];
  readonly roles: ReadonlyMap<string, CompiledRole>;
  /** HTTP routes for the gateway endpoints (routes files); empty when there are none. */
  readonly routes: RouteTable;
  private readonly byType: ReadonlyMap<string, ActionTable>;
  private readonly anyType: ActionTable;

  constructor(version: string, rules: readonly CompiledRule[], roles: ReadonlyMap<string, CompiledRole>, routes: RouteTable = RouteTable.EMPTY) {
    this.version = version;
    this.rules = Object.freeze([...rules].sort(compareRules));
    this.roles = roles;
    this.routes = routes;
    const { byType, anyType } = buildIndex(this.rules);
    this.byType = byType;
    this.anyType = anyType;
    Object.freeze(this);
  }

  /**
   * The rules that may apply to this resource type and action, denies first, then by id.
   * A rule with resource types is offered only for those types, so evaluation need not test them.
   */
  candidates(resourceType: string, action: string): readonly CompiledRule[] {
    const table = this.byType.get(resourceType) ?? this.anyType;
    return table.byAction.get(action) ?? table.anyAction;
  }
}

function compareRules(a: CompiledRule, b: CompiledRule): number {
  if (a.effect !== b.effect) return a.effect === 'DENY' ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

const WILDCARD = '*';

function buildIndex(rules: readonly CompiledRule[]): { byType: Map<string, ActionTable>; anyType: ActionTable } {
  // buckets[type][action], where either may be the wildcard.
  const buckets = new Map<string, Map<string, CompiledRule[]>>();
  const add = (type: string, action: string, rule: CompiledRule): void => {
    let byAction = buckets.get(type);
    if (!byAction) buckets.set(type, (byAction = new Map()));
    let list = byAction.get(action);
    if (!list) byAction.set(action, (list = []));
    list.push(rule);
  };
  for (const rule of rules) {
    for (const type of rule.resourceTypes ?? [WILDCARD]) {
      for (const action of rule.actions) add(type, action, rule);
    }
  }
  const get = (type: string, action: string): readonly CompiledRule[] => buckets.get(type)?.get(action) ?? [];
  const merge = (...lists: (readonly CompiledRule[])[]): readonly CompiledRule[] =>
    Object.freeze([...new Set(lists.flat())].sort(compareRules));

  const wildcardActions = [...(buckets.get(WILDCARD)?.keys() ?? [])].filter((a) => a !== WILDCARD);
  const tableFor = (type: string): ActionTable => {
    const actions = new Set([...(buckets.get(type)?.keys() ?? []), ...wildcardActions]);
    actions.delete(WILDCARD);
    const byAction = new Map<string, readonly CompiledRule[]>();
    for (const action of actions) {
      byAction.set(action, merge(get(type, action), get(type, WILDCARD), get(WILDCARD, action), get(WILDCARD, WILDCARD)));
    }
    return { byAction, anyAction: merge(get(type, WILDCARD), get(WILDCARD, WILDCARD)) };
  };

  const byType = new Map<string, ActionTable>();
  for (const type of buckets.keys()) if (type !== WILDCARD) byType.set(type, tableFor(type));
  return { byType, anyType: tableFor(WILDCARD) };
}
