import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import { PROBLEMS_NAMED } from '../../src/server/policy-store.js';
import { ROOT, checkRequest, ensureBuilt, healthStatus, signalWhileLoading, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const ada = { id: 'ada', roles: ['admin'], attributes: { org: 'acme' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };
const globexModel = { type: 'model', id: 'globex-ranker', attributes: { org: 'globex', env: 'production', owner: 'gus' } };

interface CheckResponse {
  effect: string;
  reason: string;
  ruleIds: string[];
  errors: { ruleId: string; message: string }[];
  policyVersion: string;
  decisionId: string;
  requestId: string;
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'verdict-server-'));
}

function copyPolicies(): string {
  const dir = join(tempDir(), 'policies');
  cpSync(join(ROOT, 'policies'), dir, { recursive: true });
  return dir;
}

async function http(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

beforeAll(() => ensureBuilt(), 120_000);

describe('verdict serve: decisions over gRPC, each recorded before it is answered', () => {
  let server: VerdictProcess;
  let client: VerdictClient;
  let db: string;

  beforeAll(async () => {
    db = join(tempDir(), 'decisions.db');
    server = await startVerdict({ policies: join(ROOT, 'policies'), db });
    client = verdictClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
  });

  it('allows by rule, records the decision with its version, and finds it by id', async () => {
    const res = await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel, requestId: 'req-1' }));
    expect(res.effect).toBe('EFFECT_ALLOW');
    expect(res.reason).toBe('REASON_ALLOWED_BY_RULE');
    expect(res.ruleIds).toEqual(['ds-read-predict-own-org']);
    expect(res.requestId).toBe('req-1');
    expect(res.decisionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const row = getDecision(db, res.decisionId);
    expect(row).not.toBeNull();
    expect(row).toMatchObject({
      principalId: 'dana',
      action: 'predict',
      resourceType: 'model',
      resourceId: 'fraud-v3',
      effect: 'ALLOW',
      reason: 'ALLOWED_BY_RULE',
      ruleIds: ['ds-read-predict-own-org'],
      policyVersion: res.policyVersion,
      requestId: 'req-1',
    });
    expect(row!.caller).toMatch(/127\.0\.0\.1/);
    expect(row!.request.principal.attributes).toEqual(dana.attributes);
  });

  it('denies by rule and by default, naming the rule', async () => {
    const byRule = await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: ada, action: 'delete', resource: fraudModel }));
    expect(byRule).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RULE', ruleIds: ['no-delete-production-models'] });
    const byDefault = await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: globexModel }));
    expect(byDefault).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_DEFAULT', ruleIds: [] });
    expect(getDecision(db, byDefault.decisionId)?.reason).toBe('DENIED_BY_DEFAULT');
  });

  it('answers a batch in order, one recorded decision per item', async () => {
    const res = await client.call<{ results: CheckResponse[] }>('Authorization', 'CheckBatch', {
      principal: checkRequest({ principal: dana, action: 'x', resource: fraudModel }).principal,
      context: { attributes: { fields: {} } },
      requestId: 'batch-1',
      items: [
        { action: 'predict', resource: checkRequest({ principal: dana, action: 'x', resource: fraudModel }).resource },
        { action: 'predict', resource: checkRequest({ principal: dana, action: 'x', resource: globexModel }).resource },
        { action: 'retrain', resource: checkRequest({ principal: dana, action: 'x', resource: fraudModel }).resource },
      ],
    });
    expect(res.results.map((r) => r.effect)).toEqual(['EFFECT_ALLOW', 'EFFECT_DENY', 'EFFECT_ALLOW']);
    expect(res.results[2]!.ruleIds).toEqual(['owners-retrain']);
    const ids = new Set(res.results.map((r) => r.decisionId));
    expect(ids.size).toBe(3);
    for (const id of ids) expect(getDecision(db, id)?.requestId).toBe('batch-1');
  });

  it('refuses a batch that would record a large principal once per item, recording one small decision instead', async () => {
    // 0.3 MiB of principal attributes, within the request limits and the 1 MiB message limit, asked about 1,000 times: ~300 MiB of log if recorded per item.
    const attributes = { ...dana.attributes, ...Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`note${i}`, `${i}:`.padEnd(8000, 'x')])) };
    const principal = checkRequest({ principal: { ...dana, attributes }, action: 'x', resource: fraudModel }).principal;
    const item = { action: 'predict', resource: checkRequest({ principal: dana, action: 'x', resource: fraudModel }).resource };
    const before = queryDecisions(db, { principalId: 'dana', reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    const sizeBefore = statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0;
    const error = await client
      .call('Authorization', 'CheckBatch', { principal, requestId: 'amplify', items: Array.from({ length: 1000 }, () => item) })
      .then(() => null, (e: grpc.ServiceError) => e);
    expect(error).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/^items: .*these 1000 items are recorded with each item/) });
    const refused = queryDecisions(db, { principalId: 'dana', reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
    expect(refused.length).toBe(before + 1);
    expect(refused[0]!.requestId).toBe('amplify');
    expect(refused[0]!.request.principal.attributes).toEqual({});
    // The log grew by the one refusal, not by a thousand copies of the principal.
    expect((statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0) - sizeBefore).toBeLessThan(1 << 20);
    // A batch of the same size with an ordinary principal is still answered.
    const fine = await client.call<{ results: CheckResponse[] }>('Authorization', 'CheckBatch', {
      principal: checkRequest({ principal: dana, action: 'x', resource: fraudModel }).principal,
      items: Array.from({ length: 1000 }, () => item),
    });
    expect(fine.results).toHaveLength(1000);
    expect(fine.results.every((r) => r.effect === 'EFFECT_ALLOW')).toBe(true);
  });

  it('refuses a request id longer than any string may be, in a Check and in a batch, recording its first 64 characters', async () => {
    // 0.9 MiB of request id, asked about 1,000 times in one batch: ~900 MiB of log if recorded per item.
    const long = `amplify-${'x'.repeat(900_000)}`;
    const item = { action: 'predict', resource: checkRequest({ principal: dana, action: 'x', resource: fraudModel }).resource };
    const principal = checkRequest({ principal: dana, action: 'x', resource: fraudModel }).principal;
    const sizeBefore = statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0;
    const before = queryDecisions(db, { principalId: 'dana', reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    for (const [method, request] of [
      ['CheckBatch', { principal, requestId: long, items: Array.from({ length: 1000 }, () => item) }],
      ['Check', { ...checkRequest({ principal: dana, action: 'predict', resource: fraudModel }), requestId: long }],
    ] as const) {
      const error = await client.call('Authorization', method, request).then(() => null, (e: grpc.ServiceError) => e);
      expect(error, method).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'request_id: 900008 characters, over the limit of 8192 (requestLimits.maxStringLength)' });
    }
    const refused = queryDecisions(db, { principalId: 'dana', reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
    expect(refused.length).toBe(before + 2);
    for (const row of refused.slice(0, 2)) expect(row.requestId).toBe(`${long.slice(0, 64)}…`);
    expect((statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0) - sizeBefore).toBeLessThan(1 << 20);
  });

  it('rejects bad input with INVALID_ARGUMENT naming the field, and records it as an error decision', async () => {
    const before = queryDecisions(db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    const noId = checkRequest({ principal: { id: '' }, action: 'read', resource: fraudModel });
    await expect(client.call('Authorization', 'Check', noId)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('principal.id') });
    const noAction = checkRequest({ principal: dana, action: '', resource: fraudModel });
    await expect(client.call('Authorization', 'Check', noAction)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('action') });
    const noType = checkRequest({ principal: dana, action: 'read', resource: { type: '' } });
    await expect(client.call('Authorization', 'Check', noType)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('resource.type') });
    const after = queryDecisions(db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
    expect(after.length).toBe(before + 3);
    expect(after.every((d) => d.effect === 'DENY')).toBe(true);
  });

  it('records a message over the size limit as an error decision and refuses it, without crashing', async () => {
    const before = queryDecisions(db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    const big = checkRequest({ principal: { ...dana, attributes: { blob: 'x'.repeat(2 * 1024 * 1024) } }, action: 'read', resource: fraudModel });
    await expect(client.call('Authorization', 'Check', big)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('over the limit of 1048576 bytes') });
    const recorded = queryDecisions(db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
    expect(recorded.length).toBe(before + 1);
    expect(recorded[0]!.errors[0]!.message).toContain('over the limit');
    const huge = checkRequest({ principal: { ...dana, attributes: { blob: 'x'.repeat(6 * 1024 * 1024) } }, action: 'read', resource: fraudModel });
    await expect(client.call('Authorization', 'Check', huge)).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    const ok = await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: dana, action: 'read', resource: fraudModel }));
    expect(ok.effect).toBe('EFFECT_ALLOW');
  });

  it('serves the admin API: policy status, decision lookup and listing', async () => {
    const status = await client.call<{ version: string; ruleCount: number; lastReloadError: string }>('Admin', 'GetPolicyStatus', {});
    expect(status.ruleCount).toBe(9);
    expect(status.lastReloadError).toBe('');
    const made = await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: ada, action: 'update', resource: globexModel, context: { ticket: 'INC-77' } }));
    expect(made.ruleIds).toEqual(['admin-break-glass']);
    const found = await client.call<{ decisionId: string; principalId: string; ruleIds: string[] }>('Admin', 'GetDecision', { decisionId: made.decisionId });
    expect(found).toMatchObject({ decisionId: made.decisionId, principalId: 'ada', ruleIds: ['admin-break-glass'] });
    const listed = await client.call<{ decisions: { decisionId: string }[] }>('Admin', 'ListDecisions', { principalId: 'ada', limit: 50 });
    expect(listed.decisions.map((d) => d.decisionId)).toContain(made.decisionId);
    await expect(client.call('Admin', 'GetDecision', { decisionId: 'no-such-id' })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('reports health over gRPC and HTTP, and exports metrics', async () => {
    expect((await http(server.httpPort, '/healthz')).status).toBe(200);
    const ready = await http(server.httpPort, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready', lastReloadError: null, decisionLog: { healthy: true } });
    const metrics = await http(server.httpPort, '/metrics');
    expect(metrics.body).toMatch(/verdict_decisions_total\{effect="ALLOW",reason="ALLOWED_BY_RULE"\} [1-9]/);
    expect(metrics.body).toMatch(/verdict_decision_log_batch_rows_count [1-9]/);
    expect(metrics.body).toContain('verdict_policy_info{version=');
    expect(metrics.body).toContain('verdict_decision_duration_seconds_bucket');
    expect(await healthStatus(server.grpcPort, '')).toBe('SERVING');
    expect(await healthStatus(server.grpcPort, 'verdict.v1.Authorization')).toBe('SERVING');
  });
});


