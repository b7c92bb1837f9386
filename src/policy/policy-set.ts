import type { Effect } from '../types.js';
import type { Condition } from './condition.js';
import type { CompiledLimit } from './limits.js';
import type { AttributeMatcher } from './matcher.js';
import type { StageRun } from './pipeline.js';
import type { RouteTable } from './routes.js';
import { Directory } from './directory.js';

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
  /** `principal.notRoles`: every role whose holder holds one of them, inheritance included; null when none are named. */
  readonly excludedHolders: ReadonlySet<string> | null;
  /** `principal.notRoles` as written; null when none are named. */
  readonly excludedRoles: readonly string[] | null;
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

/** Rules by action (which may be the wildcard), each list in policy-set order. */
type ByAction = ReadonlyMap<string, readonly CompiledRule[]>;

/**
 * The rules of one document, filed by resource type (null: any type) and action:
 * what a policy set's index is built from. A document that did not change keeps
 * its part, and the lookup tables of the types only unchanged parts touch are
 * taken over from the previous set.
 */
export interface IndexPart {
  /** As written. */
  readonly rules: readonly CompiledRule[];
  readonly byType: ReadonlyMap<string, ByAction>;
}

const WILDCARD = '*';
const NONE: readonly CompiledRule[] = Object.freeze([]);

/** Files one document's rules for the index. */
export function indexPart(rules: readonly CompiledRule[]): IndexPart {
  const byType = new Map<string, Map<string, CompiledRule[]>>();
  for (const rule of [...rules].sort(compareRules)) {
    for (const type of rule.resourceTypes ?? [WILDCARD]) {
      let byAction = byType.get(type);
      if (!byAction) byType.set(type, (byAction = new Map()));
      for (const action of rule.actions) {
        let list = byAction.get(action);
        if (!list) byAction.set(action, (list = []));
        list.push(rule);
      }
    }
  }
  for (const byAction of byType.values()) for (const list of byAction.values()) Object.freeze(list);
  return { rules: Object.freeze([...rules]), byType };
}

interface RuleIndex {
  readonly byType: ReadonlyMap<string, ActionTable>;
  readonly anyType: ActionTable;
  /** For each type, the rules of the parts that file rules under it: what its table was built from. */
  readonly sources: ReadonlyMap<string, readonly ByAction[]>;
  /** The parts the index was built from. */
  readonly parts: readonly IndexPart[];
}

/**
 * An immutable, indexed set of compiled rules. Lookup by resource type and action
 * returns only the rules that could apply, denies first, so the cost of a decision
 * does not grow with rules written for other types or actions.
 */
export class PolicySet {
  readonly version: string;
  /** Every rule, document by document as loaded. */
  readonly rules: readonly CompiledRule[];
  readonly roles: ReadonlyMap<string, CompiledRole>;
  /** HTTP routes for the gateway endpoints (routes files); empty when there are none. */
  readonly routes: RouteTable;
  /** Rate limits (limits files), in the order written; empty when there are none. */
  readonly limits: readonly CompiledLimit[];
  /** The principals and resources files, indexed; empty when there are none. */
  readonly directory: Directory;
  private readonly index: RuleIndex;

  private constructor(version: string, rules: readonly CompiledRule[], roles: ReadonlyMap<string, CompiledRole>, routes: RouteTable, index: RuleIndex, limits: readonly CompiledLimit[], directory: Directory) {
    this.version = version;
    this.directory = directory;
    this.rules = rules;
    this.roles = roles;
    this.routes = routes;
    this.limits = limits;
    this.index = index;
    Object.freeze(this);
  }

  /**
   * Builds a set from the index parts of its documents, pausing between steps.
   * With `previous`, only the lookup tables of the resource types that changed
   * parts file rules under are built again; the others are taken over, so a change
   * to one document rebuilds the tables of the types it touches.
   */
  static *build(version: string, parts: readonly IndexPart[], roles: ReadonlyMap<string, CompiledRole>, routes: RouteTable, previous: PolicySet | null = null, limits: readonly CompiledLimit[] = [], directory: Directory = Directory.EMPTY): StageRun<PolicySet> {
    const rules: CompiledRule[] = [];
    for (const part of parts) for (let i = 0; i < part.rules.length; i++) rules.push(part.rules[i]!);
    Object.freeze(rules);
    const index = yield* buildIndex(parts, previous?.index ?? null);
    return new PolicySet(version, rules, roles, routes, index, limits, directory);
  }

  /**
   * The rules that may apply to this resource type and action, denies first, then by id.
   * A rule with resource types is offered only for those types, so evaluation need not test them.
   */
  candidates(resourceType: string, action: string): readonly CompiledRule[] {
    const table = this.index.byType.get(resourceType) ?? this.index.anyType;
    return table.byAction.get(action) ?? table.anyAction;
  }
}

