import { someOf } from '../suggest.js';
import { checkExpression, compileCondition, type Condition } from '../condition.js';
import { readsPrincipalRoles, seeingEffectiveRoles } from '../effective-roles.js';
import { checkReferences, expandVariables, expansionProblem, variableReferences, type VariableTable } from '../variables.js';
import type { PolicyDiagnostic } from '../diagnostic.js';
import { attributeMatchers, idMatcher, MATCHERS_PER_PAUSE, type AttributeBlocks, type AttributeMatcher } from '../matcher.js';
import { valueProblem, type AttributeSchemas, type AttributeType } from '../attribute-schema.js';
import { didYouMean } from '../variables.js';
import type { Stage, StageRun } from '../pipeline.js';
import { SharedCompiled } from '../shared-compiled.js';
import { indexPartInSlices, type CompiledRule, type IndexPart } from '../policy-set.js';
import { permissionSchema, type MatcherSpec, type PermissionSpec, type RoleSpec, type RuleSpec } from '../schema.js';
import { diagnosticAt, diagnosticAtKey } from '../source.js';
import { roleHoldersFor, type RoleGraph } from './roles.js';
import type { Checked } from './schema.js';
import type { LoadedDocument, Located, LoadState } from './state.js';

/** The matchers of every rule that has none: one list for all of them. */
const NO_MATCHERS: readonly AttributeMatcher[] = Object.freeze([]);

// Rules repeat the same lists of actions, types and roles (`[read, list]`, `[admin]`): each
// distinct list is kept once, frozen, and shared by every rule naming it, as matchers and
// conditions are, so a large set holds fewer objects for a garbage collection to walk.
const listByText = new SharedCompiled<readonly string[]>();

function sharedList(values: Iterable<string>): readonly string[] {
  const list = [...values];
  return listByText.get(JSON.stringify(list), () => Object.freeze(list));
}

/** A role permission compiles into an allow rule with this id, so decisions can name it. */
export function permissionRuleId(role: string, permission: Pick<PermissionSpec, 'id'>, index: number): string {
  return `role:${role}:${permission.id ?? String(index)}`;
}

/**
 * A rule id claimed by a document: where the rule is (`source` and `path`, as a
 * Located has them) and the key its id is written under there. Every rule of a set
 * keeps one, so it is a single small object: where the id is written is put
 * together only for the message about a duplicate.
 */
export interface Claim {
  readonly id: string;
  readonly source: Located<unknown>['source'];
  readonly path: Located<unknown>['path'];
  readonly idKey: PropertyKey;
}

/** Where a rule is, for the message naming an earlier use of its id. */
type ClaimSite = Pick<Claim, 'source' | 'path'>;

/** A document's compiled rules filed for the index, and the ids it claims in the order written. */
export interface CompiledDocument {
  readonly part: IndexPart;
  readonly claims: readonly Claim[];
}

/**
 * Collects the ids a document claims, in the order written. Claims are checked
 * for duplicates across documents once every document is compiled (see claimIds),
 * so a document whose compiled rules are reused need not claim its ids one by one.
 */
export class RuleIds {
  /** The claims of the document being compiled. */
  journal: Claim[] = [];

  claim(id: string, where: Located<unknown>, idKey: PropertyKey): void {
    this.journal.push({ id, source: where.source, path: where.path, idKey });
  }
}

/** The ids a load claimed, with the claim lists they came from: what the next load starts from. */
export interface ClaimedIds {
  /** Each document's claims, in the order the rules stage went through them (kept lists are the same arrays). */
  readonly lists: readonly (readonly Claim[])[];
  /** Every id, where it is written; no id was claimed twice. The next load changes it in place. */
  readonly ids: Map<string, ClaimSite>;
}

/** Claims the lists in order; a second use of an id is a diagnostic at that use, naming the first. */
function* claimInOrder(lists: readonly (readonly Claim[])[], diagnostics: PolicyDiagnostic[]): StageRun<{ ids: Map<string, ClaimSite>; duplicates: boolean }> {
  const ids = new Map<string, ClaimSite>();
  let duplicates = false;
  let n = 0;
  for (const list of lists) {
    for (const claim of list) {
      const { id } = claim;
      const earlier = ids.get(id);
      if (earlier) {
        duplicates = true;
        const at = earlier.source.locate(earlier.path);
        diagnostics.push(diagnosticAt(claim.source, [...claim.path, claim.idKey], `duplicate rule id "${id}": already used at ${earlier.source.file}:${at.line}:${at.col}`));
      } else ids.set(id, claim);
      if (++n % 512 === 0) yield;
    }
  }
  return { ids, duplicates };
}