describe('hot reload', () => {
  it('swaps in a good change, keeps serving the last good set on a broken one, and reloads on SIGHUP and by RPC', async () => {
    const policies = copyPolicies();
    const db = join(tempDir(), 'decisions.db');
    const server = await startVerdict({ policies, db });
    const client = verdictClient(server.grpcPort);
    try {
      const ask = () => client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }));
      const first = await ask();
      expect(first.effect).toBe('EFFECT_ALLOW');
      expect(first.policyVersion).toMatch(/^sha256:/);

      // A good change: a deny rule that wins over the allow.
      writeFileSync(
        join(policies, 'freeze.yaml'),
        'kind: rules\nrules:\n  - id: freeze-predictions\n    effect: deny\n    actions: [predict]\n    resource: { type: model }\n',
      );
      await server.waitForLog((l) => l.msg === 'policies reloaded' && l.changed === true);
      const frozen = await ask();
      expect(frozen).toMatchObject({ effect: 'EFFECT_DENY', ruleIds: ['freeze-predictions'] });
      expect(frozen.policyVersion).not.toBe(first.policyVersion);
      expect(getDecision(db, frozen.decisionId)?.policyVersion).toBe(frozen.policyVersion);

      // A broken change: the last good set keeps serving and the error is reported everywhere.
      writeFileSync(join(policies, 'broken.yaml'), 'kind: rules\nrules:\n  - id: oops\n    effect: perhaps\n    actions: [read]\n');
      const refused = await server.waitForLog((l) => l.msg.startsWith('policy reload refused'));
      expect(String(refused.error)).toContain('broken.yaml:4:13');
      const still = await ask();
      expect(still).toMatchObject({ effect: 'EFFECT_DENY', policyVersion: frozen.policyVersion });
      const status = await client.call<{ lastReloadError: string; version: string }>('Admin', 'GetPolicyStatus', {});
      expect(status.version).toBe(frozen.policyVersion);
      expect(status.lastReloadError).toContain('broken.yaml');
      const ready = JSON.parse((await http(server.httpPort, '/readyz')).body) as { lastReloadError: string };
      expect(ready.lastReloadError).toContain('broken.yaml');
      expect((await http(server.httpPort, '/metrics')).body).toMatch(/verdict_policy_reloads_total\{result="failure"\} [1-9]/);

      // Fix it while not watching would be missed; SIGHUP and the RPC both reload.
      rmSync(join(policies, 'broken.yaml'));
      rmSync(join(policies, 'freeze.yaml'));
      const reloaded = await client.call<{ reloaded: boolean; status: { version: string; lastReloadLongestBlockMs: number } }>('Admin', 'ReloadPolicies', {});
      expect(reloaded.reloaded).toBe(true);
      expect(reloaded.status.version).toBe(first.policyVersion);
      // How long the reload held the event loop is reported (a measurement: only its presence is checked here).
      expect(typeof reloaded.status.lastReloadLongestBlockMs).toBe('number');
      expect(reloaded.status.lastReloadLongestBlockMs).toBeGreaterThan(0);
      // What the reload's own slices did is reported beside it, naming a load stage.
      const readyAfter = JSON.parse((await http(server.httpPort, '/readyz')).body) as { lastReloadSlices: { longestSliceMs: number; longestSliceStage: string; longestCollectionMs: number; slices: number } | null };
      expect(readyAfter.lastReloadSlices).toMatchObject({ longestSliceMs: expect.any(Number), longestCollectionMs: expect.any(Number), slices: expect.any(Number) });
      expect(['read', 'schema', 'variables', 'attributes', 'roles', 'directories', 'rules', 'routes', 'limits', 'tests', 'assemble']).toContain(readyAfter.lastReloadSlices!.longestSliceStage);
      const reloadCount = /^verdict_policy_reload_seconds_count (\d+)$/m.exec((await http(server.httpPort, '/metrics')).body);
      expect(Number(reloadCount?.[1])).toBeGreaterThanOrEqual(3);
      expect((await ask()).effect).toBe('EFFECT_ALLOW');
      server.child.kill('SIGHUP');
      await server.waitForLog((l) => l.msg === 'SIGHUP: reloading policies');
    } finally {
      client.close();
      expect(await server.stop()).toBe(0);
    }
  });

  it('reloads once serving when SIGHUP came while the policies were loading', async () => {
    const policies = copyPolicies();
    const server = await startVerdict({ policies, db: join(tempDir(), 'decisions.db'), args: ['--no-watch'], startTimeoutMs: 120_000, onLine: signalWhileLoading(policies) });
    const client = verdictClient(server.grpcPort);
    try {
      await server.waitForLog((l) => l.msg === 'SIGHUP while starting: the policies are reloaded once verdict serves');
      // Nothing else reloads here (no watching): this is the signal's reload, after the server came up.
      await server.waitForLog((l) => l.msg === 'policies reloaded', 60_000);
      const answer = await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }));
      expect(answer).toMatchObject({ effect: 'EFFECT_DENY', ruleIds: ['freeze-predictions'] });
    } finally {
      client.close();
      expect(await server.stop()).toBe(0);
    }
  }, 180_000);

  it('names the first problems of a reload that finds thousands, and still serves the last good set', async () => {
    const policies = copyPolicies();
    const server = await startVerdict({ policies, db: join(tempDir(), 'decisions.db'), args: ['--no-watch'] });
    const client = verdictClient(server.grpcPort);
    try {
      const before = await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }));
      // An export gone wrong: every id a number, two problems per entry.
      const entries = 3_000;
      const text = JSON.stringify({ kind: 'principals', principals: Array.from({ length: entries }, () => ({ id: 5, roles: 'x' })) });
      writeFileSync(join(policies, 'people.json'), text);
      const reload = await client.call<{ reloaded: boolean; error: string }>('Admin', 'ReloadPolicies', {});
      expect(reload.reloaded).toBe(false);
      expect(reload.error).toMatch(new RegExp(`^${2 * entries} error\\(s\\); still serving ${before.policyVersion}: `));
      expect(reload.error).toContain(`people.json:1:${text.indexOf('"id":5') + 6}: "id" must be a string, not number 5 (at principals[0].id)`);
      expect(reload.error).toContain(`… and ${2 * entries - PROBLEMS_NAMED} more (verdict validate ${policies} lists them all)`);
      // The count and version, the problems named, and how many more.
      expect(reload.error.split('; ')).toHaveLength(1 + PROBLEMS_NAMED + 1);
      const status = await client.call<{ lastReloadError: string; version: string }>('Admin', 'GetPolicyStatus', {});
      expect(status).toMatchObject({ lastReloadError: reload.error, version: before.policyVersion });
      expect((await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }))).effect).toBe('EFFECT_ALLOW');
    } finally {
      client.close();
      expect(await server.stop()).toBe(0);
    }
  });

  it('refuses to start on invalid policies, naming file:line:col', async () => {
    const policies = copyPolicies();
    writeFileSync(join(policies, 'broken.yaml'), 'kind: rules\nrules:\n  - id: oops\n    effect: allow\n    actions: [read]\n    when: principal.nope ==\n');
    await expect(startVerdict({ policies, db: join(tempDir(), 'd.db') })).rejects.toThrow(/broken\.yaml:6:11: condition does not compile/);
  });
});

