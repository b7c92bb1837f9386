// Shadow mode on a real server: a candidate policy set decides beside the live one on
// every check; the answer is always the live set's, and where the two differ the
// decision log, the metrics and `verdict decisions --shadow-diff` say so.
import { spawnSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision } from '../../src/decisions/query.js';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';
import { ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

interface CheckResponse {
  effect: string;
  decisionId: string;
}

const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const vic = { id: 'vic', roles: ['viewer'], attributes: { org: 'acme' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana', classification: 'internal' } };
const DENY_EVERYTHING = 'kind: rules\nrules:\n  - id: shadow-deny-everything\n    effect: deny\n    actions: ["*"]\n';

describe('shadow mode', () => {
  let server: VerdictProcess;
  let client: VerdictClient;
  let db: string;
  let shadow: string;

  beforeAll(async () => {
    ensureBuilt();
    const dir = makeTempDir('verdict-shadow-');
    db = join(dir, 'd.db');
    shadow = join(dir, 'shadow');
    cpSync(join(ROOT, 'policies'), shadow, { recursive: true });
    // tests/ would name rules a candidate may lack; the shadow set is only decided with.
    rmSync(join(shadow, 'tests'), { recursive: true, force: true });
    writeFileSync(join(shadow, 'deny-everything.yaml'), DENY_EVERYTHING);
    server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--shadow-policies', shadow, '--watch-poll-ms', '200'] });
    client = verdictClient(server.grpcPort);
  }, 60_000);
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
    removeTempDirs();
  });

  const check = (principal: { id: string; roles: string[]; attributes: Record<string, unknown> }, action: string) => client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal, action, resource: fraudModel }));

  it('answers with the live set under a candidate that denies everything, and records the shadow decision where they differ', async () => {
    const allowed = await check(dana, 'predict');
    expect(allowed.effect).toBe('EFFECT_ALLOW');
    const row = getDecision(db, allowed.decisionId)!;
    expect(row).toMatchObject({ effect: 'ALLOW', ruleIds: ['ds-read-predict-own-org'] });
    expect(row.details).toMatchObject({ shadow: { effect: 'DENY', reason: 'DENIED_BY_RULE', ruleIds: ['shadow-deny-everything'], policyVersion: expect.stringMatching(/^sha256:/) } });

    // Both deny: nothing to say.
    const denied = await check(vic, 'predict');
    expect(denied.effect).toBe('EFFECT_DENY');
    expect(getDecision(db, denied.decisionId)!.details ?? null).toBeNull();
  });

  it('counts disagreements by direction and shows the shadow version in /readyz and /metrics', async () => {
    await check(dana, 'predict');
    const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/verdict_shadow_disagreements_total\{direction="ALLOW_TO_DENY"\} [2-9]/);
    expect(metrics).not.toMatch(/verdict_shadow_disagreements_total\{direction="DENY_TO_ALLOW"\}/);
    expect(metrics).toMatch(/verdict_shadow_policy_info\{version="sha256:[0-9a-f]{64}"\} 1/);
    const ready = (await (await fetch(`http://127.0.0.1:${server.httpPort}/readyz`)).json()) as { shadow: { policies: string; version: string; lastReloadError: string | null } };
    expect(ready.shadow).toMatchObject({ policies: shadow, version: expect.stringMatching(/^sha256:/), lastReloadError: null });
  });

  it('verdict decisions --shadow-diff lists exactly the decisions the shadow set decided otherwise', () => {
    const run = spawnSync(process.execPath, [join(ROOT, 'bin', 'verdict.js'), 'decisions', '--db', db, '--shadow-diff', '--json'], { cwd: ROOT, encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const rows = run.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as { principalId: string; details: { shadow?: { effect: string } } });
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(rows.every((r) => r.principalId === 'dana' && r.details.shadow?.effect === 'DENY')).toBe(true);
  });

  it('reloads the shadow set like the live one: once the candidate agrees, nothing more is recorded', async () => {
    rmSync(join(shadow, 'deny-everything.yaml'));
    await server.waitForLog((line) => line.msg === 'shadow policies reloaded', 15_000);
    const allowed = await check(dana, 'predict');
    expect(allowed.effect).toBe('EFFECT_ALLOW');
    expect(getDecision(db, allowed.decisionId)!.details ?? null).toBeNull();
  });

  it('a shadow directory that does not load stops the start, naming it', () => {
    const broken = join(makeTempDir('verdict-shadow-broken-'), 'policies');
    cpSync(join(ROOT, 'test', 'fixtures', 'broken', 'all-errors'), broken, { recursive: true });
    const run = spawnSync(process.execPath, [join(ROOT, 'bin', 'verdict.js'), 'serve', '--policies', join(ROOT, 'policies'), '--shadow-policies', broken, '--db', join(makeTempDir(), 'd.db'), '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'silent'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(run.status).toBe(3);
    expect(run.stderr).toContain(`${broken}/rules.yaml:`);
  });
});

interface PolicyStatusMessage {
  version: string;
  ruleCount: number;
  lastReloadError: string;
  shadowVersion: string;
  shadowRuleCount: number;
  shadowLastReloadError: string;
}

describe('shadow mode from the config file, in GetPolicyStatus, reloaded with the live set', () => {
  let server: VerdictProcess;
  let client: VerdictClient;
  let shadow: string;

  beforeAll(async () => {
    ensureBuilt();
    const dir = makeTempDir('verdict-shadow-status-');
    shadow = join(dir, 'shadow');
    cpSync(join(ROOT, 'policies'), shadow, { recursive: true });
    rmSync(join(shadow, 'tests'), { recursive: true, force: true });
    writeFileSync(join(shadow, 'deny-everything.yaml'), DENY_EVERYTHING);
    // No watching: only ReloadPolicies and SIGHUP reload, so each reload below is the one asked for.
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `shadowPolicies: ${JSON.stringify(shadow)}\nwatch: false\n`);
    server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'd.db'), args: ['--config', config] });
    client = verdictClient(server.grpcPort);
  }, 60_000);
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
    removeTempDirs();
  });

  const status = () => client.call<PolicyStatusMessage>('Admin', 'GetPolicyStatus', {});

  it('GetPolicyStatus shows the shadow set beside the serving one', async () => {
    const s = await status();
    expect(s.shadowVersion).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(s.shadowVersion).not.toBe(s.version);
    expect(s.shadowRuleCount).toBe(s.ruleCount + 1);
    expect(s.shadowLastReloadError).toBe('');
  });

  it('ReloadPolicies reloads the shadow set too; a broken shadow edit keeps the last good one and never touches the live answer', async () => {
    const before = await status();
    writeFileSync(join(shadow, 'deny-everything.yaml'), 'kind: rules\nrules:\n  - id: broken\n    effect: maybe\n');
    const reload = await client.call<{ reloaded: boolean; error: string; status: PolicyStatusMessage }>('Admin', 'ReloadPolicies', {});
    // The live set reloaded fine; the shadow's refusal is told apart, with its file.
    expect(reload.reloaded).toBe(true);
    expect(reload.error).toBe('');
    expect(reload.status.shadowLastReloadError).toContain('deny-everything.yaml');
    expect(reload.status.shadowVersion).toBe(before.shadowVersion);
    expect(reload.status.lastReloadError).toBe('');
    // Still the live answer, and the last good shadow set still compares (it denies everything).
    const allowed = await check(dana, 'predict');
    expect(allowed.effect).toBe('EFFECT_ALLOW');
    // A fixed shadow set reloads on SIGHUP, like the live one.
    rmSync(join(shadow, 'deny-everything.yaml'));
    const reloaded = server.waitForLog((line) => line.msg === 'shadow policies reloaded', 15_000);
    server.child.kill('SIGHUP');
    await reloaded;
    const after = await status();
    expect(after.shadowLastReloadError).toBe('');
    expect(after.shadowRuleCount).toBe(after.ruleCount);
    expect(after.shadowVersion).not.toBe(before.shadowVersion);
  });

  const check = (principal: { id: string; roles: string[]; attributes: Record<string, unknown> }, action: string) => client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal, action, resource: fraudModel }));
});