/**
 * Every claimed id, checked for duplicates. With the previous load's claims (none
 * duplicated), only the lists that changed are gone through: the ids of lists no
 * longer there are dropped and those of new lists added. Should a new list reuse an
 * id, every list is claimed again in order, as a cold load does, so the diagnostics
 * are the same.
 */
function* claimIds(lists: readonly (readonly Claim[])[], previous: ClaimedIds | null, diagnostics: PolicyDiagnostic[]): StageRun<{ ids: Map<string, ClaimSite>; kept: ClaimedIds | null }> {
  if (previous !== null) {
    const now = new Set(lists);
    const before = new Set(previous.lists);
    // Changed in place rather than copied (a copy would be thousands of entries for each reload to allocate):
    // the caller has dropped `previous` from the cache, so a load that stops part way leaves no half-changed map behind.
    const ids = previous.ids;
    let n = 0;
    let clash = false;
    for (const list of previous.lists) {
      if (now.has(list)) continue;
      for (const claim of list) {
        ids.delete(claim.id);
        if (++n % 512 === 0) yield;
      }
    }
    for (const list of lists) {
      if (before.has(list)) continue;
      for (const claim of list) {
        if (ids.has(claim.id)) clash = true;
        else ids.set(claim.id, claim);
        if (++n % 512 === 0) yield;
      }
      if (clash) break;
    }
    if (!clash) return { ids, kept: { lists, ids } };
  }
  const claimed = yield* claimInOrder(lists, diagnostics);
  return { ids: claimed.ids, kept: claimed.duplicates ? null : { lists, ids: claimed.ids } };
}

/** The attribute schemas a condition is type-checked against, and the resource types it runs for (null: any). */
export interface Typing {
  readonly schemas: AttributeSchemas;
  readonly types: readonly string[] | null;
}

export function compileWhen(when: string | undefined, where: Located<unknown>, graph: RoleGraph, variables: VariableTable, diagnostics: PolicyDiagnostic[], typing: Typing | null = null): Condition | null {
  if (when === undefined) return null;
  const refs = variableReferences(when);
  const written = when;
  if (refs.length > 0) {
    // Checked as written first, so errors point at the author's columns; then compiled with the variables put in.
    const site = { source: where.source, path: [...where.path, 'when'] };
    if (!checkReferences(when, new Set(variables.expansions.keys()), site, diagnostics)) return null;
    if (refs.some((r) => !variables.expansions.has(r.name))) return null;
    const checked = checkExpression(when);
    if (!checked.ok) {
      const column = checked.offset === null ? '' : ` (column ${checked.offset + 1} of the condition)`;
      diagnostics.push(diagnosticAt(where.source, site.path, `condition does not compile: ${checked.message}${column}`));
      return null;
    }
    const tooLong = expansionProblem(when, variables.expansions);
    if (tooLong !== null) {
      diagnostics.push(diagnosticAt(where.source, site.path, `condition is ${tooLong}`));
      return null;
    }
    when = expandVariables(when, variables.expansions);
  }
  const compiled = compileCondition(when);
  if (compiled.ok && typing !== null && !typedAsDeclared(when, written, refs.length > 0, typing, where, diagnostics)) return null;
  if (compiled.ok) return readsPrincipalRoles(when) ? seeingEffectiveRoles(compiled.evaluate, graph) : compiled.evaluate;
  const column = compiled.offset === null ? '' : ` (column ${compiled.offset + 1} of the condition)`;
  diagnostics.push(diagnosticAt(where.source, [...where.path, 'when'], `condition does not compile: ${compiled.message}${column}`));
  return null;
}

/**
 * Type-checks a compiled condition against the declared attributes, once per resource type
 * it runs for: an unknown attribute or a type mismatch is a diagnostic at the `when`.
 */
