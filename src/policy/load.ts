import type { z } from 'zod';
import type { DecisionRequest, Effect, Reason } from '../types.js';
import { compileCondition, type Condition } from './condition.js';
import { sortDiagnostics, type PolicyDiagnostic } from './diagnostic.js';
import { attributeReader, compileMatcher, type AttributeMatcher, type MatchedPart } from './matcher.js';
import { PolicySet, type CompiledRole, type CompiledRule } from './policy-set.js';
import { compileRoutes, type LocatedRoute, type RoutedRequest, type RouteTable } from './routes.js';
import {
  documentSchemas,
  KNOWN_KINDS,
  roleSchema,
  routeSchema,
  ruleSchema,
  type HttpTestRequest,
  type PermissionSpec,
  type PolicyKind,
  type RoleSpec,
  type RuleSpec,
  type TestsDocument,
} from './schema.js';
import { diagnosticAt, diagnosticAtKey, loadSources, type SourceDocument } from './source.js';
import { policyVersion } from './version.js';

/** One case of a policy test file, with fixtures resolved into a full request. */
export interface PolicyTestCase {
  readonly suite: string;
  readonly name: string;
  readonly file: string;
  readonly line: number;
  readonly request: DecisionRequest;
  readonly expect: { readonly effect: Effect; readonly reason: Reason | null; readonly rules: readonly string[] | null };
  /** For a case written as an HTTP request: that request (the routes made `request` of it). */
  readonly http?: HttpTestRequest;
}

export interface LoadedPolicies {
  readonly policySet: PolicySet;
  readonly tests: readonly PolicyTestCase[];
  readonly files: readonly string[];
}

export type LoadResult =
  | { readonly ok: true; readonly policies: LoadedPolicies }
  | { readonly ok: false; readonly diagnostics: readonly PolicyDiagnostic[] };

interface Located<T> {
  readonly spec: T;
  readonly source: SourceDocument;
  readonly path: readonly PropertyKey[];
}

/**
 * Reads, validates and compiles a policy directory. Every problem in every file is
 * reported together; nothing is compiled unless the whole directory is valid.
 */
