import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { Authenticator } from '../../src/authn/types.js';
import { DecisionPipeline, type CallMeta } from '../../src/decide/index.js';
import type { Decision, DecisionRequest } from '../../src/types.js';
import { VerdictError } from '../../src/errors.js';
import { GatewayAdapter, headerSafe } from '../../src/gateway/adapter.js';
import { handleForwardAuth } from '../../src/gateway/forward-auth.js';
import { TrustedHeaderAuthenticator, UNCONFIGURED_AUTHENTICATOR } from '../../src/gateway/trusted-headers.js';
import type { GatewayRequest } from '../../src/gateway/types.js';
import { fromEnvoyCheckRequest, toEnvoyCheckResponse } from '../../src/server/grpc/convert/envoy.js';
import { serviceDefinition } from '../../src/server/grpc/descriptors.js';
import type { CheckRequest, CheckRequest__Output } from '../../src/server/grpc/generated/envoy/service/auth/v3/CheckRequest.js';
import { loadFiles, removeTempDirs, rolesDoc, rulesDoc } from '../helpers/policies.js';
import { useDecisionLog } from '../helpers/decision-log.js';

const { policySet } = loadFiles({
  'roles.yaml': rolesDoc([{ name: 'reader' }, { name: 'writer' }]),
  'rules.yaml': rulesDoc([{ id: 'readers', effect: 'allow', actions: ['read'], principal: { roles: ['reader'] }, resource: { type: 'doc' } }]),
  'routes.yaml': {
    kind: 'routes',
    routes: [{ method: 'GET', path: '/docs/{doc}', action: 'read', resource: { type: 'doc', id: '{doc}', attributes: { shelf: '{query.shelf}' } } }],
  },
});

const decisionLog = useDecisionLog();
afterAll(removeTempDirs);

interface Recorded {
  readonly request: DecisionRequest;
  readonly decision: Decision;
  readonly meta: CallMeta;
  readonly decisionId: string;
}

/** The decide core over the real decision log, keeping what it recorded; set `failWith` to make every append fail. */
function recordingPipeline(): { pipeline: DecisionPipeline; recorded: Recorded[]; failWith: Error | null } {
  const recording = { recorded: [] as Recorded[], failWith: null as Error | null };
  const pipeline = new DecisionPipeline({ current: policySet }, { path: decisionLog().path, append: (record) => (recording.failWith ? Promise.reject(recording.failWith) : decisionLog().append(record)) });
  pipeline.observe({ decided: (result, meta) => recording.recorded.push({ request: result.request, decision: result.decision, meta, decisionId: result.decisionId }) });
  return Object.assign(recording, { pipeline });
}

const trusted = new TrustedHeaderAuthenticator({ idHeader: 'remote-user', rolesHeader: 'remote-groups', attributeHeaders: { org: 'remote-org' } });

function gatewayRequest(overrides: Partial<GatewayRequest> = {}): GatewayRequest {
  return { method: 'GET', uri: '/docs/d1?shelf=top', headers: {}, source: { address: null, principal: null }, extensions: {}, requestId: null, ...overrides };
}