function typedAsDeclared(expanded: string, written: string, hasVariables: boolean, typing: Typing, where: Located<unknown>, diagnostics: PolicyDiagnostic[]): boolean {
  const seen = new Set<string>();
  for (const type of typing.types ?? [null]) {
    const problem = typing.schemas.check(expanded, type);
    if (problem === null || seen.has(problem.message)) continue;
    seen.add(problem.message);
    // With variables put in, a column would point into the expansion, not at what the author wrote.
    const column = problem.offset === null || hasVariables ? (hasVariables ? ` (in ${JSON.stringify(written)} with its variables put in)` : '') : ` (column ${problem.offset + 1} of the condition)`;
    diagnostics.push(diagnosticAt(where.source, [...where.path, 'when'], `condition does not type-check against the attribute schema: ${problem.message}${column}`));
  }
  return seen.size === 0;
}

/**
 * Checks a rule's attribute matchers against the declared attributes: the attribute exists
 * (did you mean …), a nested path reads a map, and each value a matcher compares is of the
 * attribute's type. Returns, aligned with the matchers, the declared type of each attribute a
 * deny rule matches on that the schema marks required (null elsewhere): such a matcher never
 * silently misses (see evaluate.ts); null when there is none.
 */
export function* typedMatchers(spec: AttributeBlocks, effect: 'allow' | 'deny', typing: Typing, where: Located<unknown>, diagnostics: PolicyDiagnostic[]): StageRun<(AttributeType | null)[] | null> {
  const guards: (AttributeType | null)[] = [];
  let guarded = false;
  for (const part of ['principal', 'resource', 'context'] as const) {
    const attributes = spec[part]?.attributes;
    if (!attributes) continue;
    for (const [key, matcher] of Object.entries(attributes)) {
      const at = [...where.path, part, 'attributes', key];
      const [name, ...nested] = key.split('.');
      let guard: AttributeType | null = null;
      const schemasOf = part === 'resource' ? (typing.types ?? []).map((t) => [t, typing.schemas.partSchema(part, t)] as const) : [[null, typing.schemas.partSchema(part, null)] as const];
      for (const [type, schema] of schemasOf) {
        if (schema === null) continue;
        const of = type === null ? part : `resource type ${type}`;
        const declared = schema.get(name!);
        if (declared === undefined) {
          diagnostics.push(diagnosticAtKey(where.source, at, `unknown attribute ${part}.attributes.${name}: the schema of ${of} declares ${someOf(schema.keys()) || 'none'}${didYouMean(name!, schema.keys())}`));
          continue;
        }
        if (nested.length > 0) {
          if (declared.type !== 'map') diagnostics.push(diagnosticAtKey(where.source, at, `${part}.attributes.${name} is declared ${declared.type} in the schema of ${of}, so "${key}" cannot read into it`));
          continue;
        }
        const problem = matcherProblem(matcher as MatcherSpec, declared);
        if (problem !== null) diagnostics.push(diagnosticAt(where.source, at, `${part}.attributes.${name}: ${problem} (schema of ${of})`));
        else if (effect === 'deny' && declared.required) guard = declared;
      }
      guards.push(guard);
      if (guard !== null) guarded = true;
      if (guards.length % MATCHERS_PER_PAUSE === 0) yield;
    }
  }
  return guarded ? guards : null;
}

/** Why a matcher cannot match values of a declared type, or null. */
function matcherProblem(matcher: MatcherSpec, declared: AttributeType): string | null {
  const values = compared(matcher);
  if (values === 'glob') return declared.type === 'string' || declared.type === 'enum' ? null : `a glob matches strings, but the attribute is declared ${declared.type}`;
  if (values === null) return null;
  if (declared.type === 'list' || declared.type === 'map') return `a ${declared.type} attribute cannot be matched by value; test it in a condition (e.g. "x" in ...)`;
  for (const value of values) {
    const problem = valueProblem(declared, value);
    if (problem !== null) return `the matcher's value ${JSON.stringify(value)} can never match: the attribute ${problem.replace(/, not .*$/, '')}`;
  }
  return null;
}