/** A forward-auth call (NGINX auth_request's shape): the status, and the decision id verdict recorded. */
function forwardAuth(port: number, headers: Record<string, string>): Promise<{ status: number; decisionId: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/forward-auth', method: 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const header = res.headers['x-verdict-decision-id'];
        resolve({ status: res.statusCode ?? 0, decisionId: typeof header === 'string' ? header : ((JSON.parse(body || '{}') as { decisionId?: string }).decisionId ?? '') });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('shadow mode on gateway requests: the shadow set routes them with its own routes', () => {
  let server: VerdictProcess;
  let db: string;

  beforeAll(async () => {
    ensureBuilt();
    const dir = makeTempDir('verdict-shadow-routes-');
    db = join(dir, 'd.db');
    const shadow = join(dir, 'shadow');
    cpSync(join(ROOT, 'policies'), shadow, { recursive: true });
    rmSync(join(shadow, 'tests'), { recursive: true, force: true });
    // The candidate's routes: reading a model now means retrain, and a v2 predict route is new.
    writeFileSync(
      join(shadow, 'routes.yaml'),
      [
        'kind: routes',
        'routes:',
        '  - { method: POST, path: "/v1/models/{model}/predict", action: predict, resource: { type: model, id: "{model}", attributes: { org: "{header.x-model-org}", classification: "{header.x-model-classification}" } } }',
        '  - { method: GET, path: "/v1/models/{model}", action: retrain, resource: { type: model, id: "{model}", attributes: { org: "{header.x-model-org}", classification: "{header.x-model-classification}" } } }',
        '  - { method: POST, path: "/v2/models/{model}/predict", action: predict, resource: { type: model, id: "{model}", attributes: { org: acme, classification: internal } } }',
        '',
      ].join('\n'),
    );
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, 'trustedPrincipal:\n  idHeader: x-auth-request-user\n  rolesHeader: x-auth-request-groups\n  attributeHeaders: { org: x-auth-request-org, employment: x-auth-request-employment }\n');
    server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--config', config, '--shadow-policies', shadow] });
  }, 60_000);
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
    removeTempDirs();
  });

  const gwen = { 'x-auth-request-user': 'gwen', 'x-auth-request-groups': 'data_scientist', 'x-auth-request-org': 'acme', 'x-auth-request-employment': 'employee', 'x-model-org': 'acme', 'x-model-classification': 'internal' };

  it('records where the shadow routes change the answer; the answer stays the live set\'s', async () => {
    const same = await forwardAuth(server.httpPort, { ...gwen, 'x-original-method': 'POST', 'x-original-uri': '/v1/models/fraud-v3/predict' });
    const read = await forwardAuth(server.httpPort, { ...gwen, 'x-original-method': 'GET', 'x-original-uri': '/v1/models/fraud-v3' });
    const v2 = await forwardAuth(server.httpPort, { ...gwen, 'x-original-method': 'POST', 'x-original-uri': '/v2/models/fraud-v3/predict' });
    // The live answers: the live routes read, and map no v2 path.
    expect([same.status, read.status, v2.status]).toEqual([200, 200, 403]);
    expect(getDecision(db, same.decisionId)!.details).toEqual({ http: { method: 'POST', path: '/v1/models/fraud-v3/predict' } });
    // Read is retrain to the shadow routes: it would deny.
    expect(getDecision(db, read.decisionId)!.details).toMatchObject({ shadow: { effect: 'DENY' } });
    // No live route, but the shadow's maps it and allows: a disagreement the other way.
    const row = getDecision(db, v2.decisionId)!;
    expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT' });
    expect(row.details).toMatchObject({ http: { method: 'POST', path: '/v2/models/fraud-v3/predict' }, shadow: { effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['ds-read-predict-own-org'] } });
    const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/verdict_shadow_disagreements_total\{direction="ALLOW_TO_DENY"\} 1\b/);
    expect(metrics).toMatch(/verdict_shadow_disagreements_total\{direction="DENY_TO_ALLOW"\} 1\b/);
  });
});

