#!/usr/bin/env node
// Cerbos, the real server from the npm package @cerbos/cerbos-linux-x64, as a peer in
// the server benchmark: policies equivalent to verdict's example set (policies/), a
// generated config on loopback, its gRPC CheckResources request frame, and a one-off
// check that Cerbos and verdict answer the same.
//
//   node bench/peers/cerbos.mjs      installs the peers if missing, starts Cerbos once
//                                    and prints the equivalence check
//
// How verdict's example set maps onto Cerbos (equivalent on every case of
// policies/tests/model-access.yaml, checked by checkEquivalence below):
//   - verdict's role inheritance (viewer < analyst < data_scientist < admin) and its
//     "same organisation" conditions become derived roles whose parentRoles list every
//     role that inherits the granting role, with the condition
//     request.resource.attr.org == request.principal.attr.org;
//   - owners-retrain becomes the derived role `owner` (any role, resource owner == principal id);
//   - denies become EFFECT_DENY rules for every role ("*"); Cerbos, like verdict, lets a
//     matching deny win over every allow;
//   - verdict's request context (the incident ticket of break glass) has no place in a
//     Cerbos CheckResources request except auxData (JWT only): it travels as the principal
//     attribute `ticket`, and the break-glass rule tests it with the same regular expression;
//   - attribute matchers (a missing attribute never matches) become has()-guarded conditions;
//   - a deny rule's `when` fails closed in verdict (a missing attribute it reads makes the
//     deny apply), so its translation is `!has(attribute) || test`;
//   - a principal without roles (Cerbos requires at least one) is sent with the role `user`,
//     which neither policy set grants anything.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { grpcFrame, rawUnaryCall } from '../lib/grpc-frame.mjs';
import { freePort, spawnTracked, stopChild, waitForHttp200 } from '../lib/procs.mjs';
import { cerbosBinary, ensurePeers, importPeer } from './install.mjs';

const HOST = '127.0.0.1';
export const CERBOS_METHOD = '/cerbos.svc.v1.CerbosService/CheckResources';

const SAME_ORG = 'request.resource.attr.org == request.principal.attr.org';
const attrIs = (part, key, value) => `has(request.${part}.attr.${key}) && request.${part}.attr.${key} == ${JSON.stringify(value)}`;
// A deny rule's \`when\` in verdict fails closed: an attribute it reads that is missing makes it apply.
const failsClosed = (part, key, test) => `!has(request.${part}.attr.${key}) || request.${part}.attr.${key} ${test}`;

/** Cerbos policy files equivalent to policies/roles.yaml + policies/models.yaml. */
export const CERBOS_POLICIES = {
  'derived_roles.yaml': `# verdict's roles.yaml: inheritance expanded into parentRoles, "own organisation" as the condition.
apiVersion: api.cerbos.dev/v1
derivedRoles:
  name: verdict_example
  definitions:
    - name: org_viewer
      parentRoles: [viewer, analyst, data_scientist, admin]
      condition: { match: { expr: '${SAME_ORG}' } }
    - name: org_analyst
      parentRoles: [analyst, data_scientist, admin]
      condition: { match: { expr: '${SAME_ORG}' } }
    - name: org_data_scientist
      parentRoles: [data_scientist, admin]
      condition: { match: { expr: '${SAME_ORG}' } }
    - name: org_admin
      parentRoles: [admin]
      condition: { match: { expr: '${SAME_ORG}' } }
    - name: owner
      parentRoles: ["*"]
      condition: { match: { expr: 'request.resource.attr.owner == request.principal.id' } }
`,
  'model.yaml': `# verdict's models.yaml plus the role grants that apply to models.
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: model
  version: default
  importDerivedRoles: [verdict_example]
  rules:
    - name: role-viewer-read-own-org
      actions: [read, list]
      effect: EFFECT_ALLOW
      derivedRoles: [org_viewer]
    - name: ds-read-predict-own-org
      actions: [read, predict]
      effect: EFFECT_ALLOW
      derivedRoles: [org_data_scientist]
    - name: owners-retrain
      actions: [retrain]
      effect: EFFECT_ALLOW
      derivedRoles: [owner]
    - name: role-admin-manage-own-org
      actions: [create, update, deploy, retrain, delete]
      effect: EFFECT_ALLOW
      derivedRoles: [org_admin]
    - name: admin-break-glass
      actions: ["*"]
      effect: EFFECT_ALLOW
      roles: [admin]
      condition: { match: { expr: 'has(request.principal.attr.ticket) && request.principal.attr.ticket.matches("^INC-[0-9]+$")' } }
    - name: no-delete-production-models
      actions: [delete]
      effect: EFFECT_DENY
      roles: ["*"]
      condition: { match: { expr: '${failsClosed('resource', 'env', '== "production"')}' } }
    - name: restricted-models-employees-only
      actions: [predict, read]
      effect: EFFECT_DENY
      roles: ["*"]
      condition:
        match:
          all:
            of:
              - expr: '${attrIs('principal', 'employment', 'contractor')}'
              - expr: '${failsClosed('resource', 'classification', 'in ["restricted", "secret"]')}'
    - name: suspended-principals
      actions: ["*"]
      effect: EFFECT_DENY
      roles: ["*"]
      condition: { match: { expr: '${attrIs('principal', 'status', 'suspended')}' } }
`,
  'dataset.yaml': `# The role grants that apply to datasets, and the deny for suspended principals.
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: dataset
  version: default
  importDerivedRoles: [verdict_example]
  rules:
    - name: role-viewer-read-own-org
      actions: [read, list]
      effect: EFFECT_ALLOW
      derivedRoles: [org_viewer]
    - name: role-analyst-query-own-org
      actions: [query]
      effect: EFFECT_ALLOW
      derivedRoles: [org_analyst]
    - name: role-admin-manage-own-org
      actions: [create, update, deploy, retrain, delete]
      effect: EFFECT_ALLOW
      derivedRoles: [org_admin]
    - name: suspended-principals
      actions: ["*"]
      effect: EFFECT_DENY
      roles: ["*"]
      condition: { match: { expr: '${attrIs('principal', 'status', 'suspended')}' } }
`,
  'model_metrics.yaml': `apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: model_metrics
  version: default
  importDerivedRoles: [verdict_example]
  rules:
    - name: role-analyst-query-own-org
      actions: [query]
      effect: EFFECT_ALLOW
      derivedRoles: [org_analyst]
    - name: suspended-principals
      actions: ["*"]
      effect: EFFECT_DENY
      roles: ["*"]
      condition: { match: { expr: '${attrIs('principal', 'status', 'suspended')}' } }
`,
};

