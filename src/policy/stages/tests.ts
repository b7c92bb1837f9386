import type { DecisionRequest, Effect, Principal, Resource } from '../../types.js';
import type { PolicyDiagnostic } from '../diagnostic.js';
import type { Stage, StageRun } from '../pipeline.js';
import type { RoutedRequest, RouteTable } from '../routes.js';
import type { FixturesSpec, HttpTestRequest, TestCaseSpec, TestSuiteSpec } from '../schema.js';
import { diagnosticAt, type SourceDocument } from '../source.js';
import type { PolicyTestCase } from '../loaded.js';
import type { LoadState } from './state.js';
import type { AttributeSchemas } from '../attribute-schema.js';
import { didYouMean, someOf } from '../suggest.js';
import { Directory } from '../directory.js';
import { RequestMeter } from '../request-bounds.js';

type Report = (path: readonly PropertyKey[], message: string) => void;

/** The named principals and resources a test file's cases may use: its own, then those of the fixtures files it lists, in order. */
export interface Fixtures {
  principal(name: string): Principal | undefined;
  resource(name: string): Resource | undefined;
}

/** Fixtures of one suite alone (no shared files). */
export function ownFixtures(suite: Pick<TestSuiteSpec, 'principals' | 'resources'>, shared: readonly FixturesSpec[] = []): Fixtures {
  const find = <T>(pick: (f: Pick<TestSuiteSpec, 'principals' | 'resources'>) => Record<string, unknown>, name: string): T | undefined => {
    for (const set of [suite, ...shared]) {
      const table = pick(set);
      if (Object.prototype.hasOwnProperty.call(table, name)) return table[name] as T;
    }
    return undefined;
  };
  return { principal: (name) => find<Principal>((f) => f.principals, name), resource: (name) => find<Resource>((f) => f.resources, name) };
}

/** The action, resource and context the routes make of a test case's HTTP request, or why they make none. */
function routeTestRequest(http: HttpTestRequest, testCase: TestCaseSpec, routes: RouteTable): RoutedRequest | string {
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
  const routed = match.route.resolve(
    { method: http.method, path, query: q === -1 ? '' : http.path.slice(q + 1), headers, source: { address: null, principal: null }, extensions: {} },
    match.params,
  );
  // A gateway refuses such a request before any rule sees it: a case describes one that reaches the rules.
  return routed.refusal === undefined ? routed : `the routes refuse this request: ${routed.refusal}`;
}

const UNKNOWN_HINT = 'define it under "%s" in this file, or in a fixtures file this file lists under "fixtures"';

/** What a case asks about besides the principal: from its HTTP request, or as written. Null when it cannot be resolved (reported). */
function targetOf(testCase: TestCaseSpec, fixtures: Fixtures, routes: RouteTable, report: Report): RoutedRequest | null {
  if (testCase.http) {
    const routed = routeTestRequest(testCase.http, testCase, routes);
    if (typeof routed !== 'string') return routed;
    report(['http'], routed);
    return null;
  }
  if (testCase.action === undefined) report([], '"action" is required (or write the case as an http request)');
  if (testCase.resource === undefined) report([], '"resource" is required (or write the case as an http request)');
  const resource = typeof testCase.resource === 'string' ? fixtures.resource(testCase.resource) : testCase.resource;
  if (!resource && testCase.resource !== undefined) {
    report(['resource'], `unknown resource "${String(testCase.resource)}": ${UNKNOWN_HINT.replace('%s', 'resources')}`);
  }
  if (!resource || testCase.action === undefined) return null;
  return { action: testCase.action, resource, context: testCase.context ?? { attributes: {} } } as RoutedRequest;
}

/**
 * Under `enforcement: reject` a request breaking the schema is refused before any rule: a case must describe one
 * that reaches the rules. Checked as the server checks it: after the directories filled the request in.
 */
function requestProblem(request: DecisionRequest, schemas: AttributeSchemas | null, directory: Directory): string | null {
  // What the server refuses before the directories or the schema see it (sizes, reserved names, NaN): a case cannot describe it.
  const refused = new RequestMeter().problem(request);
  if (refused !== null) return `this case's request is one the server refuses (DENIED_INVALID_REQUEST) before any rule: ${refused}`;
  const violations = schemas !== null && schemas.enforcement === 'reject' ? schemas.violations(directory.complete(request)) : null;
  return violations === null ? null : `this case's request breaks the attribute schema (enforcement: reject refuses it before any rule): ${violations.join('; ')}`;
}