describe('graceful shutdown', () => {
  // That every check in flight gets its answer is shown deterministically in
  // shutdown.test.ts (the log's appends held until all are inside the server);
  // here the real binary is stopped by SIGTERM under load.
  it('on SIGTERM stops accepting, answers what it took in, exits 0, and every answered check is in the log', async () => {
    const db = join(tempDir(), 'decisions.db');
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db });
    const client = verdictClient(server.grpcPort);
    const answered: string[] = [];
    const failures: grpc.ServiceError[] = [];
    let twentyAnswered!: () => void;
    const underWay = new Promise<void>((resolve) => (twentyAnswered = resolve));
    const calls = Array.from({ length: 400 }, (_, i) =>
      client
        .call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel, requestId: `r${i}` }))
        .then((r) => {
          answered.push(r.decisionId);
          if (answered.length === 20) twentyAnswered();
        })
        .catch((error: grpc.ServiceError) => void failures.push(error)),
    );
    await underWay;
    const exit = server.stop('SIGTERM');
    await Promise.all(calls);
    expect(await exit).toBe(0);
    client.close();
    expect(answered.length + failures.length).toBe(400);
    expect(answered.length).toBeGreaterThanOrEqual(20);
    // A check refused at the door is UNAVAILABLE; none was cut off for running past the grace.
    expect(failures.filter((f) => f.code !== grpc.status.UNAVAILABLE || /shutting down/.test(f.details))).toEqual([]);
    const reader = new Database(db, { readonly: true });
    const stored = new Set((reader.prepare('SELECT decision_id FROM decisions').all() as { decision_id: string }[]).map((r) => r.decision_id));
    reader.close();
    const missing = answered.filter((id) => !stored.has(id));
    expect(missing).toEqual([]);
    expect(server.logs.some((l) => l.msg === 'stopped')).toBe(true);
  });
});