/** The values a matcher compares with, 'glob' for a glob, null for a presence test. */
function compared(matcher: MatcherSpec): readonly unknown[] | 'glob' | null {
  if (matcher === null || typeof matcher !== 'object') return [matcher];
  if (Array.isArray(matcher)) return matcher;
  if ('equals' in matcher) return [matcher.equals];
  if ('anyOf' in matcher) return matcher.anyOf;
  if ('notAnyOf' in matcher) return matcher.notAnyOf;
  if ('glob' in matcher) return 'glob';
  return null;
}

/**
 * A rule that failed its schema still gets the cross-file checks its well-formed parts
 * allow, so one run reports every error rather than one layer of them at a time.
 */
function checkMalformedRule(rule: Located<unknown>, graph: RoleGraph, variables: VariableTable, ids: RuleIds, diagnostics: PolicyDiagnostic[]): void {
  if (rule.spec === null || typeof rule.spec !== 'object') return;
  const spec = rule.spec as { id?: unknown; when?: unknown; principal?: { roles?: unknown } };
  if (typeof spec.id === 'string') ids.claim(spec.id, rule, 'id');
  if (typeof spec.when === 'string') compileWhen(spec.when, rule, graph, variables, diagnostics);
  const named = spec.principal?.roles;
  if (Array.isArray(named) && named.every((r): r is string => typeof r === 'string')) {
    roleHoldersFor(named, graph, rule, [...rule.path, 'principal', 'roles'], diagnostics);
  }
}

/** The condition as it runs, when it reads variables; null otherwise. */
function expandedText(when: string | undefined, variables: VariableTable): string | null {
  return when !== undefined && variableReferences(when).length > 0 && expansionProblem(when, variables.expansions) === null ? expandVariables(when, variables.expansions) : null;
}

/** Compiles one well-formed rule; null when it has problems (they are in `diagnostics`). */
export function* compileRule(rule: Located<RuleSpec>, graph: RoleGraph, variables: VariableTable, diagnostics: PolicyDiagnostic[], schemas: AttributeSchemas | null = null): StageRun<CompiledRule | null> {
  const { spec } = rule;
  const before = diagnostics.length;
  const type = spec.resource?.type;
  const typing: Typing | null = schemas === null ? null : { schemas, types: type === undefined ? null : Array.isArray(type) ? type : [type] };
  const guards = typing === null ? null : yield* typedMatchers(spec, spec.effect, typing, rule, diagnostics);
  const matchers: AttributeMatcher[] = [];
  if (spec.principal?.id !== undefined) matchers.push(idMatcher('principal', spec.principal.id));
  if (spec.resource?.id !== undefined) matchers.push(idMatcher('resource', spec.resource.id));
  for (const matcher of yield* attributeMatchers(spec)) matchers.push(matcher);
  const roleHolders = roleHoldersFor(spec.principal?.roles, graph, rule, [...rule.path, 'principal', 'roles'], diagnostics);
  const excludedHolders = roleHoldersFor(spec.principal?.notRoles, graph, rule, [...rule.path, 'principal', 'notRoles'], diagnostics);
  const condition = compileWhen(spec.when, rule, graph, variables, diagnostics, typing);
  if (diagnostics.length > before) return null;
  return Object.freeze({
    id: spec.id,
    effect: spec.effect === 'allow' ? 'ALLOW' : 'DENY',
    description: spec.description ?? null,
    file: rule.source.file,
    line: rule.source.locate(rule.path).line,
    origin: 'rule',
    actions: sharedList(new Set(spec.actions)),
    resourceTypes: type === undefined ? null : sharedList(Array.isArray(type) ? type : [type]),
    roles: spec.principal?.roles === undefined ? null : sharedList(spec.principal.roles),
    roleHolders,
    excludedHolders,
    excludedRoles: spec.principal?.notRoles === undefined ? null : sharedList(spec.principal.notRoles),
    matchers: matchers.length === 0 ? NO_MATCHERS : Object.freeze(matchers),
    // Aligned with `matchers`, which list principal.id and resource.id first.
    guards: guards === null ? null : Object.freeze([...matchers.slice(0, matchers.length - guards.length).map(() => null), ...guards]),
    condition,
    conditionSource: spec.when ?? null,
    conditionExpanded: expandedText(spec.when, variables),
  } satisfies CompiledRule);
}