/** Resolves one case's fixtures and routes into a full request; null when something it names does not exist (reported). */
export function resolveTestCase(
  testCase: TestCaseSpec,
  suite: TestSuiteSpec,
  where: { readonly source: SourceDocument; readonly path: readonly PropertyKey[] },
  ruleIds: ReadonlyMap<string, unknown>,
  routes: RouteTable,
  diagnostics: PolicyDiagnostic[],
  schemas: AttributeSchemas | null = null,
  fixtures: Fixtures = ownFixtures(suite),
  directory: Directory = Directory.EMPTY,
): PolicyTestCase | null {
  const report: Report = (at, message) => diagnostics.push(diagnosticAt(where.source, [...where.path, ...at], message));
  const expect = testCase.expect;
  if (Array.isArray(expect)) {
    report(['expect'], 'a table of expectations is for a matrix case: give "principals", "actions" and "resources" (lists of fixture names)');
    return null;
  }
  if (testCase.principals !== undefined || testCase.actions !== undefined || testCase.resources !== undefined) {
    report([], 'a matrix case ("principals", "actions", "resources") takes a table under "expect": a list of {principal, resource, actions}');
    return null;
  }
  if (testCase.principal === undefined) {
    report([], '"principal" is required');
    return null;
  }
  const principal = typeof testCase.principal === 'string' ? fixtures.principal(testCase.principal) : testCase.principal;
  if (!principal) report(['principal'], `unknown principal "${String(testCase.principal)}": ${UNKNOWN_HINT.replace('%s', 'principals')}`);
  const target = targetOf(testCase, fixtures, routes, report);
  (expect.rules ?? []).forEach((id, j) => {
    if (!ruleIds.has(id)) report(['expect', 'rules', j], `expected rule "${id}" does not exist${didYouMean(id, ruleIds.keys())}`);
  });
  if (!principal || !target) return null;
  const request = { principal: principal as Principal, ...target } as DecisionRequest;
  const problem = requestProblem(request, schemas, directory);
  if (problem !== null) {
    report([], problem);
    return null;
  }
  return {
    suite: suite.name,
    name: testCase.name,
    file: where.source.file,
    line: where.source.locate(where.path).line,
    request,
    expect: { effect: expect.effect.toUpperCase() as Effect, reason: expect.reason ?? null, rules: expect.rules ?? null },
    ...(testCase.http ? { http: testCase.http } : {}),
  };
}

/**
 * Combinations of a matrix case made between chances to pause: 400 principals × 400
 * resources held a reload's deciding thread for 167 ms in one go.
 */
export const MATRIX_CASES_PER_PAUSE = 500;

/**
 * The most cases the matrix cases of one policy set may make together, and the most
 * entries their tables may spell out. A 9 KB test file naming one fixture a thousand
 * times in each list asked for a billion cases: the load ran out of memory, and a
 * server that took the file in a reload died.
 */
export const MAX_MATRIX_CASES = 200_000;

/** What the matrix cases of one load may still make. */
export interface MatrixBudget {
  left: number;
}

/**
 * A matrix case: one case per principal × action × resource (fixture names), named
 * `<name> [principal action resource]`. The table says the effect per action for each
 * principal and resource it lists; a combination it does not list is expected to be denied.
 */
