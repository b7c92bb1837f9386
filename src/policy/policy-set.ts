import type { Effect } from '../types.js';
import type { Condition } from './condition.js';
import type { CompiledLimit } from './limits.js';
import type { AttributeMatcher } from './matcher.js';
import type { AttributeSchemas, AttributeType } from './attribute-schema.js';
import { runToEnd, type StageRun } from './pipeline.js';
import type { RouteTable } from './routes.js';
import { Directory } from './directory.js';
import { foldedId } from '../folded-id.js';
import { SharedCompiled } from './shared-compiled.js';

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
  /**
   * Aligned with `matchers`: for a deny rule, the declared type of each attribute it matches on
   * that the attribute schema marks required (null elsewhere). A request where such an attribute
   * is absent or mistyped is denied by error rather than slipping past the deny. Null: none.
   */
  readonly guards?: readonly (AttributeType | null)[] | null;
  readonly condition: Condition | null;
  readonly conditionSource: string | null;
  /** The condition with its named conditions and constants put in, when it reads any (for explanations). */
  readonly conditionExpanded?: string | null;
}

export interface CompiledRole {
  readonly name: string;
  readonly inherits: readonly string[];
  /** This role and every role it inherits from, transitively. */
  readonly effectiveRoles: readonly string[];
}

/**
 * The candidate rules for one resource type, by action. A type's table lists only the
 * actions its own rules name: an action only rules for every type name is looked up in
 * the every-type table. (Listing every action in every type's table made 2,000 types
 * beside 10,000 every-type rules a table of 20 million lists, and a reload that ran
 * out of memory.)
 */
interface ActionTable {
  /** Each action the type's own rules name, with the rules for it and for every action, the type's own and every type's. */
  readonly byAction: ReadonlyMap<string, readonly CompiledRule[]>;
  /** The rules for every action, the type's own and every type's: an action no rule names gets these. */
  readonly anyAction: readonly CompiledRule[];
  /**
   * The type's own rules for every action, and the lists for actions only every-type
   * rules name, merged at their first check (at most LATE_LISTS_PER_TYPE); null when the
   * type has no rules of its own for every action (such an action then gets the every-type table's list).
   */
  readonly ownAnyAction: { readonly rules: readonly CompiledRule[]; readonly late: Map<string, readonly CompiledRule[]> } | null;
}

/**
 * How many lists a type with rules for every action keeps for actions only every-type
 * rules name. Beyond it the list is merged at each check: work, but bounded memory
 * whatever the policies or the requests name.
 */
const LATE_LISTS_PER_TYPE = 64;

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
  return runToEnd(indexPartInSlices(rules));
}

/** How many rules are sorted, merged or filed between pauses: a document (one role's permissions) may hold 100,000. */
const RULES_PER_PAUSE = 2048;
/** Action names gathered between two pauses (namedSpellings). */
const NAMES_PER_PAUSE = 4096;
/** Actions filed into one type's table between two pauses (tableFor): about a millisecond and a half. */
export const ACTIONS_PER_PAUSE = 512;