/** Compiles one permission of a role into the allow rule it grants. */
function compilePermission(role: string, id: string, where: Located<PermissionSpec>, graph: RoleGraph, variables: VariableTable, diagnostics: PolicyDiagnostic[], schemas: AttributeSchemas | null): CompiledRule | null {
  const { spec } = where;
  const before = diagnostics.length;
  const roleHolders = roleHoldersFor([role], graph, where, [], diagnostics);
  const typing: Typing | null = schemas === null ? null : { schemas, types: spec.resources ?? null };
  const condition = compileWhen(spec.when, where, graph, variables, diagnostics, typing);
  if (diagnostics.length > before) return null;
  return Object.freeze({
    id,
    effect: 'ALLOW',
    description: spec.description ?? `granted by role ${role}`,
    file: where.source.file,
    line: where.source.locate(where.path).line,
    origin: 'role',
    actions: sharedList(new Set(spec.actions)),
    resourceTypes: spec.resources ? sharedList(spec.resources) : null,
    roles: sharedList([role]),
    roleHolders,
    excludedHolders: null,
    excludedRoles: null,
    matchers: NO_MATCHERS,
    guards: null,
    condition,
    conditionSource: spec.when ?? null,
    conditionExpanded: expandedText(spec.when, variables),
  } satisfies CompiledRule);
}

/** Compiles one rule as written (or checks what it can of a malformed one), claiming its id. */
export function* compileRuleItem(rule: Located<Checked<RuleSpec>>, graph: RoleGraph, variables: VariableTable, ids: RuleIds, diagnostics: PolicyDiagnostic[], schemas: AttributeSchemas | null = null): StageRun<CompiledRule | null> {
  const { spec } = rule.spec;
  if (spec === null) {
    checkMalformedRule({ spec: rule.spec.raw, source: rule.source, path: rule.path }, graph, variables, ids, diagnostics);
    return null;
  }
  ids.claim(spec.id, rule, 'id');
  return yield* compileRule({ spec, source: rule.source, path: rule.path }, graph, variables, diagnostics, schemas);
}

/**
 * The allow rules a role's permissions grant, with their ids claimed, pausing after
 * each (a role may hold thousands). A malformed role's well-formed permissions are
 * still claimed and their conditions compiled.
 */
export function* compileRolePermissions(role: Located<Checked<RoleSpec>>, graph: RoleGraph, variables: VariableTable, ids: RuleIds, diagnostics: PolicyDiagnostic[], schemas: AttributeSchemas | null = null): StageRun<CompiledRule[]> {
  const compiled: CompiledRule[] = [];
  const checked = role.spec;
  let name: string;
  let permissions: readonly unknown[];
  if (checked.spec) {
    name = checked.spec.name;
    permissions = checked.spec.permissions;
  } else {
    const raw = checked.raw as { name?: unknown; permissions?: unknown } | null;
    if (raw === null || typeof raw !== 'object' || typeof raw.name !== 'string' || !Array.isArray(raw.permissions)) return compiled;
    name = raw.name;
    permissions = raw.permissions;
  }
  for (let index = 0; index < permissions.length; index++) {
    yield;
    // A malformed role's permissions are each checked here, between pauses, not all before the first.
    let spec: PermissionSpec | null;
    if (checked.spec) spec = permissions[index] as PermissionSpec;
    else {
      const parsed = permissionSchema.safeParse(permissions[index]);
      spec = parsed.success ? parsed.data : null;
    }
    if (spec === null) continue;
    const path = [...role.path, 'permissions', index];
    const where: Located<PermissionSpec> = { spec, source: role.source, path };
    const id = permissionRuleId(name, spec, index);
    ids.claim(id, where, spec.id ? 'id' : 'actions');
    if (!checked.spec) {
      compileWhen(spec.when, where, graph, variables, diagnostics);
      continue;
    }
    const rule = compilePermission(name, id, where, graph, variables, diagnostics, schemas);
    if (rule) compiled.push(rule);
  }
  return compiled;
}

/**
 * The key of a document's compiled rules: the document, and the holders of each
 * role it names (a rule naming a role compiles the role's holders into it).
 */