describe('fail closed', () => {
  it('answers UNAVAILABLE and reports NOT_SERVING while the log cannot be written, then recovers', async () => {
    const db = join(tempDir(), 'decisions.db');
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db });
    const client = verdictClient(server.grpcPort);
    const ask = () => client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }));
    try {
      expect((await ask()).effect).toBe('EFFECT_ALLOW');
      // Another process takes the write lock and keeps it: verdict cannot commit.
      const locker = new Database(db);
      locker.exec('BEGIN EXCLUSIVE');
      await expect(ask()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      expect(await healthStatus(server.grpcPort, 'verdict.v1.Authorization')).toBe('NOT_SERVING');
      const ready = await http(server.httpPort, '/readyz');
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.body).decisionLog.lastError).toMatch(/lock|busy/i);
      await server.waitForLog((l) => l.msg.startsWith('decision log cannot be written'));

      locker.exec('ROLLBACK');
      locker.close();
      await server.waitForLog((l) => l.msg.startsWith('decision log writable again'));
      const after = await ask();
      expect(after.effect).toBe('EFFECT_ALLOW');
      expect(getDecision(db, after.decisionId)).not.toBeNull();
      expect(await healthStatus(server.grpcPort, 'verdict.v1.Authorization')).toBe('SERVING');
      // No allow was answered without a row: every ALLOW row count matches what we were told.
      const allows = queryDecisions(db, { effect: 'ALLOW', limit: 1000 });
      expect(allows.length).toBe(2);
    } finally {
      client.close();
      expect(await server.stop()).toBe(0);
    }
  });
});