/** indexPart, pausing every RULES_PER_PAUSE rules. */
export function* indexPartInSlices(rules: readonly CompiledRule[]): StageRun<IndexPart> {
  const byType = new Map<string, Map<string, CompiledRule[]>>();
  const sorted = yield* sortedInSlices(rules, compareRules);
  for (let i = 0; i < sorted.length; i++) {
    if ((i + 1) % RULES_PER_PAUSE === 0) yield;
    const rule = sorted[i]!;
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

/** A sorted copy, made a run of RULES_PER_PAUSE at a time and merged pairwise (the same order Array.prototype.sort gives: both are stable). */
function* sortedInSlices<T>(items: readonly T[], compare: (a: T, b: T) => number): StageRun<T[]> {
  let from = items.slice();
  const n = from.length;
  if (n <= RULES_PER_PAUSE) return from.sort(compare);
  for (let start = 0; start < n; start += RULES_PER_PAUSE) {
    const run = from.slice(start, start + RULES_PER_PAUSE).sort(compare);
    for (let k = 0; k < run.length; k++) from[start + k] = run[k]!;
    yield;
  }
  let to = new Array<T>(n);
  let moved = 0;
  for (let width = RULES_PER_PAUSE; width < n; width *= 2) {
    for (let left = 0; left < n; left += 2 * width) {
      const middle = Math.min(left + width, n);
      const end = Math.min(left + 2 * width, n);
      let i = left;
      let j = middle;
      for (let k = left; k < end; k++) {
        // Ties go to the left run, keeping the merge stable.
        to[k] = j >= end || (i < middle && compare(from[i]!, from[j]!) <= 0) ? from[i++]! : from[j++]!;
        if (++moved % RULES_PER_PAUSE === 0) yield;
      }
    }
    [from, to] = [to, from];
  }
  return from;
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
  /** The typed attribute schemas (`kind: schema`); null when the set declares none. */
  readonly attributeSchemas: AttributeSchemas | null;
  /** The principals and resources files, indexed; empty when there are none. */
  readonly directory: Directory;
  private readonly index: RuleIndex;
  /** The actions the rules and limits name, and the resource types they and the directories name, with their folds. */
  private readonly names: NamedSpellings;

  private constructor(version: string, rules: readonly CompiledRule[], roles: ReadonlyMap<string, CompiledRole>, routes: RouteTable, index: RuleIndex, limits: readonly CompiledLimit[], schemas: AttributeSchemas | null, directory: Directory, names: NamedSpellings) {
    this.version = version;
    this.names = names;
    this.attributeSchemas = schemas;
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
  static *build(version: string, parts: readonly IndexPart[], roles: ReadonlyMap<string, CompiledRole>, routes: RouteTable, previous: PolicySet | null = null, limits: readonly CompiledLimit[] = [], schemas: AttributeSchemas | null = null, directory: Directory = Directory.EMPTY): StageRun<PolicySet> {
    const rules: CompiledRule[] = [];
    for (const part of parts) for (let i = 0; i < part.rules.length; i++) rules.push(part.rules[i]!);
    Object.freeze(rules);
    yield;
    const index = yield* buildIndex(parts, previous?.index ?? null);
    const names = yield* namedSpellings(parts, limits, directory);
    return new PolicySet(version, rules, roles, routes, index, limits, schemas, directory, names);
  }

  /**
   * The action the policies name that `action` is another spelling of (`DELETE`,
   * `delete ` or a fullwidth `ｄｅｌｅｔｅ` for `delete`), when they do not name `action`
   * itself; else undefined. Such an action is offered only the rules for every action,
   * so a deny written for `delete` would let `DELETE` through, while whatever acts on
   * the decision may read it leniently. One set lookup for an action the policies name.
   */
  actionSpelledOtherwise(action: string): string | undefined {
    return this.names.actions.has(action) ? undefined : this.names.actionFolds.get(foldedId(action));
  }

  /** The same for resource types (`Model` for `model`). */
  typeSpelledOtherwise(type: string): string | undefined {
    return this.names.types.has(type) ? undefined : this.names.typeFolds.get(foldedId(type));
  }

  /**
   * The rules that may apply to this resource type and action, denies first, then by id.
   * A rule with resource types is offered only for those types, so evaluation need not test them.
   */
  candidates(resourceType: string, action: string): readonly CompiledRule[] {
    const any = this.index.anyType;
    const table = this.index.byType.get(resourceType);
    if (table === undefined) return any.byAction.get(action) ?? any.anyAction;
    const own = table.byAction.get(action);
    if (own !== undefined) return own;
    const everyType = any.byAction.get(action);
    if (everyType === undefined) return table.anyAction;
    if (table.ownAnyAction === null) return everyType;
    return lateList(table.ownAnyAction, action, everyType);
  }
}

/** Names as the policies spell them, and by their folds (folded-id.ts). */
interface NamedSpellings {
  readonly actions: ReadonlySet<string>;
  readonly actionFolds: ReadonlyMap<string, string>;
  readonly types: ReadonlySet<string>;
  readonly typeFolds: ReadonlyMap<string, string>;
}

/** The actions and resource types named by the rules (from their index parts), the limits and the directories. */
function* namedSpellings(parts: readonly IndexPart[], limits: readonly CompiledLimit[], directory: Directory): StageRun<NamedSpellings> {
  const actions = new Set<string>();
  const types = new Set<string>();
  let named = 0;
  for (const part of parts) {
    for (const [type, byAction] of part.byType) {
      types.add(type);
      // A role granting each of 100,000 actions files them all under one type of one part.
      for (const action of byAction.keys()) {
        actions.add(action);
        if (++named % NAMES_PER_PAUSE === 0) yield;
      }
    }
    yield;
  }
  for (const limit of limits) {
    for (const action of limit.actions ?? []) actions.add(action);
    for (const type of limit.resourceTypes ?? []) types.add(type);
  }
  for (const type of directory.resources.keys()) types.add(type);
  actions.delete(WILDCARD);
  types.delete(WILDCARD);
  const actionFolds = yield* folds(actions);
  const typeFolds = yield* folds(types);
  return { actions, actionFolds, types, typeFolds };
}

// A set of 10,000 rules names thousands of types (3,332 in bench/reload.mjs's), whose folds took 1.4 ms in one
// go: each is folded once and kept for the loads that follow, and the names are gone through in slices.
const foldOf = new SharedCompiled<string>();

function* folds(names: ReadonlySet<string>): StageRun<Map<string, string>> {
  const byFold = new Map<string, string>();
  let done = 0;
  for (const name of names) {
    byFold.set(foldOf.get(name, () => foldedId(name)), name);
    if (++done % 512 === 0) yield;
  }
  return byFold;
}

/** Policy-set order: denies first, then by id. */
export function compareRules(a: CompiledRule, b: CompiledRule): number {
  if (a.effect !== b.effect) return a.effect === 'DENY' ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * The candidates in sorted lists, merged into one new list (a list alone is used as
 * it is); a rule in several lists (the same object) appears once. One pass over all
 * the lists, so a reload allocates one list per table entry, not one per list merged.
 */
function merged(lists: readonly (readonly CompiledRule[] | undefined)[]): readonly CompiledRule[] {
  const present: (readonly CompiledRule[])[] = [];
  for (const list of lists) if (list !== undefined && list.length > 0) present.push(list);
  if (present.length === 0) return NONE;
  if (present.length === 1) return present[0]!;
  const at = new Array<number>(present.length).fill(0);
  const out: CompiledRule[] = [];
  for (;;) {
    let next: CompiledRule | null = null;
    for (let k = 0; k < present.length; k++) {
      const rule = present[k]![at[k]!];
      if (rule !== undefined && (next === null || compareRules(rule, next) < 0)) next = rule;
    }
    if (next === null) return Object.freeze(out);
    out.push(next);
    for (let k = 0; k < present.length; k++) if (present[k]![at[k]!] === next) at[k]! += 1;
  }
}

/** The table of the rules filed under any type: every action they name, pausing every few hundred. */
function* everyTypeTable(any: readonly ByAction[]): StageRun<ActionTable> {
  // Each action with the lists that name it, so the work is the rules filed, not the actions times the documents.
  const byName = new Map<string, (readonly CompiledRule[])[]>();
  const forEveryAction: (readonly CompiledRule[])[] = [];
  for (const table of any) {
    for (const [action, list] of table) {
      if (action === WILDCARD) {
        forEveryAction.push(list);
        continue;
      }
      let lists = byName.get(action);
      if (!lists) byName.set(action, (lists = []));
      lists.push(list);
    }
  }
  const byAction = new Map<string, readonly CompiledRule[]>();
  for (const [action, lists] of byName) {
    byAction.set(action, merged(forEveryAction.length === 0 ? lists : [...lists, ...forEveryAction]));
    if (byAction.size % 256 === 0) yield;
  }
  return { byAction, anyAction: merged(forEveryAction), ownAnyAction: null };
}

/**
 * The table of one type from the rules filed under it and the every-type table: the
 * actions its own rules name. Pauses every ACTIONS_PER_PAUSE actions: one type whose
 * rules name 100,000 actions (a role granting each its own) took about 340 ms in one go.
 */
function* tableFor(own: readonly ByAction[], everyType: ActionTable): StageRun<ActionTable> {
  const actions = new Set<string>();
  for (const byAction of own) for (const action of byAction.keys()) actions.add(action);
  actions.delete(WILDCARD);
  const lists: (readonly CompiledRule[] | undefined)[] = [];
  const byAction = new Map<string, readonly CompiledRule[]>();
  for (const action of actions) {
    lists.length = 0;
    for (const table of own) lists.push(table.get(action), table.get(WILDCARD));
    lists.push(everyType.byAction.get(action) ?? everyType.anyAction);
    byAction.set(action, merged(lists));
    if (byAction.size % ACTIONS_PER_PAUSE === 0) yield;
  }
  lists.length = 0;
  for (const table of own) lists.push(table.get(WILDCARD));
  const ownAnyAction = merged(lists);
  lists.push(everyType.anyAction);
  return { byAction, anyAction: merged(lists), ownAnyAction: ownAnyAction.length > 0 ? { rules: ownAnyAction, late: new Map() } : null };
}

/** A type's own rules for every action with the every-type list of an action its own rules do not name. */
function lateList(ownAnyAction: NonNullable<ActionTable['ownAnyAction']>, action: string, everyType: readonly CompiledRule[]): readonly CompiledRule[] {
  const kept = ownAnyAction.late.get(action);
  if (kept !== undefined) return kept;
  const list = merged([ownAnyAction.rules, everyType]);
  if (ownAnyAction.late.size < LATE_LISTS_PER_TYPE) ownAnyAction.late.set(action, list);
  return list;
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
  yield;
  // Copies of the previous maps (one table each, not one object per type), then the touched types rebuilt.
  const sources = new Map(previous.sources);
  yield;
  const byType = new Map(previous.byType);
  yield;
  let built = 0;
  for (const [type, own] of fresh) {
    if (own.length === 0) {
      sources.delete(type);
      byType.delete(type);
      continue;
    }
    sources.set(type, own);
    byType.set(type, yield* tableFor(own, previous.anyType));
    if (++built % 4 === 0) yield;
  }
  return { byType, anyType: previous.anyType, sources, parts };
}

function* buildFullIndex(parts: readonly IndexPart[]): StageRun<RuleIndex> {
  const sources = sourcesOf(parts, null);
  const anyType = yield* everyTypeTable(sources.get(WILDCARD) ?? []);
  yield;
  const byType = new Map<string, ActionTable>();
  let built = 0;
  for (const [type, own] of sources) {
    if (type === WILDCARD) continue;
    byType.set(type, yield* tableFor(own, anyType));
    if (++built % 8 === 0) yield;
  }
  return { byType, anyType, sources, parts };
}