/** Policy-set order: denies first, then by id. */
export function compareRules(a: CompiledRule, b: CompiledRule): number {
  if (a.effect !== b.effect) return a.effect === 'DENY' ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Two sorted lists as one; a rule in both (the same object) appears once. */
function mergeTwo(a: readonly CompiledRule[], b: readonly CompiledRule[]): CompiledRule[] {
  const out: CompiledRule[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x === y) {
      out.push(x);
      i++;
      j++;
    } else if (compareRules(x, y) <= 0) {
      out.push(x);
      i++;
    } else {
      out.push(y);
      j++;
    }
  }
  while (i < a.length) out.push(a[i++]!);
  while (j < b.length) out.push(b[j++]!);
  return out;
}

/** The candidates in sorted lists, merged (a list alone is used as it is). */
function merged(lists: readonly (readonly CompiledRule[] | undefined)[]): readonly CompiledRule[] {
  let out: readonly CompiledRule[] | null = null;
  for (const list of lists) {
    if (list === undefined || list.length === 0) continue;
    out = out === null ? list : mergeTwo(out, list);
  }
  return out === null ? NONE : Object.freeze(out);
}

/** The table of one type from the rules filed under it and under any type. */
function tableFor(own: readonly ByAction[], any: readonly ByAction[]): ActionTable {
  const actions = new Set<string>();
  for (const byAction of [...own, ...any]) for (const action of byAction.keys()) actions.add(action);
  actions.delete(WILDCARD);
  const listsFor = (action: string): (readonly CompiledRule[] | undefined)[] => {
    const lists: (readonly CompiledRule[] | undefined)[] = [];
    for (const byAction of [...own, ...any]) lists.push(byAction.get(action), byAction.get(WILDCARD));
    return lists;
  };
  const byAction = new Map<string, readonly CompiledRule[]>();
  for (const action of actions) byAction.set(action, merged(listsFor(action)));
  return { byAction, anyAction: merged([...own, ...any].map((b) => b.get(WILDCARD))) };
}

/** For each type, the rules the parts file under it, in part order. */
function sourcesOf(parts: readonly IndexPart[], types: Iterable<string> | null): Map<string, ByAction[]> {
  const sources = new Map<string, ByAction[]>();
  if (types === null) {
    for (const part of parts) {
      for (const [type, byAction] of part.byType) {
        let list = sources.get(type);
        if (!list) sources.set(type, (list = []));
        list.push(byAction);
      }
    }
    return sources;
  }
  for (const type of types) {
    const list: ByAction[] = [];
    for (const part of parts) {
      const byAction = part.byType.get(type);
      if (byAction) list.push(byAction);
    }
    sources.set(type, list);
  }
  return sources;
}

/**
 * The index, built in full, or from the previous set's by rebuilding only the
 * tables of the types that parts added or removed since file rules under (when
 * no part filing rules under any type changed: those rules are in every table).
 */
function* buildIndex(parts: readonly IndexPart[], previous: RuleIndex | null): StageRun<RuleIndex> {
  const before = new Set(previous?.parts ?? []);
  const now = new Set(parts);
  const changed = [...parts.filter((p) => !before.has(p)), ...(previous?.parts ?? []).filter((p) => !now.has(p))];
  if (previous === null || changed.some((part) => part.byType.has(WILDCARD))) return yield* buildFullIndex(parts);
  const touched = new Set<string>();
  for (const part of changed) for (const type of part.byType.keys()) touched.add(type);
  const fresh = sourcesOf(parts, touched);
  const any = previous.sources.get(WILDCARD) ?? [];
  // Copies of the previous maps (one table each, not one object per type), then the touched types rebuilt.
  const sources = new Map(previous.sources);
  const byType = new Map(previous.byType);
  let built = 0;
  for (const [type, own] of fresh) {
    if (own.length === 0) {
      sources.delete(type);
      byType.delete(type);
      continue;
    }
    sources.set(type, own);
    byType.set(type, tableFor(own, any));
    if (++built % 8 === 0) yield;
  }
  return { byType, anyType: previous.anyType, sources, parts };
}

function* buildFullIndex(parts: readonly IndexPart[]): StageRun<RuleIndex> {
  const sources = sourcesOf(parts, null);
  const any = sources.get(WILDCARD) ?? [];
  const byType = new Map<string, ActionTable>();
  let built = 0;
  for (const [type, own] of sources) {
    if (type === WILDCARD) continue;
    byType.set(type, tableFor(own, any));
    if (++built % 8 === 0) yield;
  }
  return { byType, anyType: tableFor([], any), sources, parts };
}