export function loadPolicies(dir: string, options: { gitCommit?: string | null } = {}): LoadResult {
  const { documents, diagnostics } = loadSources(dir);
  // In the order written, malformed ones included, so a duplicate id is reported at its second use.
  const rules: (Located<RuleSpec> | (Located<null> & { readonly item: unknown }))[] = [];
  const roles: Located<RoleSpec>[] = [];
  const testDocs: Located<TestsDocument>[] = [];
  const routes: LocatedRoute[] = [];

  for (const source of documents) {
    const parsed = parseDocument(source, diagnostics);
    if (!parsed) continue;
    if (parsed.kind === 'rules') {
      parsed.value.rules.forEach((item, i) => {
        const spec = parseItem(ruleSchema, item, source, ['rules', i], diagnostics);
        if (spec) rules.push({ spec, source, path: ['rules', i] });
        else rules.push({ spec: null, item, source, path: ['rules', i] });
      });
    }
    if (parsed.kind === 'roles') {
      parsed.value.roles.forEach((item, i) => {
        const spec = parseItem(roleSchema, item, source, ['roles', i], diagnostics);
        if (spec) roles.push({ spec, source, path: ['roles', i] });
      });
    }
    if (parsed.kind === 'tests') testDocs.push({ spec: parsed.value, source, path: [] });
    if (parsed.kind === 'routes') {
      parsed.value.routes.forEach((item, i) => {
        const spec = parseItem(routeSchema, item, source, ['routes', i], diagnostics);
        if (spec) routes.push({ spec, source, path: ['routes', i] });
      });
    }
  }

  const roleTable = checkRoles(roles, diagnostics);
  const compiled: CompiledRule[] = [];
  const ruleIds = new Map<string, Located<unknown>>();
  const claimId = (id: string, where: Located<unknown>, idPath: readonly PropertyKey[]): void => {
    const earlier = ruleIds.get(id);
    if (earlier) {
      const at = earlier.source.locate(earlier.path);
      diagnostics.push(diagnosticAt(where.source, idPath, `duplicate rule id "${id}": already used at ${earlier.source.file}:${at.line}:${at.col}`));
    } else ruleIds.set(id, where);
  };

  for (const rule of rules) {
    if (rule.spec === null) {
      checkMalformedRule({ spec: rule.item, source: rule.source, path: rule.path }, roleTable, claimId, diagnostics);
      continue;
    }
    const wellFormed = rule as Located<RuleSpec>;
    claimId(wellFormed.spec.id, wellFormed, [...wellFormed.path, 'id']);
    const result = compileRule(wellFormed, roleTable, diagnostics);
    if (result) compiled.push(result);
  }
  for (const role of roles) {
    role.spec.permissions.forEach((permission, i) => {
      const path = [...role.path, 'permissions', i];
      const id = permissionRuleId(role.spec.name, permission, i);
      claimId(id, { spec: permission, source: role.source, path }, [...path, permission.id ? 'id' : 'actions']);
      const result = compilePermission(role.spec.name, permission, id, { spec: permission, source: role.source, path }, roleTable, diagnostics);
      if (result) compiled.push(result);
    });
  }

  const routeTable = compileRoutes(routes, diagnostics);
  const tests = resolveTests(testDocs, ruleIds, diagnostics, routeTable);
  if (diagnostics.length > 0) return { ok: false, diagnostics: sortDiagnostics(diagnostics) };

  const version = policyVersion(dir, documents.map((d) => d.value), options.gitCommit);
  const files = [...new Set(documents.map((d) => d.file))];
  const roleMap = new Map<string, CompiledRole>();
  for (const [name, entry] of roleTable) roleMap.set(name, { name, inherits: entry.inherits, effectiveRoles: entry.effective });
  return { ok: true, policies: { policySet: new PolicySet(version, compiled, roleMap, routeTable), tests, files } };
}

/** A role permission compiles into an allow rule with this id, so decisions can name it. */
export function permissionRuleId(role: string, permission: PermissionSpec, index: number): string {
  return `role:${role}:${permission.id ?? String(index)}`;
}

type ParsedDocument =
  | { kind: 'rules'; value: z.infer<typeof documentSchemas.rules> }
  | { kind: 'roles'; value: z.infer<typeof documentSchemas.roles> }
  | { kind: 'tests'; value: z.infer<typeof documentSchemas.tests> }
  | { kind: 'routes'; value: z.infer<typeof documentSchemas.routes> };

function parseDocument(source: SourceDocument, diagnostics: PolicyDiagnostic[]): ParsedDocument | null {
  const value = source.value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    diagnostics.push(diagnosticAt(source, [], `a policy document must be a mapping with a "kind" (one of ${KNOWN_KINDS.join(', ')})`));
    return null;
  }
  const kind = (value as { kind?: unknown }).kind;
  if (kind === undefined) {
    diagnostics.push(diagnosticAt(source, [], `missing "kind": say which kind of document this is (${KNOWN_KINDS.join(', ')})`));
    return null;
  }
  if (typeof kind !== 'string' || !(KNOWN_KINDS as readonly string[]).includes(kind)) {
    diagnostics.push(diagnosticAt(source, ['kind'], `unknown kind ${JSON.stringify(kind)}: expected one of ${KNOWN_KINDS.join(', ')}`));
    return null;
  }
  const data = parseItem(documentSchemas[kind as PolicyKind] as z.ZodType, value, source, [], diagnostics);
  return data === null ? null : ({ kind, value: data } as ParsedDocument);
}

/** Validates one document or list item, turning schema issues into located diagnostics. */
function parseItem<T>(schema: z.ZodType<T>, value: unknown, source: SourceDocument, at: readonly PropertyKey[], diagnostics: PolicyDiagnostic[]): T | null {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  for (const issue of result.error.issues) {
    const path = [...at, ...(issue.path as PropertyKey[])];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) diagnostics.push(diagnosticAtKey(source, [...path, key], `unknown key "${key}"`));
      continue;
    }
    diagnostics.push(diagnosticAt(source, path, issueMessage(issue.message, path)));
  }
  return null;
}

