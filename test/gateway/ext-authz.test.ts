import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision } from '../../src/decisions/query.js';
import { loadPolicies } from '../../src/policy/load.js';
import { EXAMPLE_POLICIES, PRINCIPALS, startGatewayVerdict, type GatewayVerdict, type PrincipalName } from './support.js';

// An ext_authz client the way Envoy is one: built from nothing but the .proto files
// in proto/ (not verdict's descriptor set or its code), sending what Envoy's HTTP
// ext_authz filter sends, with protoc's field names (keepCase), as on the wire.

const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));

interface HeaderValueOption {
  header: { key: string; value: string };
  append_action: string;
}
interface CheckResponse {
  status: { code: number; message: string };
  http_response?: 'ok_response' | 'denied_response';
  ok_response?: { headers: HeaderValueOption[]; headers_to_remove: string[] };
  denied_response?: { status: { code: string }; headers: HeaderValueOption[]; body: string };
  // protobufjs's bundled struct.proto names Value's members in camelCase even with keepCase.
  dynamic_metadata: { fields: Record<string, { stringValue?: string }> };
}

const definition = loadSync('envoy/service/auth/v3/external_auth.proto', {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  defaults: true,
  oneofs: true,
  enums: String,
  longs: String,
});
const envoy = grpc.loadPackageDefinition(definition) as unknown as {
  envoy: { service: { auth: { v3: { Authorization: new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client } } } };
};

let server: GatewayVerdict;
let client: grpc.Client;
let requestCounter = 0;