describe('configuration', () => {
  it('rejects an unknown key in the config file with a clear message and exit 2', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'verdict.yaml'), 'policies: policies\ngrpcc: 1.2.3.4:5\n');
    const { spawnSync } = await import('node:child_process');
    const result = spawnSync(process.execPath, [join(ROOT, 'bin', 'verdict.js'), 'serve', '--config', join(dir, 'verdict.yaml')], { cwd: ROOT, encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('unknown key "grpcc"');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('will not serve AuthZEN with a jwt: PEP that tokens of two issuers could claim (exit 2, naming it)', async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'verdict.yaml'),
      'authn:\n  jwt:\n    issuer: [https://staff.example/, https://customers.example/]\n    audience: verdict\n    algorithms: [EdDSA]\n    jwksFile: jwks.json\nauthzen:\n  peps: [jwt:gateway-1]\n',
    );
    const { spawnSync } = await import('node:child_process');
    const result = spawnSync(process.execPath, [join(ROOT, 'bin', 'verdict.js'), 'serve', '--config', join(dir, 'verdict.yaml'), '--policies', join(ROOT, 'policies'), '--db', join(dir, 'd.db')], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('authzen.peps lists jwt:gateway-1, but authn.jwt accepts several issuers');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it.each(['grpc', 'http', 'ops'] as const)('a --%s address already in use is named with its flag, not a stack trace', async (setting) => {
    const { createServer } = await import('node:net');
    const { spawnSync } = await import('node:child_process');
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const taken = `127.0.0.1:${(holder.address() as { port: number }).port}`;
    try {
      const addresses = { grpc: '127.0.0.1:0', http: '127.0.0.1:0', ops: '127.0.0.1:0', [setting]: taken };
      const dir = tempDir();
      const result = spawnSync(process.execPath, [
        join(ROOT, 'bin', 'verdict.js'), 'serve', '--policies', join(ROOT, 'policies'), '--db', join(dir, 'd.db'),
        '--grpc', addresses.grpc, '--http', addresses.http, '--ops', addresses.ops, '--log-level', 'silent',
      ], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      expect(result.status).toBe(5);
      expect(result.stderr).toContain(`--${setting} ${taken} is already in use`);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
  });

  it('reads the config file and environment variables', async () => {
    const dir = tempDir();
    const db = join(dir, 'from-config.db');
    writeFileSync(join(dir, 'verdict.yaml'), `policies: ${join(ROOT, 'policies')}\ndb: /nonexistent/ignored.db\ndecisionLog: async\n`);
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--config', join(dir, 'verdict.yaml')], env: { VERDICT_LOG_LEVEL: 'debug' } });
    try {
      const serving = server.logs.find((l) => l.msg === 'verdict serving')!;
      expect(serving.decisionLog).toBe('async');
      expect(serving.db).toBe(db); // the flag wins over the file
      expect(serving.level).toBe(30);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    expect(readFileSync(db).length).toBeGreaterThan(0);
  });
});
