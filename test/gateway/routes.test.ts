import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatDiagnostic, type PolicyDiagnostic } from '../../src/policy/diagnostic.js';
import { loadPolicies } from '../../src/policy/load.js';
import { parsePathTemplate, splitRequestPath, type HttpRequestFacts, type RouteTable } from '../../src/policy/routes.js';
import { loadFiles, removeTempDirs, writePolicyDir } from '../helpers/policies.js';

afterAll(removeTempDirs);

function tableOf(routes: object[]): RouteTable {
  return loadFiles({ 'routes.yaml': { kind: 'routes', routes } }).policySet.routes;
}

function route(method: string | string[], path: string, action = 'act', extra: object = {}): object {
  return { method, path, action, resource: { type: 'thing' }, ...extra };
}

function facts(overrides: Partial<HttpRequestFacts> = {}): HttpRequestFacts {
  return { method: 'GET', path: '/', query: '', headers: {}, source: { address: null, principal: null }, extensions: {}, ...overrides };
}

/** The action and params of the route a request matches, or the kind of non-match. */
function matchOf(table: RouteTable, method: string, path: string): string {
  const match = table.match(method, path);
  if (match.kind !== 'matched') return match.kind;
  return `${match.route.action}(${match.params.join(',')})`;
}

describe('route matching', () => {
  const table = tableOf([
    route('POST', '/v1/models/{model}/predict', 'predict'),
    route(['GET', 'HEAD'], '/v1/models/{model}', 'read'),
    route('DELETE', '/v1/models/{model}', 'delete'),
    route('GET', '/v1/models/featured', 'featured'),
    route('POST', '/v1/models/{model}:predict', 'predict-colon'),
    route('GET', '/v1/orgs/{org}/models/{model}/versions/v{version}', 'version'),
    route('GET', '/', 'root'),
  ]);

  it.each([
    ['POST', '/v1/models/fraud-v3/predict', 'predict(fraud-v3)'],
    ['GET', '/v1/models/fraud-v3', 'read(fraud-v3)'],
    ['HEAD', '/v1/models/fraud-v3', 'read(fraud-v3)'],
    ['DELETE', '/v1/models/fraud-v3', 'delete(fraud-v3)'],
    // A literal segment beats a parameter, whatever the order of the routes.
    ['GET', '/v1/models/featured', 'featured()'],
    ['DELETE', '/v1/models/featured', 'delete(featured)'],
    // More literal text around a parameter beats less: TF Serving's `:predict` style.
    ['POST', '/v1/models/fraud-v3:predict', 'predict-colon(fraud-v3)'],
    ['GET', '/v1/orgs/acme/models/m1/versions/v12', 'version(acme,m1,12)'],
    ['GET', '/', 'root()'],
    // Parameters are percent-decoded once.
    ['POST', '/v1/models/m%20one/predict', 'predict(m one)'],
  ])('%s %s → %s', (method, path, expected) => {
    expect(matchOf(table, method, path)).toBe(expected);
  });

  it.each([
    ['PUT', '/v1/models/m1', 'a method no route lists'],
    ['GET', '/v1/models/m1/predict', 'a method the path has no route for'],
    ['post', '/v1/models/m1/predict', 'a lower-case method'],
    ['GET', '/v1/models/m1/', 'a trailing slash'],
    ['GET', '/v1//models/m1', 'an empty segment'],
    ['GET', '/v1/models', 'a missing parameter'],
    ['GET', '/v1/orgs/acme/models/m1/versions/12', 'a segment without its literal prefix'],
    ['GET', '/v1/orgs/acme/models/m1/versions/v', 'an empty parameter'],
    ['GET', '/v2/models/m1', 'an unknown prefix'],
  ])('%s %s is unmatched (%s)', (method, path) => {
    expect(matchOf(table, method, path)).toBe('unmatched');
  });

  it.each([
    ['/v1/models/a%2Fb/predict', /encoded slash/],
    ['/v1/models/a%5Cb/predict', /encoded slash/],
    ['/v1/models/../admin', /dot segment/],
    ['/v1/models/%2e%2e/predict', /encoded unreserved character \("%2e" in segment 3\)/],
    ['/v1/models/%67lobex-secret/predict', /encoded unreserved character \("%67" in segment 3\)/],
    ['/v1/%6Dodels/m1', /encoded unreserved character/],
    ['/v1/models/m%2D1', /encoded unreserved character/],
    // Once decoded `%63redit-risk-v2` here, `credit-risk-v2` to an upstream that decodes the path again.
    ['/v1/models/%2563redit-risk-v2/predict', /encoded "%" in segment 3 \(an upstream that decodes the path twice/],
    ['/v1/models/credit-risk-v2%2500/predict', /encoded "%" in segment 3/],
    ['/v1/models/m%7e1', /encoded unreserved character/],
    ['/v1/models/./predict', /dot segment/],
    ['/v1/models/%E0%A4%A/predict', /bad percent-encoding/],
    ['/v1/models/a%00b/predict', /NUL/],
    // Java servers read `fraud-v3;x=1` as fraud-v3: a deny on that id would miss.
    ['/v1/models/fraud-v3;x=1/predict', /";" in segment 3 \(a path parameter some upstreams strip/],
    ['/v1/models/fraud-v3%3Bjsessionid=1/predict', /";" in segment 3/],
    ['/v1/models/fraud-v3\\..\\admin', /backslash in segment 3/],
    // A gateway forwarding the client's URI as it came passes a raw "#": the upstream reads a fragment, the id would keep it.
    ['/v1/models/credit-risk-v2#', /raw "#" in segment 3, which a path may not hold unencoded/],
    ['/v1/models/credit-risk-v2#x/predict', /raw "#" in segment 3/],
    ['/v1/models/a b', /raw " " in segment 3/],
    ['/v1/models/caf\u00e9', /raw "\u00e9" in segment 3/],
    ['/v1/models/a|b', /raw "\|" in segment 3/],
    ['v1/models/m1', /must start with "\/"/],
    ['/' + 'a/'.repeat(70), /more than 64 segments/],
  ])('refuses %s rather than guess what the upstream reads', (path, message) => {
    const match = table.match('POST', path);
    expect(match.kind).toBe('invalid');
    if (match.kind === 'invalid') expect(match.message).toMatch(message);
  });

  it('splits a path without building any pattern per request', () => {
    expect(splitRequestPath('/')).toEqual([]);
    expect(splitRequestPath('/a/b%20c')).toEqual(['a', 'b c']);
  });

  it('matches the same whatever the order of files and routes', () => {
    const reversed = loadFiles({
      'a.yaml': { kind: 'routes', routes: [route('DELETE', '/v1/models/{model}', 'delete'), route('POST', '/v1/models/{model}:predict', 'predict-colon')] },
      'b.yaml': { kind: 'routes', routes: [route('GET', '/v1/models/featured', 'featured'), route('POST', '/v1/models/{model}/predict', 'predict')] },
      'c.yaml': { kind: 'routes', routes: [route(['GET', 'HEAD'], '/v1/models/{model}', 'read')] },
    }).policySet.routes;
    for (const [method, path] of [
      ['GET', '/v1/models/featured'],
      ['POST', '/v1/models/x:predict'],
      ['POST', '/v1/models/x/predict'],
      ['DELETE', '/v1/models/featured'],
    ] as const) {
      expect(matchOf(reversed, method, path), `${method} ${path}`).toBe(matchOf(table, method, path));
    }
  });
});

describe('what a route makes of a request', () => {
  const table = tableOf([
    route('POST', '/v1/orgs/{org}/models/{model}/predict', 'predict', {
      resource: {
        type: 'model',
        id: '{org}/{model}',
        attributes: {
          org: '{org}',
          tier: '{header.X-Tier}',
          region: '{query.region}',
          label: 'model {model} of {org}',
          braces: '{{literal}}',
          public: false,
          weight: 3,
        },
      },
      context: {
        attributes: {
          ip: '{source.address}',
          peer: '{source.principal}',
          cluster: '{extension.cluster}',
          both: '{query.a}-{query.b}',
        },
      },
    }),
  ]);

  it('fills resource and context from path, query, headers, source and extensions', () => {
    const match = table.match('POST', '/v1/orgs/acme/models/m%201/predict');
    if (match.kind !== 'matched') throw new Error(match.kind);
    const routed = match.route.resolve(
      facts({
        query: 'region=eu&a=1&b=2',
        headers: { 'x-tier': 'gold' },
        source: { address: '10.0.0.9', principal: 'spiffe://acme/gw' },
        extensions: { cluster: 'models' },
      }),
      match.params,
    );
    expect(routed).toEqual({
      action: 'predict',
      resource: {
        type: 'model',
        id: 'acme/m 1',
        attributes: { org: 'acme', tier: 'gold', region: 'eu', label: 'model m 1 of acme', braces: '{literal}', public: false, weight: 3 },
      },
      context: { attributes: { ip: '10.0.0.9', peer: 'spiffe://acme/gw', cluster: 'models', both: '1-2' } },
    });
  });

  it('refuses a request whose header or query parameter that a route reads is repeated', () => {
    const match = table.match('POST', '/v1/orgs/acme/models/m1/predict');
    if (match.kind !== 'matched') throw new Error(match.kind);
    const query = match.route.resolve(facts({ query: 'region=eu&region=us&a=1&b=2', headers: { 'x-tier': 'gold' } }), match.params);
    expect(query.refusal).toMatch(/query parameter region more than once/);
    for (const [sent, why] of [
      ['region=eu&region[]=us&a=1&b=2', /a query parameter other servers read as region \(its name differs in case, or ends in \[\.\.\.\]\)/],
      ['Region=eu&a=1&b=2', /a query parameter other servers read as region/],
      ['region=eu&+region=us&a=1&b=2', /a query parameter other servers read as region/],
      ['region=eu;region=us&a=1&b=2', /a ";" in its query, which some servers read as a separator/],
    ] as const) {
      const cloaked = match.route.resolve(facts({ query: sent, headers: { 'x-tier': 'gold' } }), match.params);
      expect(cloaked.refusal, sent).toMatch(why);
    }
    // Other parameters may take any shape.
    const others = facts({ query: 'region=eu&a=1&b=2&filter[x]=1&Z=2&z=3', headers: { 'x-tier': 'gold' }, source: { address: '10.0.0.9', principal: 'p' }, extensions: { cluster: 'c' } });
    expect(match.route.resolve(others, match.params).refusal).toBeUndefined();
    expect(query.resource.attributes).not.toHaveProperty('region');
    const header = match.route.resolve(facts({ query: 'region=eu', headers: { 'x-tier': 'gold, free' }, repeatedHeaders: new Set(['x-tier']) }), match.params);
    expect(header.refusal).toMatch(/x-tier header more than once/);
    // A repeated header no route reads refuses nothing.
    const unread = match.route.resolve(
      facts({ query: 'region=eu&a=1&b=2', headers: { 'x-tier': 'gold', accept: 'a, b' }, repeatedHeaders: new Set(['accept']), source: { address: '10.0.0.9', principal: 'p' }, extensions: { cluster: 'c' } }),
      match.params,
    );
    expect(unread.refusal).toBeUndefined();
  });

  it('refuses a request that lacks a required value, naming it, the route and the attribute', () => {
    const match = table.match('POST', '/v1/orgs/acme/models/m1/predict');
    if (match.kind !== 'matched') throw new Error(match.kind);
    const full = { query: 'region=eu&a=1&b=2', headers: { 'x-tier': 'gold' }, source: { address: '10.0.0.9', principal: 'spiffe://acme/gw' }, extensions: { cluster: 'models' } };
    expect(match.route.resolve(facts(full), match.params).refusal).toBeUndefined();
    const cases: [Partial<HttpRequestFacts>, RegExp][] = [
      [{ headers: {} }, /^the request has no x-tier header, which the route POST \/v1\/orgs\/\{org\}\/models\/\{model\}\/predict requires for resource\.attributes\.tier/],
      [{ query: 'a=1&b=2' }, /no query parameter region, .* requires for resource\.attributes\.region/],
      [{ query: 'region=eu&a=1' }, /no query parameter b, .* requires for context\.attributes\.both/],
      [{ source: { address: null, principal: 'spiffe://acme/gw' } }, /no source address, .* requires for context\.attributes\.ip/],
      // An own property only: an inherited name (toString) is not an extension.
      [{ extensions: { toString: 'x' } as Record<string, string> }, /no extension cluster, .* requires for context\.attributes\.cluster/],
    ];
    for (const [change, why] of cases) {
      const routed = match.route.resolve(facts({ ...full, ...change }), match.params);
      expect(routed.refusal, JSON.stringify(change)).toMatch(why);
    }
  });

  it('leaves out a value marked optional ({…?}) whose header, query parameter or source is absent', () => {
    const optional = tableOf([
      route('DELETE', '/v1/models/{model}', 'delete', {
        resource: { type: 'model', id: '{model}', attributes: { env: '{header.x-model-env}', tier: '{header.x-tier?}', pair: '{query.a?}-{query.b}' } },
        context: { attributes: { ticket: '{header.x-incident-ticket?}', ip: '{source.address?}', cluster: '{extension.cluster?}' } },
      }),
    ]);
    const match = optional.match('DELETE', '/v1/models/m1');
    if (match.kind !== 'matched') throw new Error(match.kind);
    const routed = match.route.resolve(facts({ query: 'b=2', headers: { 'x-model-env': 'staging' } }), match.params);
    expect(routed.refusal).toBeUndefined();
    expect(routed.resource.attributes).toEqual({ env: 'staging' });
    expect(routed.context.attributes).toEqual({});
    // A required part of a value is still required after an absent optional one.
    expect(match.route.resolve(facts({ query: '', headers: { 'x-model-env': 'staging' } }), match.params).refusal).toMatch(/no query parameter b/);
    // A repeated optional header is refused like any other.
    const repeated = match.route.resolve(facts({ query: 'b=2', headers: { 'x-model-env': 'staging', 'x-incident-ticket': 'INC-1, INC-2' }, repeatedHeaders: new Set(['x-incident-ticket']) }), match.params);
    expect(repeated.refusal).toMatch(/x-incident-ticket header more than once/);
    expect(optional.routes[0]!.attributes).toEqual([
      { path: 'resource.attributes.env', mayBeAbsent: false },
      { path: 'resource.attributes.tier', mayBeAbsent: true },
      { path: 'resource.attributes.pair', mayBeAbsent: true },
      { path: 'context.attributes.ticket', mayBeAbsent: true },
      { path: 'context.attributes.ip', mayBeAbsent: true },
      { path: 'context.attributes.cluster', mayBeAbsent: true },
    ]);
  });

  it('is the same compiled route for every request (no per-request compilation)', () => {
    const a = table.match('POST', '/v1/orgs/a/models/x/predict');
    const b = table.match('POST', '/v1/orgs/b/models/y/predict');
    if (a.kind !== 'matched' || b.kind !== 'matched') throw new Error('unmatched');
    expect(a.route).toBe(b.route);
    expect(table.routes).toHaveLength(1);
    expect(Object.isFrozen(table)).toBe(true);
  });
});

describe('path templates', () => {
  it.each([
    ['v1/models', /starts with "\/"/],
    ['/v1//models', /empty path segment \(character 5 of the path\)/],
    ['/v1/models/', /empty path segment/],
    ['/v1/{model', /unclosed "\{"/],
    ['/v1/model}', /unbalanced "}"/],
    ['/v1/{a}{b}', /more than one parameter/],
    ['/v1/{1st}', /bad parameter name "\{1st\}"/],
    ['/v1/{}', /bad parameter name/],
    ['/v1/{m}/x/{m}', /parameter \{m\} appears twice/],
    ['/v1/models?x=1', /queries are not part of a path template/],
    ['/v1/m%20x', /write literal text unencoded/],
    ['/v1/../x', /"\.\." segment/],
  ])('%s is refused: %s', (path, message) => {
    const parsed = parsePathTemplate(path);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toMatch(message);
  });
});

describe('validation of routes files', () => {
  function diagnosticsOf(text: string, more: Record<string, string> = {}): readonly PolicyDiagnostic[] {
    const result = loadPolicies(writePolicyDir({ 'routes.yaml': text, ...more }));
    if (result.ok) throw new Error('expected diagnostics');
    return result.diagnostics;
  }
  const lines = (d: readonly PolicyDiagnostic[]) => d.map(formatDiagnostic);

  it('names file, line and column of a bad template, an unknown placeholder and a duplicate route, all in one run', () => {
    const diagnostics = diagnosticsOf(
      [
        'kind: routes', //                                           1
        'routes:', //                                                2
        '  - method: POST', //                                       3
        '    path: /v1/models/{model}/predict', //                   4
        '    action: predict', //                                    5
        '    resource: { type: model, id: "{modle}" }', //           6
        '  - method: GET', //                                        7
        '    path: /v1/models/{model', //                            8
        '    action: read', //                                       9
        '    resource: { type: model }', //                         10
        '  - method: [PUT, POST]', //                               11
        '    path: /v1/models/{id}/predict', //                     12
        '    action: predict', //                                   13
        '    resource:', //                                         14
        '      type: model', //                                     15
        '      attributes:', //                                     16
        '        org: "{header.x-org}"', //                         17
        '        key: "{header.Authorization}"', //                 18
        '        where: "{place.x}"', //                            19
        '        brace: "a}b"', //                                  20
        '  - method: get', //                                       21
        '    path: /x', //                                          22
        '    action: "{verb}"', //                                  23
        '    resource: { type: "bad type" }', //                    24
        '    context: { attributes: { ip: "{source.port}" } }', //  25
        '    colour: red', //                                       26
        '',
      ].join('\n'),
    );
    /** [path, line, col (null: only the line is pinned), message] */
    const want: [string, number, number | null, RegExp][] = [
      ['routes[0].resource.id', 6, 34, /unknown placeholder \{modle\}: the path has only \{model\}/],
      ['routes[1].path', 8, 11, /unclosed "\{" \(character 12 of the path\)/],
      ['routes[2].path', 12, 11, /duplicate route POST \/v1\/models\/\{id\}\/predict: POST \/v1\/models\/\{model\}\/predict at routes\.yaml:3:5 matches the same requests/],
      ['routes[2].resource.attributes.key', 18, 14, /carries a credential/],
      ['routes[2].resource.attributes.where', 19, 16, /unknown placeholder \{place\.x\}: use \{name\}/],
      ['routes[2].resource.attributes.brace', 20, 16, /lone "}" at character 2/],
      ['routes[3].method', 21, 13, /upper-case HTTP method/],
      ['routes[3].action', 23, 13, /without placeholders/],
      ['routes[3].resource.type', 24, 23, /a resource type may use/],
      ['routes[3].colour', 26, null, /unknown key "colour"/],
    ];
    for (const [path, line, col, message] of want) {
      const hit = diagnostics.find((d) => d.path === path && message.test(d.message));
      expect(hit, `${path} ${message}; got:\n${lines(diagnostics).join('\n')}`).toBeDefined();
      expect([hit!.file, hit!.line, col === null ? null : hit!.col], path).toEqual(['routes.yaml', line, col]);
    }
    // routes[3]'s context is only checked once its schema passes; nothing else is reported.
    expect(diagnostics.length, lines(diagnostics).join('\n')).toBe(want.length);
  });

  it('finds a duplicate across files, and across a method list', () => {
    const diagnostics = diagnosticsOf('kind: routes\nroutes:\n  - { method: [GET, DELETE], path: "/a/{x}", action: a, resource: { type: t } }\n', {
      'more.yaml': 'kind: routes\nroutes:\n  - { method: DELETE, path: "/a/{y}", action: b, resource: { type: t } }\n',
    });
    expect(lines(diagnostics)).toEqual([
      // Files are read in name order, so the later file's route is the duplicate.
      'routes.yaml:3:36: duplicate route DELETE /a/{x}: DELETE /a/{y} at more.yaml:3:5 matches the same requests (at routes[0].path)',
    ]);
  });

  it('reports a source placeholder with an unknown name and a header placeholder without a name', () => {
    const diagnostics = diagnosticsOf(
      'kind: routes\nroutes:\n  - method: GET\n    path: /x\n    action: a\n    resource: { type: t, id: "{header.}" }\n    context: { attributes: { ip: "{source.port}" } }\n',
    );
    expect(lines(diagnostics)).toEqual([
      'routes.yaml:6:30: placeholder {header.} needs a name after "header.", e.g. {header.x-org} (at routes[0].resource.id)',
      'routes.yaml:7:34: unknown placeholder {source.port}: the source has only {source.address} and {source.principal} (at routes[0].context.attributes.ip)',
    ]);
  });

  it('reports a test case whose http request no route matches, or that mixes both forms', () => {
    const result = loadPolicies(
      writePolicyDir({
        'routes.yaml': { kind: 'routes', routes: [route('GET', '/things/{id}')] },
        'tests/cases.yaml': {
          kind: 'tests',
          name: 'routes',
          cases: [
            { name: 'unrouted', principal: { id: 'p' }, http: { method: 'GET', path: '/nothing' }, expect: { effect: 'deny' } },
            { name: 'both', principal: { id: 'p' }, action: 'read', http: { method: 'GET', path: '/things/1' }, expect: { effect: 'deny' } },
            { name: 'neither', principal: { id: 'p' }, expect: { effect: 'deny' } },
            { name: 'dots', principal: { id: 'p' }, http: { method: 'GET', path: '/things/..' }, expect: { effect: 'deny' } },
          ],
        },
      }),
    );
    if (result.ok) throw new Error('expected diagnostics');
    expect(result.diagnostics.map((d) => `${d.path}: ${d.message}`)).toEqual([
      'cases[0].http: no route matches GET /nothing: add one to a routes file',
      'cases[1].http: a case is either an http request or action, resource and context, not both',
      'cases[2]: "action" is required (or write the case as an http request)',
      'cases[2]: "resource" is required (or write the case as an http request)',
      'cases[3].http: the path has a dot segment (".."); send the normalised path',
    ]);
  });

  it('the example policy set routes predict, read and delete, and its http cases resolve through them', () => {
    const result = loadPolicies(resolve(import.meta.dirname, '../../policies'));
    if (!result.ok) throw new Error(result.diagnostics.map(formatDiagnostic).join('\n'));
    const { policySet, tests } = result.policies;
    expect(policySet.routes.routes.map((r) => `${r.methods.join('|')} ${r.path} → ${r.action} ${r.resourceType}`)).toEqual([
      'POST /v1/models/{model}/predict → predict model',
      'GET|HEAD /v1/models/{model} → read model',
      'DELETE /v1/models/{model} → delete model',
    ]);
    const http = tests.filter((t) => t.http !== undefined);
    expect(http.length).toBeGreaterThanOrEqual(8);
    const predict = http.find((t) => t.name.startsWith('a data scientist calls predict'))!;
    expect(predict.request).toMatchObject({
      action: 'predict',
      resource: { type: 'model', id: 'fraud-detector-v3', attributes: { org: 'acme', classification: 'internal' } },
    });
  });
});
