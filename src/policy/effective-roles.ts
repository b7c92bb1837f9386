import type { Condition, ConditionInput } from './condition.js';
import type { RoleGraph } from './stages/roles.js';

// A `principal.roles` matcher counts inherited roles; CEL must agree, or a condition
// written as `"data_scientist" in principal.roles` is false for a role that inherits it,
// and a deny written as "none of these roles" lets the inheriting role through.

/**
 * True when a condition may read the principal's roles: it names `principal` other
 * than through `.id` or `.attributes` (`principal.roles`, `principal["roles"]`,
 * `principal[k]`, the whole map). Errs towards true; a false true costs one
 * allocation per evaluation, a false false would hide inheritance.
 */
export function readsPrincipalRoles(expression: string): boolean {
  return /(?<![.\w])principal\b(?!\s*\.\s*(?:id|attributes)\b)/.test(expression);
}

/**
 * True when a condition anywhere in a document (its canonical JSON: every `"when"`
 * string, at any depth) may read the principal's roles. Worked out where the file is
 * checked (the policy load thread), not on the deciding thread: the scan of a
 * 6 MB document took 12–14 ms in one go there.
 */
export function conditionsReadRoles(canonicalJson: string): boolean {
  for (const match of canonicalJson.matchAll(/"when":("(?:[^"\\]|\\.)*")/g)) {
    if (readsPrincipalRoles(JSON.parse(match[1]!) as string)) return true;
  }
  return false;
}

/**
 * The roles a principal holds: those sent and, after them, every role they inherit,
 * each once. Roles the policy set does not define are kept as sent.
 */
export function effectiveRoles(sent: readonly string[], graph: RoleGraph): readonly string[] {
  let closure: Set<string> | null = null;
  for (let i = 0; i < sent.length; i++) {
    const entry = graph.get(sent[i]!);
    if (entry !== undefined && entry.effective.length > 1) {
      closure ??= new Set(sent);
      for (const role of entry.effective) closure.add(role);
    }
  }
  return closure === null ? sent : [...closure];
}

interface SentPrincipal {
  readonly id: string;
  readonly roles: readonly string[];
  readonly attributes: unknown;
}

/**
 * The condition, seeing `principal.roles` as the effective roles and the roles as sent
 * as `principal.directRoles`.
 */
export function seeingEffectiveRoles(condition: Condition, graph: RoleGraph): Condition {
  // One wrapper for each condition and graph, however many rules share the condition.
  let byCondition = wrappedByGraph.get(graph);
  if (byCondition === undefined) wrappedByGraph.set(graph, (byCondition = new WeakMap()));
  let wrapped = byCondition.get(condition);
  if (wrapped === undefined) byCondition.set(condition, (wrapped = wrap(condition, graph)));
  return wrapped;
}

const wrappedByGraph = new WeakMap<RoleGraph, WeakMap<Condition, Condition>>();

function wrap(condition: Condition, graph: RoleGraph): Condition {
  return (input: ConditionInput) => {
    const principal = input.principal as SentPrincipal;
    return condition({
      principal: { id: principal.id, roles: effectiveRoles(principal.roles, graph), directRoles: principal.roles, attributes: principal.attributes },
      resource: input.resource,
      action: input.action,
      context: input.context,
    });
  };
}