function issueMessage(message: string, path: readonly PropertyKey[]): string {
  if (message.includes('received undefined')) {
    const last = path[path.length - 1];
    return `"${String(last)}" is required`;
  }
  return message;
}

interface RoleEntry {
  readonly inherits: readonly string[];
  effective: string[];
  /** Roles whose holders count as holding this one: itself and every role inheriting it. */
  holders: Set<string>;
}

function checkRoles(roles: readonly Located<RoleSpec>[], diagnostics: PolicyDiagnostic[]): Map<string, RoleEntry> {
  const table = new Map<string, RoleEntry>();
  const firstSeen = new Map<string, Located<RoleSpec>>();
  for (const role of roles) {
    const earlier = firstSeen.get(role.spec.name);
    if (earlier) {
      const at = earlier.source.locate(earlier.path);
      diagnostics.push(diagnosticAt(role.source, [...role.path, 'name'], `duplicate role "${role.spec.name}": already defined at ${earlier.source.file}:${at.line}:${at.col}`));
      continue;
    }
    firstSeen.set(role.spec.name, role);
    table.set(role.spec.name, { inherits: role.spec.inherits ?? [], effective: [], holders: new Set() });
  }
  for (const role of firstSeen.values()) {
    (role.spec.inherits ?? []).forEach((parent, i) => {
      if (!table.has(parent)) {
        diagnostics.push(diagnosticAt(role.source, [...role.path, 'inherits', i], `role "${role.spec.name}" inherits unknown role "${parent}"`));
      }
    });
  }
  for (const [name, entry] of table) {
    const seen = new Set<string>([name]);
    const stack = [...entry.inherits];
    while (stack.length > 0) {
      const parent = stack.pop() as string;
      if (parent === name) {
        const role = firstSeen.get(name) as Located<RoleSpec>;
        diagnostics.push(diagnosticAt(role.source, [...role.path, 'inherits'], `role "${name}" inherits itself through a cycle`));
        break;
      }
      if (seen.has(parent)) continue;
      seen.add(parent);
      stack.push(...(table.get(parent)?.inherits ?? []));
    }
    entry.effective = [...seen].sort();
  }
  for (const [name, entry] of table) {
    for (const granted of entry.effective) table.get(granted)?.holders.add(name);
  }
  return table;
}

function roleHoldersFor(
  roles: readonly string[] | undefined,
  table: Map<string, RoleEntry>,
  where: Located<unknown>,
  rolesPath: readonly PropertyKey[],
  diagnostics: PolicyDiagnostic[],
): Set<string> | null {
  if (!roles) return null;
  const holders = new Set<string>();
  roles.forEach((role, i) => {
    const entry = table.get(role);
    if (!entry) {
      diagnostics.push(diagnosticAt(where.source, [...rolesPath, i], `unknown role "${role}": define it in a roles file or fix the name`));
      return;
    }
    for (const holder of entry.holders) holders.add(holder);
  });
  return holders;
}

function compileWhen(when: string | undefined, where: Located<unknown>, diagnostics: PolicyDiagnostic[]): Condition | null {
  if (when === undefined) return null;
  const compiled = compileCondition(when);
  if (compiled.ok) return compiled.evaluate;
  const column = compiled.offset === null ? '' : ` (column ${compiled.offset + 1} of the condition)`;
  diagnostics.push(diagnosticAt(where.source, [...where.path, 'when'], `condition does not compile: ${compiled.message}${column}`));
  return null;
}

/**
 * A rule that failed its schema still gets the cross-file checks its well-formed parts
 * allow, so one run reports every error rather than one layer of them at a time.
 */