function compiledKey(document: LoadedDocument, roleNames: readonly string[], graph: RoleGraph, variables: VariableTable, graphKey: () => string | null, schemaKey: string): string {
  let key = `${document.key}\u0000variables=${variables.key}\u0000schema=${schemaKey}`;
  // A condition reading principal.roles compiles in every role's inheritance (effective-roles.ts).
  const inheritance = graphKey();
  if (inheritance !== null) key += `\u0000graph=${inheritance}`;
  for (const name of roleNames) {
    const entry = graph.get(name);
    key += entry ? `\u0000${name}=${[...entry.holders].join(',')}` : `\u0000${name}?`;
  }
  return key;
}

/**
 * Compiles the items of one document, or takes its compiled rules from an earlier
 * load when nothing they depend on changed; either way its ids are claimed in the
 * order written. A document with problems is compiled every time (and its problems reported).
 */
function* compileDocument(
  state: LoadState,
  document: LoadedDocument,
  key: string,
  ids: RuleIds,
  claims: (readonly Claim[])[],
  compileItem: (index: number) => StageRun<readonly CompiledRule[]>,
  count: number,
): StageRun {
  const cached = state.cache?.compiled.take(key);
  if (cached) {
    claims.push(cached.claims);
    state.compiled.push(cached.part);
    yield;
    return;
  }
  const before = state.diagnostics.length;
  ids.journal = [];
  const rules: CompiledRule[] = [];
  for (let i = 0; i < count; i++) {
    for (const rule of yield* compileItem(i)) rules.push(rule);
    yield;
  }
  const journal = ids.journal;
  claims.push(journal);
  const part = yield* indexPartInSlices(rules);
  state.compiled.push(part);
  if (state.diagnostics.length === before) state.cache?.compiled.put(key, { part, claims: journal });
}

/** rules: compiles every rule, then every role's permissions, claiming ids across files. */
export const rulesStage: Stage<LoadState> = {
  name: 'rules',
  *run(state) {
    const graph = state.roleGraph ?? new Map();
    const variables = state.variables;
    const schemas = state.attributeSchemas;
    // Rules are type-checked against the schema documents: a changed schema recompiles them.
    const schemaKey = state.documents.filter((d) => d.document.content?.kind === 'schema').map((d) => d.key).join('\n');
    const ids = new RuleIds();
    const claims: (readonly Claim[])[] = [];
    // Every document's key names the inheritance once a variable reads roles: any document may use that variable.
    const variablesReadRoles = [...variables.expansions.values()].some(readsPrincipalRoles);
    let graphSignature: string | null = null;
    const graphKey = (): string => (graphSignature ??= [...graph].map(([name, entry]) => `${name}>${entry.effective.join(',')}`).join(';'));
    const inheritanceKey = (document: LoadedDocument) => (): string | null =>
      variablesReadRoles || document.document.conditionsReadRoles ? graphKey() : null;
    for (const document of state.documents) {
      const content = document.document.content;
      if (content?.kind !== 'rules') continue;
      const compileItem = function* (i: number): StageRun<readonly CompiledRule[]> {
        const rule = yield* compileRuleItem({ spec: content.items.at(i)!.checked, source: document.source, path: ['rules', i] }, graph, variables, ids, state.diagnostics, schemas);
        return rule ? [rule] : [];
      };
      yield* compileDocument(state, document, compiledKey(document, content.roleNames, graph, variables, inheritanceKey(document), schemaKey), ids, claims, compileItem, content.items.length);
    }
    for (const document of state.documents) {
      const content = document.document.content;
      if (content?.kind !== 'roles') continue;
      const compileItem = (i: number): StageRun<readonly CompiledRule[]> =>
        compileRolePermissions({ spec: content.items.at(i)!.checked, source: document.source, path: ['roles', i] }, graph, variables, ids, state.diagnostics, schemas);
      yield* compileDocument(state, document, compiledKey(document, content.roleNames, graph, variables, inheritanceKey(document), schemaKey), ids, claims, compileItem, content.items.length);
    }
    const previous = state.cache?.claimed ?? null;
    if (state.cache) state.cache.claimed = null;
    const claimed = yield* claimIds(claims, previous, state.diagnostics);
    state.ruleIds = claimed.ids;
    if (state.cache) state.cache.claimed = claimed.kept;
  },
};