export function* resolveMatrixCase(
  testCase: TestCaseSpec,
  suite: TestSuiteSpec,
  where: { readonly source: SourceDocument; readonly path: readonly PropertyKey[] },
  schemas: AttributeSchemas | null,
  fixtures: Fixtures,
  diagnostics: PolicyDiagnostic[],
  directory: Directory = Directory.EMPTY,
  budget: MatrixBudget = { left: MAX_MATRIX_CASES },
): StageRun<PolicyTestCase[]> {
  const report: Report = (at, message) => diagnostics.push(diagnosticAt(where.source, [...where.path, ...at], message));
  const { principals, actions, resources } = testCase;
  if (principals === undefined || actions === undefined || resources === undefined) {
    report([], 'a matrix case needs all of "principals", "actions" and "resources"');
    return [];
  }
  if (testCase.principal !== undefined || testCase.action !== undefined || testCase.resource !== undefined || testCase.http !== undefined) {
    report([], 'a matrix case has "principals", "actions" and "resources", not "principal", "action", "resource" or "http"');
    return [];
  }
  if (!Array.isArray(testCase.expect)) {
    report(['expect'], 'a matrix case expects a table: a list of {principal, resource, actions: {action: allow|deny}}');
    return [];
  }
  const listed = (value: string | string[]): string[] => (Array.isArray(value) ? value : [value]);
  const made = principals.length * actions.length * resources.length;
  let spelledOut = 0;
  for (const row of testCase.expect) spelledOut += listed(row.principal).length * listed(row.resource).length * Object.keys(row.actions).length;
  if (Math.max(made, spelledOut) > budget.left) {
    const table = spelledOut > made ? ` and its table spells out ${spelledOut}` : '';
    report([], `a matrix case of ${principals.length} principals × ${actions.length} actions × ${resources.length} resources makes ${made} cases${table}; the matrix cases of a policy set may make at most ${MAX_MATRIX_CASES} in all (${budget.left} left for this one): list fewer names, or test the rest with verdict check`);
    return [];
  }
  budget.left -= made;
  const before = diagnostics.length;
  // The table and the names are gone through with a chance to pause as often as the cases are: a few kilobytes can name 200,000.
  let steps = 0;
  const principalOf = new Map<string, Principal>();
  for (let i = 0; i < principals.length; i++) {
    if (++steps % MATRIX_CASES_PER_PAUSE === 0) yield;
    const name = principals[i]!;
    const found = fixtures.principal(name);
    if (found) principalOf.set(name, found);
    else report(['principals', i], `unknown principal "${name}": ${UNKNOWN_HINT.replace('%s', 'principals')}`);
  }
  const resourceOf = new Map<string, Resource>();
  for (let i = 0; i < resources.length; i++) {
    if (++steps % MATRIX_CASES_PER_PAUSE === 0) yield;
    const name = resources[i]!;
    const found = fixtures.resource(name);
    if (found) resourceOf.set(name, found);
    else report(['resources', i], `unknown resource "${name}": ${UNKNOWN_HINT.replace('%s', 'resources')}`);
  }
  const expected = new Map<string, Effect>();
  const named = { principals: new Set(principals), actions: new Set(actions), resources: new Set(resources) };
  for (let r = 0; r < testCase.expect.length; r++) {
    const row = testCase.expect[r]!;
    const rowPrincipals = listed(row.principal);
    const rowResources = listed(row.resource);
    rowPrincipals.forEach((p) => named.principals.has(p) || report(['expect', r, 'principal'], `"${p}" is not one of the case's principals (${someOf(principals)})`));
    rowResources.forEach((x) => named.resources.has(x) || report(['expect', r, 'resource'], `"${x}" is not one of the case's resources (${someOf(resources)})`));
    for (const [action, effect] of Object.entries(row.actions)) {
      if (!named.actions.has(action)) report(['expect', r, 'actions', action], `"${action}" is not one of the case's actions (${someOf(actions)})`);
      for (const p of rowPrincipals) {
        for (const x of rowResources) {
          if (++steps % MATRIX_CASES_PER_PAUSE === 0) yield;
          const key = `${p}\u0000${action}\u0000${x}`;
          if (expected.has(key)) report(['expect', r], `${p} ${action} ${x} is already in the table`);
          expected.set(key, effect.toUpperCase() as Effect);
        }
      }
    }
  }
  if (diagnostics.length > before) return [];
  const cases: PolicyTestCase[] = [];
  let combinations = 0;
  const line = where.source.locate(where.path).line;
  for (const p of principals) {
    for (const action of actions) {
      for (const x of resources) {
        if (++combinations % MATRIX_CASES_PER_PAUSE === 0) yield;
        const request = { principal: principalOf.get(p)!, action, resource: resourceOf.get(x)!, context: testCase.context ?? { attributes: {} } } as DecisionRequest;
        const problem = requestProblem(request, schemas, directory);
        if (problem !== null) {
          report([], `${p} ${action} ${x}: ${problem}`);
          continue;
        }
        const effect = expected.get(`${p}\u0000${action}\u0000${x}`) ?? 'DENY';
        cases.push({ suite: suite.name, name: `${testCase.name} [${p} ${action} ${x}]`, file: where.source.file, line, request, expect: { effect, reason: null, rules: null } });
      }
    }
  }
  return cases;
}

/** tests: every test case resolved against the fixtures of its file and the fixtures files it lists, the routes and the rule ids. */
export const testsStage: Stage<LoadState> = {
  name: 'tests',
  *run(state) {
    const matrixBudget: MatrixBudget = { left: MAX_MATRIX_CASES };
    const shared = new Map<string, { spec: FixturesSpec; source: SourceDocument }>();
    for (const { source, document } of state.documents) {
      const content = document.content;
      if (content?.kind !== 'fixtures' || content.fixtures === null) continue;
      const earlier = shared.get(content.fixtures.name);
      if (earlier) {
        state.diagnostics.push(diagnosticAt(source, ['name'], `duplicate fixtures name "${content.fixtures.name}": already used in ${earlier.source.file}`));
        continue;
      }
      shared.set(content.fixtures.name, { spec: content.fixtures, source });
    }
    for (const { source, document } of state.documents) {
      const content = document.content;
      if (content?.kind !== 'tests' || content.suite === null) continue;
      const suite = content.suite;
      const used: FixturesSpec[] = [];
      (suite.fixtures ?? []).forEach((name, i) => {
        const found = shared.get(name);
        if (found) used.push(found.spec);
        else state.diagnostics.push(diagnosticAt(source, ['fixtures', i], `unknown fixtures "${name}": no kind: fixtures file has this name${didYouMean(name, shared.keys())}`));
      });
      const fixtures = ownFixtures(suite, used);
      for (let i = 0; i < content.items.length; i++) {
        const { spec } = content.items.at(i)!.checked;
        if (spec === null) continue;
        const where = { source, path: ['cases', i] };
        if (spec.principals !== undefined && Array.isArray(spec.expect)) {
          // One by one, as the schema stage adds problems: a matrix of principals × actions × resources can pass what one call takes as arguments.
          for (const matrixCase of yield* resolveMatrixCase(spec, suite, where, state.attributeSchemas, fixtures, state.diagnostics, state.directory, matrixBudget)) state.tests.push(matrixCase);
        } else {
          const resolved = resolveTestCase(spec, suite, where, state.ruleIds, state.routes, state.diagnostics, state.attributeSchemas, fixtures, state.directory);
          if (resolved) state.tests.push(resolved);
        }
        yield;
      }
    }
  },
};