function checkMalformedRule(
  rule: Located<unknown>,
  roles: Map<string, RoleEntry>,
  claimId: (id: string, where: Located<unknown>, idPath: readonly PropertyKey[]) => void,
  diagnostics: PolicyDiagnostic[],
): void {
  if (rule.spec === null || typeof rule.spec !== 'object') return;
  const spec = rule.spec as { id?: unknown; when?: unknown; principal?: { roles?: unknown } };
  if (typeof spec.id === 'string') claimId(spec.id, rule, [...rule.path, 'id']);
  if (typeof spec.when === 'string') compileWhen(spec.when, rule, diagnostics);
  const named = spec.principal?.roles;
  if (Array.isArray(named) && named.every((r): r is string => typeof r === 'string')) {
    roleHoldersFor(named, roles, rule, [...rule.path, 'principal', 'roles'], diagnostics);
  }
}

function compileRule(rule: Located<RuleSpec>, roles: Map<string, RoleEntry>, diagnostics: PolicyDiagnostic[]): CompiledRule | null {
  const { spec } = rule;
  const before = diagnostics.length;
  const matchers: AttributeMatcher[] = [];
  const addAttributes = (part: MatchedPart, attributes: Record<string, unknown> | undefined): void => {
    if (!attributes) return;
    for (const [key, matcherSpec] of Object.entries(attributes)) {
      const { test, expected } = compileMatcher(matcherSpec as never);
      matchers.push({ label: `${part}.attributes.${key}`, expected, read: attributeReader(part, key), test });
    }
  };
  if (spec.principal?.id !== undefined) {
    const { test, expected } = compileMatcher(spec.principal.id);
    matchers.push({ label: 'principal.id', expected, read: (r) => r.principal.id, test });
  }
  if (spec.resource?.id !== undefined) {
    const { test, expected } = compileMatcher(spec.resource.id);
    matchers.push({ label: 'resource.id', expected, read: (r) => r.resource.id, test });
  }
  addAttributes('principal', spec.principal?.attributes);
  addAttributes('resource', spec.resource?.attributes);
  addAttributes('context', spec.context?.attributes);
  const roleHolders = roleHoldersFor(spec.principal?.roles, roles, rule, [...rule.path, 'principal', 'roles'], diagnostics);
  const condition = compileWhen(spec.when, rule, diagnostics);
  if (diagnostics.length > before) return null;
  const type = spec.resource?.type;
  return Object.freeze({
    id: spec.id,
    effect: spec.effect === 'allow' ? 'ALLOW' : 'DENY',
    description: spec.description ?? null,
    file: rule.source.file,
    line: rule.source.locate(rule.path).line,
    origin: 'rule',
    actions: Object.freeze([...new Set(spec.actions)]),
    resourceTypes: type === undefined ? null : Object.freeze(Array.isArray(type) ? [...type] : [type]),
    roles: spec.principal?.roles ?? null,
    roleHolders,
    matchers: Object.freeze(matchers),
    condition,
    conditionSource: spec.when ?? null,
  } satisfies CompiledRule);
}

function compilePermission(
  role: string,
  spec: PermissionSpec,
  id: string,
  where: Located<PermissionSpec>,
  roles: Map<string, RoleEntry>,
  diagnostics: PolicyDiagnostic[],
): CompiledRule | null {
  const before = diagnostics.length;
  const roleHolders = roleHoldersFor([role], roles, where, [], diagnostics);
  const condition = compileWhen(spec.when, where, diagnostics);
  if (diagnostics.length > before) return null;
  return Object.freeze({
    id,
    effect: 'ALLOW',
    description: spec.description ?? `granted by role ${role}`,
    file: where.source.file,
    line: where.source.locate(where.path).line,
    origin: 'role',
    actions: Object.freeze([...new Set(spec.actions)]),
    resourceTypes: spec.resources ? Object.freeze([...spec.resources]) : null,
    roles: [role],
    roleHolders,
    matchers: Object.freeze([]),
    condition,
    conditionSource: spec.when ?? null,
  } satisfies CompiledRule);
}

