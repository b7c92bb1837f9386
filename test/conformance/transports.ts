import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { SignJWT, exportSPKI, generateKeyPair } from 'jose';
import { stringify } from 'yaml';
import { DecisionReader } from '../../src/decisions/query.js';
import type { PolicyTestCase } from '../../src/policy/load.js';
import type { AttributeValue, Decision, DecisionRequest, Effect, Principal, Reason } from '../../src/types.js';
import { loadValid } from '../helpers/policies.js';
import { jsonToStruct } from '../../src/server/grpc/convert/struct.js';
import type { CheckResponse__Output as CheckResponse } from '../../src/server/grpc/generated/verdict/v1/CheckResponse.js';
import { ensureBuilt, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';
import type { ConformanceSet } from './suite.js';

/**
 * Real `verdict serve` processes for the conformance suite, one per set, reached
 * the six ways a gateway or service asks: gRPC Check and CheckBatch, Envoy
 * ext_authz, forward-auth, and AuthZEN's evaluation and evaluations.
 *
 * The HTTP paths have no request body to carry a case: their principal comes
 * from authentication, their action, resource and context from routes. So each
 * set is served from a copy with one more routes file, a route per case
 * (`POST /conformance/<n>`) whose constants are that case's action, resource and
 * context, and each request carries a JWT signed here whose claims are the
 * case's principal (sub, roles, attrs.<name>), mapped back by `authn.jwt.claims`.
 * A case written as an HTTP request (the example set's routes tests) is sent as
 * written. What an HTTP answer does not say (the deciding rules) is read from the
 * decision log by the answer's decision id, and the answer is checked against it.
 */

const ISSUER = 'https://conformance.verdict.test';
const AUDIENCE = 'verdict';
const ROUTES_FILE = 'zz-conformance-routes.yaml';
const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));

/** The path of the route made for the case at `index` of its set. */
const routePath = (index: number): string => `/conformance/${index}`;

/** A route's resource type: the schema's identifier. */
const RESOURCE_TYPE = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$/;

/**
 * Why a case cannot be carried over HTTP faithfully, or null. A route's values
 * are strings, numbers or booleans: a nested map, a list or null in the
 * resource's or context's attributes has no route form.
 */
export function cannotCarryOverHttp(testCase: PolicyTestCase): string | null {
  if (testCase.http) return null;
  const { action, resource, context } = testCase.request;
  if (/[{}]/.test(action)) return `the action ${JSON.stringify(action)} has braces, which a route's fixed action cannot hold`;
  if (!RESOURCE_TYPE.test(resource.type)) return `the resource type ${JSON.stringify(resource.type)} is not a route identifier`;
  for (const [where, attributes] of [
    ['resource', resource.attributes],
    ['context', context.attributes],
  ] as const) {
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || typeof value === 'object') return `${where}.attributes.${name} is ${value === null ? 'null' : Array.isArray(value) ? 'a list' : 'a nested map'}, which a route value cannot be`;
    }
  }
  return null;
}

/** Text a route takes literally: braces doubled, so nothing is a placeholder. */
function literal(value: AttributeValue): AttributeValue {
  return typeof value === 'string' ? value.replace(/[{}]/g, (brace) => brace + brace) : value;
}

function literalAttributes(attributes: Readonly<Record<string, AttributeValue>>): Record<string, AttributeValue> {
  return Object.fromEntries(Object.entries(attributes).map(([name, value]) => [name, literal(value)]));
}

/** One route per case that is not already an HTTP request, carrying exactly its action, resource and context. */
function routesFor(set: ConformanceSet): object {
  const routes = set.cases.flatMap((testCase, index) => {
    if (testCase.http || cannotCarryOverHttp(testCase) !== null) return [];
    const { action, resource, context } = testCase.request;
    return [
      {
        description: `${set.name}: ${testCase.name}`,
        method: 'POST',
        path: routePath(index),
        action,
        resource: { type: resource.type, id: literal(resource.id), attributes: literalAttributes(resource.attributes) },
        context: { attributes: literalAttributes(context.attributes) },
      },
    ];
  });
  return { kind: 'routes', routes };
}

const keys = generateKeyPair('EdDSA', { crv: 'Ed25519' });

/** A token whose claims are the principal: what the server's claim mapping turns back into it. */
async function tokenFor(principal: Principal): Promise<string> {
  const { privateKey } = await keys;
  return new SignJWT({ roles: [...principal.roles], attrs: principal.attributes })
    .setProtectedHeader({ alg: 'EdDSA' })
    .setSubject(principal.id)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setExpirationTime('10m')
    .sign(privateKey);
}

