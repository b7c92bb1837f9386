import type { DecisionRequest, Effect, Principal } from '../../types.js';
import type { PolicyDiagnostic } from '../diagnostic.js';
import type { Stage } from '../pipeline.js';
import type { RoutedRequest, RouteTable } from '../routes.js';
import type { HttpTestRequest, TestCaseSpec, TestSuiteSpec } from '../schema.js';
import { diagnosticAt, type SourceDocument } from '../source.js';
import type { PolicyTestCase } from '../loaded.js';
import type { LoadState } from './state.js';
import type { AttributeSchemas } from '../attribute-schema.js';

type Report = (path: readonly PropertyKey[], message: string) => void;

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

/** What a case asks about besides the principal: from its HTTP request, or as written. Null when it cannot be resolved (reported). */
function targetOf(testCase: TestCaseSpec, suite: TestSuiteSpec, routes: RouteTable, report: Report): RoutedRequest | null {
  if (testCase.http) {
    const routed = routeTestRequest(testCase.http, testCase, routes);
    if (typeof routed !== 'string') return routed;
    report(['http'], routed);
    return null;
  }
  if (testCase.action === undefined) report([], '"action" is required (or write the case as an http request)');
  if (testCase.resource === undefined) report([], '"resource" is required (or write the case as an http request)');
  const resource = typeof testCase.resource === 'string' ? suite.resources[testCase.resource] : testCase.resource;
  if (!resource && testCase.resource !== undefined) {
    report(['resource'], `unknown resource "${String(testCase.resource)}": define it under "resources" in this file`);
  }
  if (!resource || testCase.action === undefined) return null;
  return { action: testCase.action, resource, context: testCase.context ?? { attributes: {} } } as RoutedRequest;
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
): PolicyTestCase | null {
  const report: Report = (at, message) => diagnostics.push(diagnosticAt(where.source, [...where.path, ...at], message));
  const principal = typeof testCase.principal === 'string' ? suite.principals[testCase.principal] : testCase.principal;
  if (!principal) report(['principal'], `unknown principal "${String(testCase.principal)}": define it under "principals" in this file`);
  const target = targetOf(testCase, suite, routes, report);
  (testCase.expect.rules ?? []).forEach((id, j) => {
    if (!ruleIds.has(id)) report(['expect', 'rules', j], `expected rule "${id}" does not exist`);
  });
  if (!principal || !target) return null;
  const request = { principal: principal as Principal, ...target } as DecisionRequest;
  // Under `enforcement: reject` such a request is refused before any rule sees it: a case must describe one that reaches the rules.
  const violations = schemas !== null && schemas.enforcement === 'reject' ? schemas.violations(request) : null;
  if (violations !== null) {
    report([], `this case's request breaks the attribute schema (enforcement: reject refuses it before any rule): ${violations.join('; ')}`);
    return null;
  }
  return {
    suite: suite.name,
    name: testCase.name,
    file: where.source.file,
    line: where.source.locate(where.path).line,
    request,
    expect: {
      effect: testCase.expect.effect.toUpperCase() as Effect,
      reason: testCase.expect.reason ?? null,
      rules: testCase.expect.rules ?? null,
    },
    ...(testCase.http ? { http: testCase.http } : {}),
  };
}

/** tests: every test case resolved against the fixtures of its file, the routes and the rule ids. */
export const testsStage: Stage<LoadState> = {
  name: 'tests',
  *run(state) {
    for (const { source, document } of state.documents) {
      const content = document.content;
      if (content?.kind !== 'tests' || content.suite === null) continue;
      for (let i = 0; i < content.items.length; i++) {
        const { spec } = content.items.at(i)!.checked;
        if (spec === null) continue;
        const resolved = resolveTestCase(spec, content.suite, { source, path: ['cases', i] }, state.ruleIds, state.routes, state.diagnostics, state.attributeSchemas);
        if (resolved) state.tests.push(resolved);
        yield;
      }
    }
  },
};