function resolveTests(
  docs: readonly Located<TestsDocument>[],
  ruleIds: ReadonlyMap<string, unknown>,
  diagnostics: PolicyDiagnostic[],
  routes: RouteTable,
): PolicyTestCase[] {
  const cases: PolicyTestCase[] = [];
  for (const { spec, source } of docs) {
    spec.cases.forEach((testCase, i) => {
      const path = ['cases', i];
      const principal = typeof testCase.principal === 'string' ? spec.principals[testCase.principal] : testCase.principal;
      if (!principal) {
        diagnostics.push(diagnosticAt(source, [...path, 'principal'], `unknown principal "${String(testCase.principal)}": define it under "principals" in this file`));
      }
      if (testCase.http) {
        const routed = routeTestRequest(testCase.http, testCase, routes);
        if (typeof routed === 'string') diagnostics.push(diagnosticAt(source, [...path, 'http'], routed));
        (testCase.expect.rules ?? []).forEach((id, j) => {
          if (!ruleIds.has(id)) diagnostics.push(diagnosticAt(source, [...path, 'expect', 'rules', j], `expected rule "${id}" does not exist`));
        });
        if (!principal || typeof routed === 'string') return;
        cases.push({
          suite: spec.name,
          name: testCase.name,
          file: source.file,
          line: source.locate(path).line,
          request: { principal, ...routed } as DecisionRequest,
          expect: {
            effect: testCase.expect.effect.toUpperCase() as Effect,
            reason: testCase.expect.reason ?? null,
            rules: testCase.expect.rules ?? null,
          },
          http: testCase.http,
        });
        return;
      }
      if (testCase.action === undefined) diagnostics.push(diagnosticAt(source, path, '"action" is required (or write the case as an http request)'));
      if (testCase.resource === undefined) diagnostics.push(diagnosticAt(source, path, '"resource" is required (or write the case as an http request)'));
      const resource = typeof testCase.resource === 'string' ? spec.resources[testCase.resource] : testCase.resource;
      if (!resource && testCase.resource !== undefined) {
        diagnostics.push(diagnosticAt(source, [...path, 'resource'], `unknown resource "${String(testCase.resource)}": define it under "resources" in this file`));
      }
      (testCase.expect.rules ?? []).forEach((id, j) => {
        if (!ruleIds.has(id)) diagnostics.push(diagnosticAt(source, [...path, 'expect', 'rules', j], `expected rule "${id}" does not exist`));
      });
      if (!principal || !resource || testCase.action === undefined) return;
      cases.push({
        suite: spec.name,
        name: testCase.name,
        file: source.file,
        line: source.locate(path).line,
        request: {
          principal,
          action: testCase.action,
          resource,
          context: testCase.context ?? { attributes: {} },
        } as DecisionRequest,
        expect: {
          effect: testCase.expect.effect.toUpperCase() as Effect,
          reason: testCase.expect.reason ?? null,
          rules: testCase.expect.rules ?? null,
        },
      });
    });
  }
  return cases;
}

/** The action, resource and context the routes make of a test case's HTTP request, or why they make none. */
function routeTestRequest(
  http: HttpTestRequest,
  testCase: { action?: unknown; resource?: unknown; context?: unknown },
  routes: RouteTable,
): RoutedRequest | string {
  if (testCase.action !== undefined || testCase.resource !== undefined || testCase.context !== undefined) {
    return 'a case is either an http request or action, resource and context, not both';
  }
  const q = http.path.indexOf('?');
  const path = q === -1 ? http.path : http.path.slice(0, q);
  const match = routes.match(http.method, path);
  if (match.kind === 'invalid') return match.message;
  if (match.kind === 'unmatched') return `no route matches ${http.method} ${path}: add one to a routes file`;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(http.headers)) headers[name.toLowerCase()] = value;
  return match.route.resolve(
    { method: http.method, path, query: q === -1 ? '' : http.path.slice(q + 1), headers, source: { address: null, principal: null }, extensions: {} },
    match.params,
  );
}