beforeAll(async () => {
  server = await startGatewayVerdict();
  client = new envoy.envoy.service.auth.v3.Authorization(`127.0.0.1:${server.verdict.grpcPort}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client?.close();
  await server?.stop();
});

/** What Envoy's HTTP ext_authz filter puts in a CheckRequest for one downstream request. */
function envoyCheckRequest(method: string, path: string, headers: Record<string, string>, extensions: Record<string, string> = {}) {
  const id = `envoy-req-${++requestCounter}`;
  return {
    attributes: {
      source: { address: { socket_address: { address: '203.0.113.7', port_value: 51234 } } },
      destination: { address: { socket_address: { address: '10.0.0.2', port_value: 8080 } } },
      request: {
        time: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 },
        http: {
          id,
          method,
          headers: {
            ':authority': 'models.example.com',
            ':method': method,
            ':path': path,
            ':scheme': 'https',
            'user-agent': 'curl/8.5.0',
            'x-forwarded-proto': 'https',
            'x-request-id': id,
            ...headers,
          },
          path,
          host: 'models.example.com',
          scheme: 'https',
          protocol: 'HTTP/1.1',
          size: '-1',
        },
      },
      context_extensions: { virtual_host: 'models', ...extensions },
    },
  };
}

function check(request: object, through: grpc.Client = client): Promise<CheckResponse> {
  return new Promise((resolve, reject) => {
    (through as unknown as { Check: (r: object, cb: (e: grpc.ServiceError | null, v: CheckResponse) => void) => void }).Check(request, (error, value) =>
      error ? reject(error) : resolve(value),
    );
  });
}

const bearer = (who: PrincipalName) => ({ authorization: `Bearer ${server.keys[who]}` });
const headersOf = (options: HeaderValueOption[] | undefined) => Object.fromEntries((options ?? []).map((o) => [o.header.key, o.header.value]));
const metadataOf = (response: CheckResponse) => Object.fromEntries(Object.entries(response.dynamic_metadata.fields).map(([k, v]) => [k, v.stringValue]));

describe('Envoy ext_authz v3 against the real server', () => {
  it('allows a data scientist to call predict: OK, the principal and decision id for the upstream, all recorded', async () => {
    const request = envoyCheckRequest('POST', '/v1/models/fraud-detector-v3/predict?explain=false', { ...bearer('dana'), 'x-model-org': 'acme', 'x-model-classification': 'internal' });
    const response = await check(request);
    expect(response.status.code).toBe(0);
    expect(response.http_response).toBe('ok_response');
    const headers = headersOf(response.ok_response!.headers);
    expect(headers['x-verdict-principal']).toBe('dana');
    const decisionId = headers['x-verdict-decision-id']!;
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
    // Overwrite, never append: a client's own x-verdict-principal must not survive.
    expect(response.ok_response!.headers.every((h) => h.append_action === 'OVERWRITE_IF_EXISTS_OR_ADD')).toBe(true);
    expect(metadataOf(response)).toMatchObject({ decision_id: decisionId, reason: 'ALLOWED_BY_RULE', principal_id: 'dana' });

    const row = getDecision(server.db, decisionId)!;
    expect(row).toMatchObject({
      principalId: 'dana',
      action: 'predict',
      resourceType: 'model',
      resourceId: 'fraud-detector-v3',
      effect: 'ALLOW',
      reason: 'ALLOWED_BY_RULE',
      ruleIds: ['ds-read-predict-own-org'],
      requestId: request.attributes.request.http.id,
    });
    expect(row.caller).toMatch(/127\.0\.0\.1/);
    expect(row.request.resource.attributes).toEqual({ org: 'acme', classification: 'internal' });
    // The credential is never recorded.
    expect(JSON.stringify(row)).not.toContain(server.keys.dana);
  });

  it('denies a viewer calling predict: PERMISSION_DENIED and a 403 with the decision id header and metadata', async () => {
    const response = await check(envoyCheckRequest('POST', '/v1/models/fraud-detector-v3/predict', { ...bearer('vic'), 'x-model-org': 'acme', 'x-model-classification': 'internal' }));
    expect(response.status.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(response.http_response).toBe('denied_response');
    const denied = response.denied_response!;
    expect(denied.status.code).toBe('Forbidden');
    const headers = headersOf(denied.headers);
    const decisionId = headers['x-verdict-decision-id']!;
    expect(metadataOf(response)).toMatchObject({ decision_id: decisionId, reason: 'DENIED_BY_DEFAULT' });
    expect(JSON.parse(denied.body)).toEqual({ error: 'forbidden', reason: 'DENIED_BY_DEFAULT', decisionId });
    expect(getDecision(server.db, decisionId)).toMatchObject({ principalId: 'vic', action: 'predict', effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
  });

  it.each([
    ['no credential', {}, 'MISSING_CREDENTIAL'],
    ['an unknown API key', { authorization: 'Bearer vk_thisisnotakeyatall0000000000000000000000' }, /UNKNOWN_KEY|MALFORMED_CREDENTIAL/],
    ['a revoked API key', 'revoked', 'REVOKED'],
    ['a credential of no known kind', { authorization: 'Basic ZGFuYTpodW50ZXIy' }, 'MALFORMED_CREDENTIAL'],
  ] as const)('answers %s with UNAUTHENTICATED and a 401, the reason recorded', async (_label, credential, why) => {
    const headers = credential === 'revoked' ? { 'x-api-key': server.revokedKey } : credential;
    const response = await check(envoyCheckRequest('POST', '/v1/models/fraud-detector-v3/predict', { ...headers, 'x-model-org': 'acme', 'x-model-classification': 'internal' }));
    expect(response.status.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(response.denied_response!.status.code).toBe('Unauthorized');
    const decisionId = headersOf(response.denied_response!.headers)['x-verdict-decision-id']!;
    expect(metadataOf(response)).toMatchObject({ decision_id: decisionId, reason: 'DENIED_UNAUTHENTICATED' });
    expect(metadataOf(response)['principal_id']).toBeUndefined();
    const body = JSON.parse(response.denied_response!.body) as { error: string; detail: string };
    expect(body.error).toBe('unauthenticated');
    const row = getDecision(server.db, decisionId)!;
    expect(row).toMatchObject({ principalId: '', action: 'predict', resourceType: 'model', effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED' });
    expect(row.errors[0]!.ruleId).toBe('authn');
    expect(row.errors[0]!.message).toMatch(why);
    expect(body.detail).toBe(row.errors[0]!.message);
  });

  it('denies a request no route matches, recorded with its method and path', async () => {
    const response = await check(envoyCheckRequest('GET', '/v1/admin/users?all=1', bearer('ada')));
    expect(response.status.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(response.denied_response!.status.code).toBe('Forbidden');
    const decisionId = headersOf(response.denied_response!.headers)['x-verdict-decision-id']!;
    expect(metadataOf(response)['reason']).toBe('DENIED_BY_DEFAULT');
    expect(getDecision(server.db, decisionId)).toMatchObject({
      principalId: 'ada',
      action: 'GET',
      resourceType: 'http_route',
      resourceId: '/v1/admin/users',
      effect: 'DENY',
      reason: 'DENIED_BY_DEFAULT',
      ruleIds: [],
      errors: [{ ruleId: 'route', message: 'no route matches GET /v1/admin/users' }],
    });
  });

  it('refuses a path the upstream might read differently (dot segments, encoded slashes)', async () => {
    for (const path of ['/v1/models/../models/fraud-detector-v3/predict', '/v1/models/globex%2F..%2Ffraud-detector-v3/predict']) {
      const response = await check(envoyCheckRequest('POST', path, { ...bearer('dana'), 'x-model-org': 'acme' }));
      expect(response.status.code, path).toBe(grpc.status.PERMISSION_DENIED);
      expect(metadataOf(response)['reason'], path).toBe('DENIED_INVALID_REQUEST');
    }
  });

  // Forward-auth refused these; ext_authz decided the GET while a framework upstream acted on the override.
  it('refuses a method override, a URL rewrite header, a _method query parameter and a method not in upper case, naming each', async () => {
    const modelFacts = { 'x-model-org': 'acme', 'x-model-classification': 'internal', 'x-model-env': 'production' };
    for (const [method, path, headers, why] of [
      ['GET', '/v1/models/fraud-detector-v3', { 'x-http-method-override': 'DELETE' }, /carries X-HTTP-Method-Override, which asks the upstream for another method/],
      ['GET', '/v1/models/fraud-detector-v3', { 'x-original-url': '/v1/admin/users' }, /carries X-Original-URL/],
      ['GET', '/v1/models/fraud-detector-v3', { 'x-rewrite-url': '/v1/admin/users' }, /carries X-Rewrite-URL/],
      ['POST', '/v1/models/fraud-detector-v3/predict?_method=DELETE', {}, /query parameter _method/],
      ['POST', '/v1/models/fraud-detector-v3/predict?a=1&%5Fmethod=DELETE', {}, /query parameter _method/],
      ['POST', '/v1/models/fraud-detector-v3/predict?.method=DELETE', {}, /query parameter _method \(as "\.method"/],
      ['POST', '/v1/models/fraud-detector-v3/predict?+_method=DELETE', {}, /query parameter _method \(as " _method"/],
      ['GET', '/v1/models/fraud-detector-v3', { x_http_method_override: 'DELETE' }, /carries x_http_method_override, which an upstream reads as X-HTTP-Method-Override/],
      ['get', '/v1/models/fraud-detector-v3', {}, /the method "get" is not in upper case: .*send GET/],
    ] as const) {
      const response = await check(envoyCheckRequest(method, path, { ...bearer('vic'), ...modelFacts, ...headers }));
      expect(response.status.code, `${method} ${path}`).toBe(grpc.status.PERMISSION_DENIED);
      const row = getDecision(server.db, metadataOf(response)['decision_id']!)!;
      expect(row, `${method} ${path}`).toMatchObject({ principalId: 'vic', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
      expect(row.errors[0]!.message, `${method} ${path}`).toMatch(why);
    }
    // Without them the request is routed and decided by the rules as before.
    const plain = await check(envoyCheckRequest('GET', '/v1/models/fraud-detector-v3', { ...bearer('vic'), ...modelFacts }));
    expect(metadataOf(plain)['reason']).not.toBe('DENIED_INVALID_REQUEST');
  });

  it('refuses a delete whose model env header is repeated, in the raw header list and in the map', async () => {
    // ada (an acme admin) may delete acme's staging models; "production" then "staging" must not read as one or the other.
    const raw = envoyCheckRequest('DELETE', '/v1/models/fraud-detector-v3', { ...bearer('ada'), 'x-model-org': 'acme' }) as {
      attributes: { request: { http: Record<string, unknown> } };
    };
    raw.attributes.request.http['header_map'] = { headers: [{ key: 'x-model-env', value: 'production' }, { key: 'x-model-env', value: 'staging' }] };
    const fromList = await check(raw);
    expect(fromList.status.code).toBe(grpc.status.PERMISSION_DENIED);
    const row = getDecision(server.db, metadataOf(fromList)['decision_id']!)!;
    expect(row).toMatchObject({ principalId: 'ada', action: 'delete', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    expect(row.errors[0]!.message).toMatch(/x-model-env header more than once/);
    expect(row.details).toEqual({ http: { method: 'DELETE', path: '/v1/models/fraud-detector-v3' } });
    // Envoy's map joins repeats with a comma: a value with one is taken as repeated.
    const joined = await check(envoyCheckRequest('DELETE', '/v1/models/fraud-detector-v3', { ...bearer('ada'), 'x-model-org': 'acme', 'x-model-env': 'production,staging' }));
    expect(metadataOf(joined)['reason']).toBe('DENIED_INVALID_REQUEST');
    // The same delete of a staging model, the header once, is allowed.
    const once = await check(envoyCheckRequest('DELETE', '/v1/models/churn-v1', { ...bearer('ada'), 'x-model-org': 'acme', 'x-model-env': 'staging' }));
    expect(once.status.code).toBe(grpc.status.OK);
  });

  it('refuses unread a CheckRequest with more than 4,096 headers, in the map or in the raw list, and decides one with 4,096', async () => {
    const many = (count: number): Record<string, string> => Object.fromEntries(Array.from({ length: count }, (_, i) => [`x-pad-${i}`, '']));
    const refusedWith = async (request: object): Promise<grpc.ServiceError> => check(request).then(() => expect.unreachable('answered'), (error: grpc.ServiceError) => error);
    const inMap = await refusedWith(envoyCheckRequest('GET', '/v1/models/fraud-detector-v3', { ...bearer('dana'), ...many(5_000) }));
    expect(inMap.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(inMap.details).toBe('attributes.request.http.headers: more than 4096 entries, over the limit of 4096 per request (requestLimits.maxExtAuthzEntries)');
    expect(getDecision(server.db, String(inMap.metadata.get('verdict-decision-id')[0]))).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    const raw = envoyCheckRequest('GET', '/v1/models/fraud-detector-v3', bearer('dana')) as { attributes: { request: { http: Record<string, unknown> } } };
    raw.attributes.request.http['header_map'] = { headers: Array.from({ length: 5_000 }, (_, i) => ({ key: `x-pad-${i}`, value: '' })) };
    const inList = await refusedWith(raw);
    expect(inList.details).toBe('attributes.request.http.headerMap.headers: more than 4096 entries, over the limit of 4096 per request (requestLimits.maxExtAuthzEntries)');
    // The route and the bearer are read among 4,096 headers (the request's own ten and 4,086 more) as among a few.
    const most = await check(envoyCheckRequest('POST', '/v1/models/fraud-detector-v3/predict', { ...bearer('dana'), 'x-model-org': 'acme', 'x-model-classification': 'internal', ...many(4_096 - 10) }));
    expect(most.status.code).toBe(grpc.status.OK);
  });

  it('refuses unread a CheckRequest whose maps and lists hold more than four times the cap in all, each within it (lists of nulls in metadata_context)', async () => {
    // Value's members in camelCase (see CheckResponse above).
    const nulls = { listValue: { values: Array.from({ length: 4_096 }, () => ({ nullValue: 'NULL_VALUE' })) } };
    const withLists = (lists: number): object => {
      const request = envoyCheckRequest('GET', '/v1/models/fraud-detector-v3', bearer('dana')) as Record<string, unknown>;
      request['attributes'] = { ...(request['attributes'] as object), metadata_context: { filter_metadata: { 'envoy.filters.http.x': { fields: Object.fromEntries(Array.from({ length: lists }, (_, i) => [`l${i}`, nulls])) } } } };
      return request;
    };
    const refused = await check(withLists(5)).then(() => expect.unreachable('answered'), (error: grpc.ServiceError) => error);
    expect(refused.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(refused.details).toMatch(/: more than 16384 entries of maps and lists in all, over the limit of 4 × requestLimits\.maxExtAuthzEntries per request$/);
    expect(getDecision(server.db, String(refused.metadata.get('verdict-decision-id')[0]))).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    // Three such lists are within it, and decided as usual.
    const within = await check(withLists(3));
    expect(within.status.code).not.toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('takes its header cap from requestLimits.maxExtAuthzEntries, for an Envoy configured to send more', async () => {
    const raised = await startGatewayVerdict({ config: { requestLimits: { maxExtAuthzEntries: 10_000 } } });
    const through = new envoy.envoy.service.auth.v3.Authorization(`127.0.0.1:${raised.verdict.grpcPort}`, grpc.credentials.createInsecure());
    try {
      const many = (count: number): Record<string, string> => Object.fromEntries(Array.from({ length: count }, (_, i) => [`x-pad-${i}`, '']));
      const key = { authorization: `Bearer ${raised.keys.dana}` };
      const facts = { 'x-model-org': 'acme', 'x-model-classification': 'internal' };
      const decided = await check(envoyCheckRequest('POST', '/v1/models/fraud-detector-v3/predict', { ...key, ...facts, ...many(5_000) }), through);
      expect(decided.status.code).toBe(grpc.status.OK);
      const refused = await check(envoyCheckRequest('POST', '/v1/models/fraud-detector-v3/predict', { ...key, ...facts, ...many(10_001) }), through).then(
        () => expect.unreachable('answered'),
        (error: grpc.ServiceError) => error,
      );
      expect(refused.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(refused.details).toBe('attributes.request.http.headers: more than 10000 entries, over the limit of 10000 per request (requestLimits.maxExtAuthzEntries)');
    } finally {
      through.close();
      await raised.stop();
    }
  });

  it('answers a CheckRequest without attributes with a recorded deny, not an error', async () => {
    const response = await check({});
    // No headers, so no credential: who is asking comes first.
    expect(response.status.code).toBe(grpc.status.UNAUTHENTICATED);
    const decisionId = metadataOf(response)['decision_id']!;
    expect(getDecision(server.db, decisionId)).toMatchObject({ reason: 'DENIED_UNAUTHENTICATED' });
  });

  it('is reported SERVING by health and listed by reflection', async () => {
    const health = loadSync('grpc/health/v1/health.proto', { includeDirs: [PROTO_DIR], enums: String });
    const Health = (grpc.loadPackageDefinition(health) as unknown as { grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => grpc.Client } } } }).grpc.health.v1
      .Health;
    const healthClient = new Health(`127.0.0.1:${server.verdict.grpcPort}`, grpc.credentials.createInsecure());
    const answer = await new Promise<{ status: string }>((resolve, reject) =>
      (healthClient as unknown as { Check: (r: object, cb: (e: Error | null, v: { status: string }) => void) => void }).Check(
        { service: 'envoy.service.auth.v3.Authorization' },
        (error, value) => (error ? reject(error) : resolve(value)),
      ),
    );
    healthClient.close();
    expect(answer.status).toBe('SERVING');

    // grpcurl's view: the service is listed, and its file comes with every file it imports.
    const reflection = loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [PROTO_DIR], keepCase: true, oneofs: true });
    const Reflection = (grpc.loadPackageDefinition(reflection) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: new (a: string, c: grpc.ChannelCredentials) => grpc.Client } } };
    }).grpc.reflection.v1.ServerReflection;
    const reflectionClient = new Reflection(`127.0.0.1:${server.verdict.grpcPort}`, grpc.credentials.createInsecure());
    const stream = (reflectionClient as unknown as { ServerReflectionInfo: () => grpc.ClientDuplexStream<object, Record<string, unknown>> }).ServerReflectionInfo();
    const ask = (request: object) =>
      new Promise<Record<string, unknown>>((resolve) => {
        stream.once('data', resolve);
        stream.write(request);
      });
    const listed = (await ask({ list_services: '' })) as { list_services_response: { service: { name: string }[] } };
    expect(listed.list_services_response.service.map((s) => s.name)).toContain('envoy.service.auth.v3.Authorization');
    const files = (await ask({ file_containing_symbol: 'envoy.service.auth.v3.Authorization' })) as { file_descriptor_response: { file_descriptor_proto: Buffer[] } };
    const names = files.file_descriptor_response.file_descriptor_proto.map((bytes) => bytes.toString('latin1'));
    for (const file of ['envoy/service/auth/v3/external_auth.proto', 'envoy/service/auth/v3/attribute_context.proto', 'envoy/config/core/v3/base.proto', 'google/rpc/status.proto']) {
      expect(names.some((n) => n.includes(file)), file).toBe(true);
    }
    stream.end();
    reflectionClient.close();
  });

  // The example set's http cases, end to end through Envoy's API: each principal
  // is a real API key, each case's request is sent as Envoy would send it.
  describe('the example policy set http cases', () => {
    const loaded = loadPolicies(EXAMPLE_POLICIES);
    if (!loaded.ok) throw new Error('the example policies are invalid');
    const cases = loaded.policies.tests.filter((t) => t.http !== undefined && t.request.principal.id in PRINCIPALS);
    it('covers them', () => expect(cases.length).toBeGreaterThanOrEqual(8));
    it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, testCase) => {
      const http = testCase.http!;
      const response = await check(envoyCheckRequest(http.method, http.path, { ...http.headers, ...bearer(testCase.request.principal.id as PrincipalName) }));
      expect(response.status.code === 0 ? 'ALLOW' : 'DENY').toBe(testCase.expect.effect);
      const decisionId = metadataOf(response)['decision_id']!;
      const row = getDecision(server.db, decisionId)!;
      if (testCase.expect.reason) expect(row.reason).toBe(testCase.expect.reason);
      if (testCase.expect.rules) expect([...row.ruleIds].sort()).toEqual([...testCase.expect.rules].sort());
      expect(row.resourceId).toBe(testCase.request.resource.id);
    });
  });
});
