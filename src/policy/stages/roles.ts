import type { PolicyDiagnostic } from '../diagnostic.js';
import type { Stage, StageRun } from '../pipeline.js';
import type { CompiledRole } from '../policy-set.js';
import type { RoleSpec } from '../schema.js';
import { diagnosticAt } from '../source.js';
import type { Checked } from './schema.js';
import { builtFromDocuments, type Located, type LoadState } from './state.js';

export interface RoleEntry {
  readonly inherits: readonly string[];
  /** This role and every role it inherits from, transitively, sorted. */
  readonly effective: readonly string[];
  /** Roles whose holders count as holding this one: itself and every role inheriting it. */
  readonly holders: ReadonlySet<string>;
}

/** Every role defined, with its inheritance resolved both ways. */
export type RoleGraph = ReadonlyMap<string, RoleEntry>;

/** The parts of a role the graph needs, read from a malformed role too when they are well-formed. */
interface RoleHead {
  readonly name: string;
  readonly inherits: readonly unknown[];
}

function headOf(checked: Checked<RoleSpec>): RoleHead | null {
  if (checked.spec) return { name: checked.spec.name, inherits: checked.spec.inherits ?? [] };
  const raw = checked.raw as { name?: unknown; inherits?: unknown } | null;
  if (raw === null || typeof raw !== 'object' || typeof raw.name !== 'string') return null;
  return { name: raw.name, inherits: Array.isArray(raw.inherits) ? raw.inherits : [] };
}

/** The roles of every roles document, in the order written, malformed ones included. */
export function* rolesOf(state: Pick<LoadState, 'documents'>): Generator<Located<Checked<RoleSpec>>> {
  for (const { source, document } of state.documents) {
    if (document.content?.kind !== 'roles') continue;
    for (let i = 0; i < document.content.items.length; i++) yield { spec: document.content.items.at(i)!.checked, source, path: ['roles', i] };
  }
}

/**
 * Resolves inheritance. A role that failed its schema still takes part with its
 * name and inherited roles, so its duplicates and the rules naming it are checked
 * in the same run. Pauses after each role, and every ROLE_STEPS_PER_PAUSE roles
 * followed within one: 800 roles in layers took about 100 ms in one go.
 */
export function* buildRoleGraph(roles: Iterable<Located<Checked<RoleSpec>>>, diagnostics: PolicyDiagnostic[]): StageRun<Map<string, RoleEntry>> {
  const firstSeen = new Map<string, { head: RoleHead; where: Located<unknown> }>();
  for (const role of roles) {
    yield;
    const head = headOf(role.spec);
    if (head === null) continue;
    const earlier = firstSeen.get(head.name);
    if (earlier) {
      const at = earlier.where.source.locate(earlier.where.path);
      diagnostics.push(diagnosticAt(role.source, [...role.path, 'name'], `duplicate role "${head.name}": already defined at ${earlier.where.source.file}:${at.line}:${at.col}`));
      continue;
    }
    firstSeen.set(head.name, { head, where: role });
  }
  const inherits = new Map<string, string[]>();
  for (const [name, { head, where }] of firstSeen) {
    yield;
    const parents: string[] = [];
    head.inherits.forEach((parent, i) => {
      if (typeof parent !== 'string') return;
      parents.push(parent);
      if (!firstSeen.has(parent)) diagnostics.push(diagnosticAt(where.source, [...where.path, 'inherits', i], `role "${name}" inherits unknown role "${parent}"`));
    });
    inherits.set(name, parents);
  }
  const effective = new Map<string, string[]>();
  const depths = yield* inheritanceDepths(inherits);
  let inheritanceWork = 0;
  let overTotal = false;
  let steps = 0;
  for (const [name, parents] of inherits) {
    yield;
    const depth = depths.get(name) ?? 0;
    if (depth > MAX_INHERITANCE_DEPTH || overTotal) {
      // Resolving it would cost more than a policy may ask for; the set is refused, and later stages see the role alone.
      if (depth === MAX_INHERITANCE_DEPTH + 1) {
        const { where } = firstSeen.get(name)!;
        diagnostics.push(diagnosticAt(where.source, [...where.path, 'inherits'], `role "${name}" inherits through more than ${MAX_INHERITANCE_DEPTH} levels of roles: flatten the hierarchy (a role may inherit several roles directly)`));
      }
      effective.set(name, [name]);
      continue;
    }
    const seen = new Set<string>([name]);
    const stack = [...parents];
    // Every role reached and every inheritance followed counts, so a dense hierarchy stops before it costs seconds.
    inheritanceWork += parents.length;
    while (stack.length > 0 && inheritanceWork <= MAX_INHERITANCE_WORK) {
      if (++steps % ROLE_STEPS_PER_PAUSE === 0) yield;
      const parent = stack.pop() as string;
      if (parent === name) {
        const { where } = firstSeen.get(name)!;
        diagnostics.push(diagnosticAt(where.source, [...where.path, 'inherits'], `role "${name}" inherits itself through a cycle`));
        break;
      }
      if (seen.has(parent)) continue;
      seen.add(parent);
      const grand = inherits.get(parent) ?? [];
      inheritanceWork += 1 + grand.length;
      for (const role of grand) stack.push(role);
    }
    if (inheritanceWork > MAX_INHERITANCE_WORK) {
      const { where } = firstSeen.get(name)!;
      diagnostics.push(diagnosticAt(where.source, [...where.path, 'inherits'], `the roles inherit too densely: resolving them went past ${MAX_INHERITANCE_WORK} inherited roles and inheritances, counted over all roles, at role "${name}" (each role keeps every role it inherits, so a dense hierarchy grows as the square of its size); inherit fewer roles`));
      overTotal = true;
      effective.set(name, [name]);
      continue;
    }
    effective.set(name, [...seen].sort());
  }
  const holders = new Map<string, Set<string>>([...inherits.keys()].map((name) => [name, new Set<string>()]));
  for (const [name, granted] of effective) {
    yield;
    for (const role of granted) holders.get(role)?.add(name);
  }
  const graph = new Map<string, RoleEntry>();
  for (const [name, parents] of inherits) graph.set(name, { inherits: parents, effective: effective.get(name)!, holders: holders.get(name)! });
  return graph;
}