/**
 * A verdict DecisionRequest (plain JSON attributes) as a Cerbos CheckResources request
 * in protobuf JSON form (also the body of the HTTP API). `actions` defaults to the
 * request's one action.
 */
export function toCerbosRequest(request, actions = [request.action], requestId = 'bench') {
  const context = request.context?.attributes ?? {};
  return {
    requestId,
    principal: {
      id: request.principal.id,
      roles: request.principal.roles.length > 0 ? [...request.principal.roles] : ['user'],
      attr: { ...request.principal.attributes, ...context },
    },
    resources: [{ actions, resource: { kind: request.resource.type, id: request.resource.id, attr: { ...request.resource.attributes } } }],
  };
}

/** Encoder and decoder of CheckResources messages, from the generated code in @cerbos/api. */
export async function cerbosCodec() {
  const { fromJson, toBinary, fromBinary, toJson } = await importPeer('@bufbuild/protobuf');
  const { CheckResourcesRequestSchema } = await importPeer('@cerbos/api/cerbos/request/v1/request_pb');
  const { CheckResourcesResponseSchema } = await importPeer('@cerbos/api/cerbos/response/v1/response_pb');
  return {
    /** The framed gRPC request body for h2load. */
    frame: (json) => grpcFrame(Buffer.from(toBinary(CheckResourcesRequestSchema, fromJson(CheckResourcesRequestSchema, json)))),
    /** A response message (unframed bytes) as protobuf JSON. */
    decodeResponse: (bytes) => toJson(CheckResourcesResponseSchema, fromBinary(CheckResourcesResponseSchema, bytes)),
  };
}

export function cerbosVersion() {
  return ensurePeers(() => {}, ['@cerbos/cerbos-linux-x64'])['@cerbos/cerbos-linux-x64'];
}

/**
 * Starts Cerbos on loopback with the policies above, from a generated config.
 * audit: true → audit enabled, local backend (decision logs) in a temp dir; false → off.
 */