/** The HTTP request a gateway would ask about for the case: its own, or the route made for it. */
function httpRequestOf(testCase: PolicyTestCase, index: number): { method: string; uri: string; headers: Record<string, string> } {
  if (testCase.http) return { method: testCase.http.method, uri: testCase.http.path, headers: { ...testCase.http.headers } };
  return { method: 'POST', uri: routePath(index), headers: {} };
}

export interface SetServer {
  readonly verdict: VerdictProcess;
  /** The version of the served copy (the set's files and the routes file). */
  readonly version: string;
  /** The decision the log recorded under `decisionId`. */
  recorded(decisionId: string): Decision;
  /** What a gateway sends for the case, with its credential. */
  httpRequest(testCase: PolicyTestCase): Promise<{ method: string; uri: string; headers: Record<string, string> }>;
  stop(): Promise<void>;
}

/** Starts `verdict serve` on a copy of the set with the routes file, authenticating gateway requests by the signed JWT. */
export async function serveSet(set: ConformanceSet): Promise<SetServer> {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'verdict-conformance-'));
  const policies = join(dir, 'policies');
  cpSync(set.dir, policies, { recursive: true });
  writeFileSync(join(policies, ROUTES_FILE), stringify(routesFor(set)));
  const version = loadValid(policies).policySet.version;

  const publicKeyFile = join(dir, 'jwt.pub.pem');
  writeFileSync(publicKeyFile, await exportSPKI((await keys).publicKey));
  const attributeNames = [...new Set(set.cases.flatMap((c) => Object.keys(c.request.principal.attributes)))];
  const claims = { roles: 'roles', attributes: Object.fromEntries(attributeNames.map((name) => [name, ['attrs', name]])) };
  const config = join(dir, 'verdict.yaml');
  writeFileSync(config, stringify({ authn: { jwt: { issuer: ISSUER, audience: AUDIENCE, algorithms: ['EdDSA'], publicKeyFile, claims } }, authzen: { peps: ['jwt:conformance-pep'] } }));

  const db = join(dir, 'decisions.db');
  const verdict = await startVerdict({ policies, db, args: ['--config', config, '--no-watch'] });
  let reader: DecisionReader | null = null;
  return {
    verdict,
    version,
    recorded(decisionId) {
      reader ??= DecisionReader.open(db);
      const record = reader.get(decisionId);
      if (!record) throw new Error(`no decision ${decisionId} in the log`);
      return { effect: record.effect, reason: record.reason, ruleIds: record.ruleIds, errors: record.errors, policyVersion: record.policyVersion };
    },
    async httpRequest(testCase) {
      // Cases are told apart by where they are written: each suite loads the sets afresh.
      const index = set.cases.findIndex((c) => c.file === testCase.file && c.line === testCase.line);
      if (index === -1) throw new Error(`${testCase.name} (${testCase.file}:${testCase.line}) is not a case of ${set.name}`);
      const request = httpRequestOf(testCase, index);
      return { ...request, headers: { ...request.headers, authorization: `Bearer ${await tokenFor(testCase.request.principal)}` } };
    },
    async stop() {
      reader?.close();
      await verdict.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- gRPC

/** A verdict.v1 CheckResponse as a decision, wire names read back by their prefix. */
export function fromCheckResponse(response: CheckResponse): Decision {
  return {
    effect: response.effect.replace(/^EFFECT_/, '') as Effect,
    reason: response.reason.replace(/^REASON_/, '') as Reason,
    ruleIds: response.ruleIds,
    errors: response.errors.map(({ ruleId, message }) => ({ ruleId, message })),
    policyVersion: response.policyVersion,
  };
}

/** The verdict.v1.Authorization client of a served set. */
export function grpcClient(server: SetServer): VerdictClient {
  return verdictClient(server.verdict.grpcPort);
}

/** Check for one request. */
export async function grpcCheck(client: VerdictClient, request: DecisionRequest): Promise<Decision> {
  const { principal, action, resource, context } = request;
  return fromCheckResponse(
    await client.call<CheckResponse>('Authorization', 'Check', {
      principal: { id: principal.id, roles: principal.roles, attributes: jsonToStruct(principal.attributes) },
      action,
      resource: { type: resource.type, id: resource.id, attributes: jsonToStruct(resource.attributes) },
      context: { attributes: jsonToStruct(context.attributes) },
    }),
  );
}

/**
 * CheckBatch for every case of a set: cases that share principal and context go
 * in one batch (CheckBatch's shape), every batch of the set at once.
 */
export async function grpcCheckBatches(client: VerdictClient, cases: readonly PolicyTestCase[]): Promise<Map<PolicyTestCase, Decision>> {
  const groups = new Map<string, PolicyTestCase[]>();
  for (const testCase of cases) {
    const key = JSON.stringify([testCase.request.principal, testCase.request.context]);
    groups.set(key, [...(groups.get(key) ?? []), testCase]);
  }
  const decisions = new Map<PolicyTestCase, Decision>();
  await Promise.all(
    [...groups.values()].map(async (group) => {
      const { principal, context } = group[0]!.request;
      const response = await client.call<{ results: CheckResponse[] }>('Authorization', 'CheckBatch', {
        principal: { id: principal.id, roles: principal.roles, attributes: jsonToStruct(principal.attributes) },
        context: { attributes: jsonToStruct(context.attributes) },
        items: group.map(({ request: { action, resource } }) => ({ action, resource: { type: resource.type, id: resource.id, attributes: jsonToStruct(resource.attributes) } })),
      });
      if (response.results.length !== group.length) throw new Error(`CheckBatch answered ${response.results.length} results for ${group.length} items`);
      group.forEach((c, i) => decisions.set(c, fromCheckResponse(response.results[i]!)));
    }),
  );
  return decisions;
}

// ---------------------------------------------------------------- Envoy ext_authz

// An ext_authz client built only from the .proto files, with protoc's field names, as Envoy is one.
const envoyDefinition = loadSync('envoy/service/auth/v3/external_auth.proto', { includeDirs: [PROTO_DIR], keepCase: true, defaults: true, oneofs: true, enums: String, longs: String });
const EnvoyAuthorization = (grpc.loadPackageDefinition(envoyDefinition) as unknown as {
  envoy: { service: { auth: { v3: { Authorization: new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client } } } };
}).envoy.service.auth.v3.Authorization;

interface EnvoyCheckResponse {
  status: { code: number };
  http_response?: 'ok_response' | 'denied_response';
  dynamic_metadata: { fields: Record<string, { stringValue?: string }> };
}

export function envoyClient(server: SetServer): grpc.Client {
  return new EnvoyAuthorization(`127.0.0.1:${server.verdict.grpcPort}`, grpc.credentials.createInsecure());
}

/** What Envoy's HTTP filter sends for the case, the answer, and the recorded decision it names (checked against each other). */
export async function envoyCheck(client: grpc.Client, server: SetServer, testCase: PolicyTestCase): Promise<Decision> {
  const { method, uri, headers } = await server.httpRequest(testCase);
  const request = {
    attributes: {
      source: { address: { socket_address: { address: '203.0.113.7', port_value: 51234 } } },
      request: { http: { method, path: uri, host: 'conformance.test', scheme: 'https', headers: { ':method': method, ':path': uri, ':authority': 'conformance.test', ...headers } } },
    },
  };
  const response = await new Promise<EnvoyCheckResponse>((resolve, reject) =>
    (client as unknown as { Check(r: object, cb: (e: grpc.ServiceError | null, v: EnvoyCheckResponse) => void): void }).Check(request, (error, value) => (error ? reject(error) : resolve(value))),
  );
  const metadata = Object.fromEntries(Object.entries(response.dynamic_metadata.fields).map(([name, value]) => [name, value.stringValue]));
  const decision = server.recorded(metadata['decision_id'] ?? '');
  const allowed = response.status.code === 0;
  if (allowed !== (decision.effect === 'ALLOW') || allowed !== (response.http_response === 'ok_response')) {
    throw new Error(`ext_authz answered status ${response.status.code} (${response.http_response}) for a recorded ${decision.effect}`);
  }
  if (metadata['reason'] !== decision.reason || metadata['policy_version'] !== decision.policyVersion) {
    throw new Error(`ext_authz metadata ${JSON.stringify(metadata)} disagrees with the recorded decision ${JSON.stringify(decision)}`);
  }
  return decision;
}

// ---------------------------------------------------------------- forward-auth

/** The forward-auth sub-request NGINX would send for the case, the answer, and the recorded decision it names (checked against each other). */
export async function forwardAuthCheck(server: SetServer, testCase: PolicyTestCase): Promise<Decision> {
  const { method, uri, headers } = await server.httpRequest(testCase);
  const response = await fetch(`http://127.0.0.1:${server.verdict.httpPort}/forward-auth`, {
    headers: { ...headers, 'x-original-method': method, 'x-original-uri': uri, 'x-real-ip': '203.0.113.7' },
  });
  const body = await response.text();
  const decision = server.recorded(response.headers.get('x-verdict-decision-id') ?? '');
  if ((response.status === 200) !== (decision.effect === 'ALLOW')) throw new Error(`forward-auth answered ${response.status} for a recorded ${decision.effect}`);
  if (response.status !== 200 && (JSON.parse(body) as { reason?: string }).reason !== decision.reason) {
    throw new Error(`forward-auth's body ${body} disagrees with the recorded decision ${JSON.stringify(decision)}`);
  }
  return decision;
}

// ---------------------------------------------------------------- AuthZEN

/**
 * Why a case cannot be asked over AuthZEN faithfully, or null: a case written as
 * a gateway's HTTP request has no AuthZEN form; the subject's type becomes the
 * principal attribute `type` and its `roles` property the roles, so a principal
 * attribute of either name cannot be sent; AuthZEN requires a subject id, an
 * action name and a resource type.
 */
export function cannotCarryOverAuthZen(testCase: PolicyTestCase): string | null {
  if (testCase.http) return 'the case is a gateway HTTP request, which AuthZEN does not carry';
  const { principal, action, resource } = testCase.request;
  for (const name of ['type', 'roles']) if (name in principal.attributes) return `principal.attributes.${name} is where AuthZEN puts the subject's ${name}`;
  if (principal.id === '' || action === '' || resource.type === '') return 'AuthZEN requires subject.id, action.name and resource.type';
  return null;
}

/** The AuthZEN evaluation for a case's request. */
function authzenEvaluation(request: DecisionRequest): object {
  const { principal, action, resource, context } = request;
  return {
    subject: { type: 'user', id: principal.id, properties: { ...principal.attributes, roles: [...principal.roles] } },
    action: { name: action },
    resource: { type: resource.type, id: resource.id, properties: resource.attributes },
    context: context.attributes,
  };
}

interface AuthZenContext {
  reason: Reason;
  rule_ids: string[];
  errors: { rule_id: string; message: string }[];
  policy_version: string;
  decision_id: string;
}

/** The decision an AuthZEN answer gives, checked against the one the log recorded under its decision id. */
function fromAuthZen(server: SetServer, answer: { decision: boolean; context: AuthZenContext }): Decision {
  const { context } = answer;
  const decision: Decision = {
    effect: answer.decision ? 'ALLOW' : 'DENY',
    reason: context.reason,
    ruleIds: context.rule_ids,
    errors: context.errors.map((e) => ({ ruleId: e.rule_id, message: e.message })),
    policyVersion: context.policy_version,
  };
  const recorded = server.recorded(context.decision_id);
  if (JSON.stringify(recorded) !== JSON.stringify(decision)) throw new Error(`AuthZEN answered ${JSON.stringify(decision)} for a recorded ${JSON.stringify(recorded)}`);
  return decision;
}

async function authzenPost(server: SetServer, path: string, body: object): Promise<unknown> {
  const token = await tokenFor({ id: 'conformance-pep', roles: [], attributes: {} });
  const response = await fetch(`http://127.0.0.1:${server.verdict.httpPort}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (response.status !== 200) throw new Error(`${path} answered ${response.status}: ${await response.text()}`);
  return response.json();
}

/** POST /access/v1/evaluation for one case. */
export async function authzenEvaluate(server: SetServer, testCase: PolicyTestCase): Promise<Decision> {
  const answer = (await authzenPost(server, '/access/v1/evaluation', authzenEvaluation(testCase.request))) as { decision: boolean; context: AuthZenContext };
  return fromAuthZen(server, answer);
}

/** POST /access/v1/evaluations for every case of a set at once (execute_all). */
export async function authzenEvaluations(server: SetServer, cases: readonly PolicyTestCase[]): Promise<Map<PolicyTestCase, Decision>> {
  const answer = (await authzenPost(server, '/access/v1/evaluations', { evaluations: cases.map((c) => authzenEvaluation(c.request)) })) as {
    evaluations: { decision: boolean; context: AuthZenContext }[];
  };
  if (answer.evaluations.length !== cases.length) throw new Error(`evaluations answered ${answer.evaluations.length} decisions for ${cases.length} evaluations`);
  return new Map(cases.map((c, i) => [c, fromAuthZen(server, answer.evaluations[i]!)]));
}