/** How many inherited roles resolving one role follows between pauses. */
const ROLE_STEPS_PER_PAUSE = 2048;

/** The deepest chain of inheritance a role may head. Real hierarchies are a handful of levels deep. */
export const MAX_INHERITANCE_DEPTH = 32;

/**
 * How many inherited roles and inheritances resolving all roles may go through. Each
 * role keeps the list of every role it inherits (what a decision reads), so 5,000
 * roles each inheriting the one before would hold 12.5 million entries and block a
 * reload for seconds; layers of roles each inheriting the whole layer below cost more.
 */
export const MAX_INHERITANCE_WORK = 2_000_000;

/**
 * The longest chain of parents above each role (0 for a role inheriting none), without
 * recursion (a chain can be as long as the file allows). A parent on the current path
 * (a cycle, reported elsewhere) or not defined counts as no further level.
 */
function* inheritanceDepths(inherits: ReadonlyMap<string, readonly string[]>): StageRun<Map<string, number>> {
  const depths = new Map<string, number>();
  const onPath = new Set<string>();
  let steps = 0;
  for (const root of inherits.keys()) {
    yield;
    if (depths.has(root)) continue;
    const path: { name: string; next: number }[] = [{ name: root, next: 0 }];
    onPath.add(root);
    while (path.length > 0) {
      if (++steps % ROLE_STEPS_PER_PAUSE === 0) yield;
      const top = path[path.length - 1]!;
      const parents = inherits.get(top.name) ?? [];
      if (top.next < parents.length) {
        const parent = parents[top.next++]!;
        if (depths.has(parent) || onPath.has(parent) || !inherits.has(parent)) continue;
        onPath.add(parent);
        path.push({ name: parent, next: 0 });
        continue;
      }
      let depth = 0;
      for (const parent of parents) depth = Math.max(depth, (depths.get(parent) ?? -1) + 1);
      depths.set(top.name, depth);
      onPath.delete(top.name);
      path.pop();
    }
  }
  return depths;
}

/** The roles as the policy set exposes them. */
export function compiledRoles(graph: RoleGraph): Map<string, CompiledRole> {
  const roles = new Map<string, CompiledRole>();
  for (const [name, entry] of graph) roles.set(name, { name, inherits: entry.inherits, effectiveRoles: entry.effective });
  return roles;
}

/** Every role whose holder satisfies `roles` (inheritance included); an unknown role is a diagnostic. Null when no roles are named. */
export function roleHoldersFor(
  roles: readonly string[] | undefined,
  graph: RoleGraph,
  where: Located<unknown>,
  rolesPath: readonly PropertyKey[],
  diagnostics: PolicyDiagnostic[],
): ReadonlySet<string> | null {
  if (!roles) return null;
  // Rules name the same few roles over and over: one set for each list, for as long as the graph is kept.
  let byRoles = holdersByGraph.get(graph);
  if (byRoles === undefined) holdersByGraph.set(graph, (byRoles = new Map()));
  const key = JSON.stringify(roles);
  const shared = byRoles.get(key);
  if (shared !== undefined) return shared;
  const holders = new Set<string>();
  let known = true;
  roles.forEach((role, i) => {
    const entry = graph.get(role);
    if (!entry) {
      known = false;
      diagnostics.push(diagnosticAt(where.source, [...rolesPath, i], `unknown role "${role}": define it in a roles file or fix the name`));
      return;
    }
    for (const holder of entry.holders) holders.add(holder);
  });
  if (known) byRoles.set(key, holders);
  return holders;
}

const holdersByGraph = new WeakMap<RoleGraph, Map<string, ReadonlySet<string>>>();

/** roles: the role graph of every roles document; the last load's when no roles document changed. */
export const rolesStage: Stage<LoadState> = {
  name: 'roles',
  *run(state) {
    state.roleGraph = yield* builtFromDocuments(state, ['roles'], state.cache?.roleGraphs, () => buildRoleGraph(rolesOf(state), state.diagnostics));
  },
};