describe('the gateway adapter', () => {
  it('allows with the principal and decision id for the upstream, and records the caller and request id', async () => {
    const recording = recordingPipeline();
    const answer = await new GatewayAdapter(recording.pipeline, trusted).decide(
      gatewayRequest({ uri: '/docs/d%201?shelf=top', headers: { 'remote-user': 'rita', 'remote-groups': 'reader' }, requestId: 'r-9' }),
      'gw:1',
    );
    const id = recording.recorded[0]!.decisionId;
    expect(answer).toMatchObject({ status: 200, principalId: 'rita', decisionId: id, body: '', headers: { 'x-verdict-principal': 'rita', 'x-verdict-decision-id': id } });
    expect(recording.recorded[0]!.meta).toMatchObject({ caller: 'gw:1', requestId: 'r-9' });
    expect(recording.recorded[0]!.request).toMatchObject({ action: 'read', resource: { type: 'doc', id: 'd 1', attributes: { shelf: 'top' } } });
  });

  it('answers 403 for a deny, 401 for a failed authentication (before routing), and records both', async () => {
    const recording = recordingPipeline();
    const gateway = new GatewayAdapter(recording.pipeline, trusted);
    const denied = await gateway.decide(gatewayRequest({ headers: { 'remote-user': 'wes' } }), 'gw');
    expect(denied.status).toBe(403);
    const id = recording.recorded[0]!.decisionId;
    expect(denied.headers).toEqual({ 'x-verdict-decision-id': id });
    expect(JSON.parse(denied.body)).toEqual({ error: 'forbidden', reason: 'DENIED_BY_DEFAULT', decisionId: id });

    const anonymous = await gateway.decide(gatewayRequest({ uri: '/nowhere' }), 'gw');
    expect(anonymous.status).toBe(401);
    expect(anonymous.principalId).toBeNull();
    expect(recording.recorded[1]!.decision).toMatchObject({ reason: 'DENIED_UNAUTHENTICATED', errors: [{ ruleId: 'authn', message: 'MISSING_CREDENTIAL: no remote-user header: the gateway did not say who is calling' }] });
    expect(recording.recorded[1]!.request.principal.id).toBe('');
  });

  it('refuses an authenticator that throws as unavailable authentication (503), never an allow', async () => {
    const broken: Authenticator = { authenticate: () => Promise.reject(new Error('JWKS endpoint down')) };
    const recording = recordingPipeline();
    const answer = await new GatewayAdapter(recording.pipeline, broken).decide(gatewayRequest(), 'gw');
    // verdict could not check the credential: its failure, not the caller's, so 503 rather than 401.
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'authentication unavailable', reason: 'DENIED_UNAUTHENTICATED' });
    expect(recording.recorded[0]!.decision.errors[0]!.message).toBe('UNAVAILABLE: authentication could not be completed: JWKS endpoint down');
  });

  it('with no authentication configured, every request is unauthenticated', async () => {
    const answer = await new GatewayAdapter(recordingPipeline().pipeline, UNCONFIGURED_AUTHENTICATOR).decide(gatewayRequest({ headers: { 'remote-user': 'rita' } }), 'gw');
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).detail).toMatch(/no authentication configured/);
  });

  it('records an unmatched or unroutable request with its method and path', async () => {
    const recording = recordingPipeline();
    const gateway = new GatewayAdapter(recording.pipeline, trusted);
    const headers = { 'remote-user': 'rita', 'remote-groups': 'reader' };
    await gateway.decide(gatewayRequest({ method: 'POST', uri: '/docs/d1', headers }), 'gw');
    await gateway.decide(gatewayRequest({ uri: '/docs/%2e%2e', headers }), 'gw');
    await gateway.decide(gatewayRequest({ uri: '/docs/' + 'x'.repeat(9000), headers }), 'gw');
    expect(recording.recorded.map((r) => [r.request.action, r.request.resource.type, r.request.resource.id.slice(0, 12), r.decision.reason])).toEqual([
      ['POST', 'http_route', '/docs/d1', 'DENIED_BY_DEFAULT'],
      ['GET', 'http_route', '/docs/%2e%2e', 'DENIED_INVALID_REQUEST'],
      ['GET', 'http_route', '/docs/xxxxxx', 'DENIED_INVALID_REQUEST'],
    ]);
    expect(recording.recorded[2]!.request.resource.id.length).toBe(512);
    expect(recording.recorded.every((r) => r.decision.effect === 'DENY')).toBe(true);
  });

  it('percent-encodes a principal id that cannot go in a header as is', () => {
    expect(headerSafe('dana')).toBe('dana');
    expect(headerSafe('zoë')).toBe('zo%C3%AB');
    expect(headerSafe('a\r\nx-admin: 1')).toBe('a%0D%0Ax-admin%3A%201');
  });
});

describe('trusted principal headers', () => {
  it.each([
    [{}, 'MISSING_CREDENTIAL'],
    [{ 'remote-user': '   ' }, 'MISSING_CREDENTIAL'],
    [{ 'remote-user': 'a\u0007b' }, 'MALFORMED_CREDENTIAL'],
    [{ 'remote-user': 'x'.repeat(257) }, 'MALFORMED_CREDENTIAL'],
  ])('%j → %s', (headers, reason) => {
    const result = trusted.authenticateSync({ headers });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toBe(reason);
  });

  it('reads id, comma-separated roles and attributes; absent attribute headers stay absent', () => {
    expect(trusted.authenticateSync({ headers: { 'remote-user': ' rita ', 'remote-groups': 'reader,, writer ' } })).toEqual({
      ok: true,
      principal: { id: 'rita', roles: ['reader', 'writer'], attributes: {} },
      method: 'trusted-header',
      credentialId: null,
    });
  });
});

/** A CheckRequest as the server receives it: encoded, then decoded by the server's own definition. */
function received(message: CheckRequest): CheckRequest__Output {
  const check = serviceDefinition('envoy.service.auth.v3.Authorization')['Check']!;
  return check.requestDeserialize(check.requestSerialize(message)) as CheckRequest__Output;
}