export async function startCerbos({ tmp, audit, slug = `cerbos-${audit ? 'audit' : 'noaudit'}` }) {
  const base = path.join(tmp, slug);
  const policyDir = path.join(base, 'policies');
  const auditDir = path.join(base, 'audit');
  fs.mkdirSync(policyDir, { recursive: true });
  fs.mkdirSync(auditDir, { recursive: true });
  for (const [name, text] of Object.entries(CERBOS_POLICIES)) fs.writeFileSync(path.join(policyDir, name), text);
  for (let attempt = 1; ; attempt++) {
    const [httpPort, grpcPort, debugPort] = [await freePort(), await freePort(), await freePort()];
    const config = path.join(base, 'cerbos.yaml');
    fs.writeFileSync(config, cerbosConfig({ httpPort, grpcPort, policyDir, audit, auditDir }));
    const child = spawnTracked(cerbosBinary(), ['server', `--config=${config}`, '--log-level=warn', `--debug-listen-addr=${HOST}:${debugPort}`], {
      cwd: base,
      env: { ...process.env, CERBOS_NO_TELEMETRY: '1' },
    });
    try {
      await waitForHttp200(child, `http://${HOST}:${httpPort}/_cerbos/health`, `cerbos server (${slug})`);
      return { child, grpcPort, httpPort, auditDir, config };
    } catch (error) {
      await stopChild(child, 2000);
      if (attempt < 2 && /in use|EADDRINUSE/i.test(String(error.message))) continue;
      throw error;
    }
  }
}

function cerbosConfig({ httpPort, grpcPort, policyDir, audit, auditDir }) {
  return `# generated by bench/peers/cerbos.mjs
server:
  httpListenAddr: "${HOST}:${httpPort}"
  grpcListenAddr: "${HOST}:${grpcPort}"
engine:
  defaultPolicyVersion: default
storage:
  driver: disk
  disk:
    directory: ${JSON.stringify(policyDir)}
    watchForChanges: false
telemetry:
  disabled: true
audit:
  enabled: ${audit ? 'true' : 'false'}
  accessLogsEnabled: false
  decisionLogsEnabled: ${audit ? 'true' : 'false'}
  backend: local
  local:
    storagePath: ${JSON.stringify(auditDir)}
`;
}

function postJson(url, body) {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (res) => {
    const text = await res.text();
    if (!res.ok) throw new Error(`POST ${url}: HTTP ${res.status}: ${text}`);
    return JSON.parse(text);
  });
}

/**
 * Asks Cerbos (HTTP API /api/check/resources) every case and compares its effect with
 * verdict's `expected(case)` ('ALLOW' | 'DENY'). Returns { total, agree, mismatches }.
 */
export async function checkEquivalence({ httpPort, cases }) {
  const mismatches = [];
  for (const c of cases) {
    const answer = await postJson(`http://${HOST}:${httpPort}/api/check/resources`, toCerbosRequest(c.request, [c.request.action], `eq-${mismatches.length}`));
    const effect = answer.results?.[0]?.actions?.[c.request.action];
    const cerbos = effect === 'EFFECT_ALLOW' ? 'ALLOW' : effect === 'EFFECT_DENY' ? 'DENY' : `?${effect}`;
    if (cerbos !== c.verdict) mismatches.push({ name: c.name, verdict: c.verdict, cerbos });
  }
  return { total: cases.length, agree: cases.length - mismatches.length, mismatches };
}

/** One gRPC call with the benchmark's exact body: grpc-status 0 and every action EFFECT_ALLOW. */
export async function verifyCerbosGrpc({ codec, grpcPort, body, actions }) {
  const answer = await rawUnaryCall(HOST, grpcPort, CERBOS_METHOD, body);
  if (answer.httpStatus !== 200 || answer.grpcStatus !== 0 || !answer.message)
    throw new Error(`cerbos gRPC verification: HTTP ${answer.httpStatus}, grpc-status ${answer.grpcStatus} ${decodeURIComponent(answer.grpcMessage ?? '')}`);
  const response = codec.decodeResponse(answer.message);
  const effects = response.results?.[0]?.actions ?? {};
  for (const action of actions) {
    if (effects[action] !== 'EFFECT_ALLOW') throw new Error(`cerbos gRPC verification: ${action} → ${effects[action]}, expected EFFECT_ALLOW`);
  }
  return { effects, bytes: answer.message.length };
}

/** Size of a directory tree in bytes (the audit store after a run). */
export function dirBytes(dir) {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    total += entry.isDirectory() ? dirBytes(full) : fs.statSync(full).size;
  }
  return total;
}

// ---------------------------------------------------------------- CLI: the equivalence check alone

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const os = await import('node:os');
  const { exampleCases } = await import('./verdict-cases.mjs');
  ensurePeers();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-cerbos-'));
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const server = await startCerbos({ tmp, audit: false });
  try {
    const cases = await exampleCases();
    const result = await checkEquivalence({ httpPort: server.httpPort, cases });
    console.log(`cerbos ${cerbosVersion()} vs verdict on ${result.total} example cases: ${result.agree} agree`);
    for (const m of result.mismatches) console.log(`  MISMATCH ${m.name}: verdict ${m.verdict}, cerbos ${m.cerbos}`);
    if (result.mismatches.length > 0) process.exitCode = 1;
  } finally {
    await stopChild(server.child);
  }
}