describe('Envoy CheckRequest and CheckResponse conversion', () => {
  const base = received({
    attributes: {
      source: { address: { socketAddress: { address: '203.0.113.7', portValue: 443 } }, service: '', principal: 'spiffe://acme/ns/web/sa/frontend' },
      destination: null,
      request: {
        http: {
          id: 'req-1',
          method: 'GET',
          headers: { 'X-Upper': 'kept', ':authority': 'api.example.com' },
          path: '/docs/d1',
          host: 'api.example.com',
          scheme: 'https',
          query: 'shelf=top',
          headerMap: { headers: [{ key: 'remote-user', value: '', rawValue: Buffer.from('rita') }, { key: 'x-multi', value: 'a', rawValue: Buffer.alloc(0) }, { key: 'x-multi', value: 'b', rawValue: Buffer.alloc(0) }] },
        },
      },
      contextExtensions: { tenant: 'acme' },
    },
  });

  it('reads method, path (with a stray query), headers (map and raw list), source and extensions', () => {
    expect(fromEnvoyCheckRequest(base)).toEqual({
      method: 'GET',
      uri: '/docs/d1?shelf=top',
      headers: { 'x-upper': 'kept', ':authority': 'api.example.com', 'remote-user': 'rita', 'x-multi': 'a,b', host: 'api.example.com' },
      repeatedHeaders: new Set(['x-multi']),
      source: { address: '203.0.113.7', principal: 'spiffe://acme/ns/web/sa/frontend' },
      extensions: { tenant: 'acme' },
      requestId: 'req-1',
    });
    expect(fromEnvoyCheckRequest(received({ attributes: null }))).toEqual({ method: '', uri: '', headers: {}, repeatedHeaders: new Set(), source: { address: null, principal: null }, extensions: {}, requestId: null });
  });

  it('reads client headers named constructor, toString or __proto__ as headers like any other, none of them repeated', () => {
    const named = (headers: Record<string, string>, headerMap: { key: string; value: string; rawValue: Buffer }[] = []) =>
      fromEnvoyCheckRequest(received({ attributes: { source: null, destination: null, request: { http: { id: '', method: 'GET', headers, path: '/', host: '', scheme: '', query: '', headerMap: { headers: headerMap } } }, contextExtensions: {} } }));
    const fromMap = named(JSON.parse('{"constructor": "c", "toString": "t", "__proto__": "p"}') as Record<string, string>);
    const fromList = named({}, ['constructor', 'toString', '__proto__'].map((key) => ({ key, value: `${key}!`, rawValue: Buffer.alloc(0) })));
    expect(Object.entries(fromMap.headers)).toEqual([['constructor', 'c'], ['tostring', 't'], ['__proto__', 'p']]);
    expect(Object.entries(fromList.headers)).toEqual([['constructor', 'constructor!'], ['tostring', 'toString!'], ['__proto__', '__proto__!']]);
    for (const request of [fromMap, fromList]) expect([...(request.repeatedHeaders ?? [])]).toEqual([]);
  });

  it('answers a rate limit (reserved for later) as RESOURCE_EXHAUSTED with a 429', () => {
    const response = toEnvoyCheckResponse({
      status: 429,
      decision: { effect: 'DENY', reason: 'DENIED_BY_RATE_LIMIT', ruleIds: ['limit'], errors: [], policyVersion: 'v1' },
      decisionId: 'd-7',
      principalId: 'rita',
      headers: { 'x-verdict-decision-id': 'd-7' },
      body: '{}',
    });
    expect(response.status?.code).toBe(8);
    expect(response.deniedResponse?.status?.code).toBe('TooManyRequests');
    expect(response.okResponse).toBeUndefined();
  });
});

describe('handleForwardAuth when the decision cannot be recorded', () => {
  let server: Server;

  it('answers 503, never 200', async () => {
    const recording = recordingPipeline();
    recording.failWith = new VerdictError('DECISION_LOG_UNAVAILABLE', 'disk full');
    const gateway = new GatewayAdapter(recording.pipeline, trusted);
    const errors: unknown[] = [];
    server = createServer((req, res) => void handleForwardAuth(gateway, req, res, { onError: (e) => errors.push(e) }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/forward-auth`;
    const headers = { 'x-original-method': 'GET', 'x-original-uri': '/docs/d1?shelf=top', 'remote-user': 'rita', 'remote-groups': 'reader' };
    const unavailable = await fetch(url, { headers });
    expect(unavailable.status).toBe(503);
    expect(await unavailable.json()).toEqual({ error: 'the decision could not be recorded, so the request is refused' });
    expect(errors).toEqual([]);

    recording.failWith = new TypeError('a bug');
    const internal = await fetch(url, { headers });
    expect(internal.status).toBe(503);
    expect(await internal.text()).not.toMatch(/a bug/);
    expect(errors).toHaveLength(1);

    recording.failWith = null;
    expect((await fetch(url, { headers })).status).toBe(200);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
