import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import { BIN, ROOT, checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';
import { alertAbout, cleanUp, dana, forwardAuthHeaders, fraudModel, startTestServer, type TestServer } from './support.js';

// Suspension as the response to an alert, on a real server over gRPC and
// forward-auth: alerts are published into the server's own sinks (what its
// detectors do), in this process; no port reaches them.

const run = promisify(execFile);
const servers: TestServer[] = [];
const clients: VerdictClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.stop();
});
afterAll(cleanUp);

async function serve(...args: Parameters<typeof startTestServer>): Promise<{ t: TestServer; client: VerdictClient }> {
  const t = await startTestServer(...args);
  servers.push(t);
  const client = verdictClient(t.server.grpcPort);
  clients.push(client);
  return { t, client };
}

interface CheckAnswer {
  effect: string;
  reason: string;
  decisionId: string;
  errors: { ruleId: string; message: string }[];
}

function check(client: VerdictClient, principal = dana): Promise<CheckAnswer> {
  return client.call<CheckAnswer>('Authorization', 'Check', checkRequest({ principal, action: 'predict', resource: fraudModel }));
}

/** `verdict suspend …` against the server, as an operator runs it (asynchronously: the server answers in this process). */
async function cli(port: number, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, 'suspend', ...args, '--server', `127.0.0.1:${port}`], { cwd: ROOT });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const ON = { alerts: { suspend: { enabled: true, for: '15m', types: ['probing', 'extraction'] } } } as const;

describe('suspension on a real server', () => {
  it('when on, an alert suspends its principal: DENY with DENIED_BY_SUSPENSION, recorded with the alert and until when; others unaffected', async () => {
    const { t, client } = await serve(ON);
    expect(await check(client)).toMatchObject({ effect: 'EFFECT_ALLOW' });

    const alert = alertAbout('dana', 'probing');
    const before = Date.now();
    t.server.publishAlert(alert);
    const denied = await check(client);
    expect(denied).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_SUSPENSION' });
    expect(denied.errors).toEqual([{ ruleId: 'suspension', message: expect.stringMatching(new RegExp(`^suspended until \\S+Z after alert ${alert.id} \\(probing\\)$`)) }]);

    const row = getDecision(t.db, denied.decisionId)!;
    expect(row).toMatchObject({ principalId: 'dana', effect: 'DENY', reason: 'DENIED_BY_SUSPENSION', ruleIds: [] });
    const suspension = (row.details as { suspension: { alertId: string; alertType: string; until: number; since: number } }).suspension;
    expect(suspension).toMatchObject({ alertId: alert.id, alertType: 'probing' });
    expect(suspension.until - suspension.since).toBe(15 * 60_000);
    expect(suspension.since).toBeGreaterThanOrEqual(before);

    // Another principal is not suspended; an unlisted alert type and a non-principal subject suspend nobody.
    const ada = { ...dana, id: 'ada' };
    t.server.publishAlert(alertAbout('ada', 'volume'));
    t.server.publishAlert(alertAbout('ada', 'extraction', 'api-key'));
    expect(await check(client, ada)).toMatchObject({ effect: 'EFFECT_ALLOW' });
    expect(t.server.suspensions.list().map((s) => s.principalId)).toEqual(['dana']);
  });

  it('verdict suspend list shows it and verdict suspend lift lifts it: allowed again; both calls are recorded', async () => {
    const { t, client } = await serve(ON);
    const alert = alertAbout('dana', 'extraction');
    t.server.publishAlert(alert);
    expect(await check(client)).toMatchObject({ reason: 'REASON_DENIED_BY_SUSPENSION' });

    const listed = await cli(t.server.grpcPort, 'list', '--json');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([{ principalId: 'dana', since: expect.any(String), until: expect.any(String), alertId: alert.id, alertType: 'extraction', note: alert.summary }]);

    const lifted = await cli(t.server.grpcPort, 'lift', 'dana');
    expect(lifted).toMatchObject({ code: 0, stdout: expect.stringMatching(/^lifted: dana {2}until /) });
    expect(await check(client)).toMatchObject({ effect: 'EFFECT_ALLOW' });

    // Lifting again: nothing to lift (exit 4, the reason said).
    const again = await cli(t.server.grpcPort, 'lift', 'dana');
    expect(again).toMatchObject({ code: 4, stderr: 'verdict suspend: principal dana is not suspended\n' });
    expect((await cli(t.server.grpcPort, 'list')).stdout).toBe('no principal is suspended\n');

    const recorded = (action: string): unknown[] => queryDecisions(t.db, { action, limit: 100 }).map((r) => [r.resourceType, r.resourceId, r.effect]);
    expect(recorded('ListSuspensions')).toEqual([['verdict.admin', '', 'ALLOW'], ['verdict.admin', '', 'ALLOW']]);
    expect(recorded('LiftSuspension')).toEqual([['verdict.admin', 'dana', 'ALLOW'], ['verdict.admin', 'dana', 'ALLOW']]);
  });

  it('ends by itself when its time is up', async () => {
    const { t, client } = await serve({ alerts: { suspend: { enabled: true, for: '1s', types: ['probing'] } } });
    t.server.publishAlert(alertAbout('dana'));
    const denied = await check(client);
    expect(denied).toMatchObject({ reason: 'REASON_DENIED_BY_SUSPENSION' });
    const until = (getDecision(t.db, denied.decisionId)!.details as { suspension: { until: number } }).suspension.until;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, until - Date.now()) + 20));
    expect(await check(client)).toMatchObject({ effect: 'EFFECT_ALLOW' });
    expect(t.server.suspensions.list()).toEqual([]);
  });

  it('is off by default: the same alert changes nothing', async () => {
    const { t, client } = await serve();
    expect(t.server.alertSinks).toEqual([]);
    t.server.publishAlert(alertAbout('dana', 'probing'));
    t.server.publishAlert(alertAbout('dana', 'extraction'));
    expect(await check(client)).toMatchObject({ effect: 'EFFECT_ALLOW' });
    expect(t.server.suspensions.list()).toEqual([]);
  });

  it('through forward-auth: a suspended principal gets 403 with the decision id, recorded as DENIED_BY_SUSPENSION', async () => {
    const { t } = await serve(ON);
    const url = `http://127.0.0.1:${t.server.httpPort}/forward-auth`;
    expect((await fetch(url, { headers: forwardAuthHeaders('dana') })).status).toBe(200);
    t.server.publishAlert(alertAbout('dana'));
    const answer = await fetch(url, { headers: forwardAuthHeaders('dana') });
    expect(answer.status).toBe(403);
    const decisionId = answer.headers.get('x-verdict-decision-id');
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await answer.json()).toMatchObject({ reason: 'DENIED_BY_SUSPENSION' });
    expect(getDecision(t.db, decisionId!)).toMatchObject({ principalId: 'dana', reason: 'DENIED_BY_SUSPENSION', details: { suspension: { alertType: 'probing' }, http: { method: 'POST', path: '/v1/models/fraud-v3/predict' } } });
    expect((await fetch(url, { headers: forwardAuthHeaders('ada') })).status).toBe(200);
  });

  it('survives a restart (kept in the log file, beside the decisions), and a lift does too', async () => {
    const first = await startTestServer(ON);
    first.server.publishAlert(alertAbout('dana'));
    first.server.publishAlert(alertAbout('ada'));
    const { client: c1 } = { client: verdictClient(first.server.grpcPort) };
    expect(await check(c1)).toMatchObject({ reason: 'REASON_DENIED_BY_SUSPENSION' });
    c1.close();
    await first.stop();

    const { t, client } = await serve({}, first.db);
    // Suspension turned off in the new config: what was suspended stays so until it ends or is lifted.
    expect(await check(client)).toMatchObject({ reason: 'REASON_DENIED_BY_SUSPENSION' });
    expect(t.server.suspensions.list().map((s) => s.principalId).sort()).toEqual(['ada', 'dana']);
    expect((await cli(t.server.grpcPort, 'lift', 'ada')).code).toBe(0);
    await t.stop();
    servers.pop();

    const third = await serve({}, first.db);
    expect(third.t.server.suspensions.list().map((s) => s.principalId)).toEqual(['dana']);
  });

  it('never waits on the thread that answers checks for the lock the log writer holds: the write is retried, then lands', async () => {
    const { t, client } = await serve();
    const stored = (): string[] => {
      const db = new Database(t.db, { readonly: true });
      try {
        return (db.prepare('SELECT principal_id FROM suspensions').all() as { principal_id: string }[]).map((r) => r.principal_id);
      } finally {
        db.close();
      }
    };
    // Another connection holds the write lock, as the writer does through a slow fsync.
    const holder = new Database(t.db);
    holder.exec('BEGIN IMMEDIATE');
    // The longest gap between ticks of a 5 ms timer: how long this thread stopped.
    let last = performance.now();
    let longestStopMs = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      longestStopMs = Math.max(longestStopMs, now - last);
      last = now;
    }, 5);
    t.server.suspensions.suspend('dana', 600_000, { alertId: '', alertType: 'manual', note: 'held lock' });
    // Several retries' worth of time with the lock held; the suspension holds in memory meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 400));
    clearInterval(ticker);
    expect(stored()).toEqual([]);
    // A write that waited for the lock (SQLite's busy timeout) would have stopped this thread — and every check — for seconds.
    expect(longestStopMs).toBeLessThan(1000);
    holder.exec('COMMIT');
    holder.close();
    const deadline = Date.now() + 10_000;
    while (!stored().includes('dana') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stored()).toEqual(['dana']);
    expect(await check(client)).toMatchObject({ reason: 'REASON_DENIED_BY_SUSPENSION' });
  });

  it('Admin SuspendPrincipal suspends by hand (suspension off or on), recorded; a bad duration is INVALID_ARGUMENT', async () => {
    const { t, client } = await serve();
    const made = await client.call<{ principalId: string; alertType: string; note: string }>('Admin', 'SuspendPrincipal', { principalId: 'dana', duration: { seconds: 600 }, note: 'INC-42' });
    expect(made).toMatchObject({ principalId: 'dana', alertType: 'manual', note: 'INC-42' });
    const denied = await check(client);
    expect(denied).toMatchObject({ reason: 'REASON_DENIED_BY_SUSPENSION', errors: [{ ruleId: 'suspension', message: expect.stringMatching(/^suspended until \S+Z by an operator$/) }] });
    // The note is the operator's, not the caller's: the answer leaves it out, the row keeps it.
    expect(getDecision(t.db, denied.decisionId)!.details).toMatchObject({ suspension: { note: 'INC-42', alertType: 'manual' } });
    for (const duration of [null, { seconds: 0 }, { seconds: 31 * 86_400 }]) {
      await expect(client.call('Admin', 'SuspendPrincipal', { principalId: 'ada', duration })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    }
    await expect(client.call('Admin', 'SuspendPrincipal', { principalId: '', duration: { seconds: 60 } })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    const recorded = queryDecisions(t.db, { action: 'SuspendPrincipal', limit: 10 });
    expect(recorded.length).toBe(5);
    expect(recorded.at(-1)).toMatchObject({ resourceId: 'dana', effect: 'ALLOW' });
    expect(t.server.suspensions.list().map((s) => s.principalId)).toEqual(['dana']);
  });

  it('ListSuspensions is paged: each suspension once, soonest to end first; page_size capped at 1000; a bad token or size is INVALID_ARGUMENT, recorded', async () => {
    const { t, client } = await serve();
    for (let i = 0; i < 1005; i++) t.server.suspensions.suspend(`p${String(i).padStart(4, '0')}`, 600_000 + (i % 7) * 1000, { alertId: '', alertType: 'manual', note: '' });
    type Page = { suspensions: { principalId: string }[]; nextPageToken: string };
    const list = (request: object): Promise<Page> => client.call<Page>('Admin', 'ListSuspensions', request);
    const want = t.server.suspensions.list().map((s) => s.principalId);
    // The default page is 100; a page_size past 1000 is treated as 1000.
    expect((await list({})).suspensions).toHaveLength(100);
    const big = await list({ pageSize: 5000 });
    expect(big.suspensions.map((s) => s.principalId)).toEqual(want.slice(0, 1000));
    expect((await list({ pageSize: 5000, pageToken: big.nextPageToken })).suspensions.map((s) => s.principalId)).toEqual(want.slice(1000));
    // Pages of 300, with one suspension lifted between pages: none listed twice, none left out.
    const seen: string[] = [];
    let page = await list({ pageSize: 300 });
    seen.push(...page.suspensions.map((s) => s.principalId));
    await client.call('Admin', 'LiftSuspension', { principalId: seen[0] });
    while (page.nextPageToken !== '') {
      page = await list({ pageSize: 300, pageToken: page.nextPageToken });
      seen.push(...page.suspensions.map((s) => s.principalId));
    }
    expect(seen).toEqual(want);
    // A token altered (its end moved), cut short, or made up; a negative size.
    const token = Buffer.from(big.nextPageToken, 'base64url').toString('utf8');
    const altered = Buffer.from(token.replace(/^s1\.(\d)/, (_, d: string) => `s1.${(Number(d) + 1) % 10}`), 'utf8').toString('base64url');
    for (const pageToken of [altered, big.nextPageToken.slice(0, -4), 'not-a-token', 'x'.repeat(10_000)]) {
      await expect(list({ pageToken })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/^page_token: is not a token this server gave/) });
    }
    await expect(list({ pageSize: -1 })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/^page_size: /) });
    const recorded = queryDecisions(t.db, { action: 'ListSuspensions', limit: 1 });
    expect(recorded[0]!.details).toMatchObject({ admin: { method: 'ListSuspensions', parameters: { pageSize: -1 } } });
    // verdict suspend list reads every page.
    expect((await cli(t.server.grpcPort, 'list')).stdout.trim().split('\n')).toHaveLength(1004);
  });

  it('pages past a suspension whose principal id is as long as a check may carry (8,192 characters, three UTF-8 bytes each)', async () => {
    const { client } = await serve();
    const long = '\u6F22'.repeat(8192);
    await client.call('Admin', 'SuspendPrincipal', { principalId: long, duration: { seconds: 600 } });
    await client.call('Admin', 'SuspendPrincipal', { principalId: 'dana', duration: { seconds: 900 } });
    type Page = { suspensions: { principalId: string }[]; nextPageToken: string };
    const first = await client.call<Page>('Admin', 'ListSuspensions', { pageSize: 1 });
    expect(first.suspensions.map((s) => s.principalId)).toEqual([long]);
    // The token this server gave after that id must take it on to the next page.
    const second = await client.call<Page>('Admin', 'ListSuspensions', { pageSize: 1, pageToken: first.nextPageToken });
    expect(second).toEqual({ suspensions: [expect.objectContaining({ principalId: 'dana' })], nextPageToken: '' });
  });

  it('holds for every spelling of the id an identity provider may read as one (case, end whitespace, invisible characters), and a lift by any of them lifts it', async () => {
    const { client } = await serve();
    // dana is in no directory: her id arrives as the gateway read it.
    await client.call('Admin', 'SuspendPrincipal', { principalId: 'dana', duration: { seconds: 600 } });
    for (const id of ['dana', 'Dana', 'DANA', 'dana ', 'da\u200Bna', '\uFF44ana']) {
      expect(await check(client, { ...dana, id }), id).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_SUSPENSION' });
    }
    // Another principal is untouched.
    expect(await check(client, { ...dana, id: 'danae' })).toMatchObject({ effect: 'EFFECT_ALLOW' });
    await client.call('Admin', 'LiftSuspension', { principalId: 'DANA' });
    expect(await check(client, { ...dana, id: 'Dana' })).toMatchObject({ effect: 'EFFECT_ALLOW' });
  });

  it('a suspended principal finds nothing through AuthZEN search either, and finds it again once lifted', async () => {
    const { t, client } = await serve();
    const search = async (): Promise<string[]> => {
      const response = await fetch(`http://127.0.0.1:${t.server.httpPort}/access/v1/search/resource`, {
        method: 'POST',
        // The gateway in front says who calls (trustedPrincipal, as for forward-auth).
        headers: { 'content-type': 'application/json', 'x-user': 'model-gateway' },
        body: JSON.stringify({ subject: { type: 'user', id: 'maya' }, action: { name: 'predict' }, resource: { type: 'model' } }),
      });
      expect(response.status).toBe(200);
      return ((await response.json()) as { results: { id: string }[] }).results.map((r) => r.id);
    };
    const before = await search();
    expect(before.length).toBeGreaterThan(0);
    await client.call('Admin', 'SuspendPrincipal', { principalId: 'maya', duration: { seconds: 600 } });
    expect(await search()).toEqual([]);
    await client.call('Admin', 'LiftSuspension', { principalId: 'maya' });
    expect(await search()).toEqual(before);
  });

  it('needs an admin identity: without the token nobody suspends or lifts, and the refusals are recorded; the CLI with --token-file may', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-admin-token-'));
    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, `${'a1b2'.repeat(10)}\n`, { mode: 0o600 });
    const { t, client } = await serve({ admin: { tokenFile } });
    await expect(client.call('Admin', 'SuspendPrincipal', { principalId: 'dana', duration: { seconds: 600 } })).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    expect(await check(client)).toMatchObject({ effect: 'EFFECT_ALLOW' });
    const refused = await cli(t.server.grpcPort, 'add', 'dana', '--for', '10m');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/refused the call: admin: an admin identity is required/);
    expect(t.server.suspensions.list()).toEqual([]);
    expect(queryDecisions(t.db, { action: 'SuspendPrincipal', limit: 10 }).map((r) => [r.effect, r.reason, r.resourceId])).toEqual([
      ['DENY', 'DENIED_UNAUTHENTICATED', 'dana'],
      ['DENY', 'DENIED_UNAUTHENTICATED', 'dana'],
    ]);

    const made = await cli(t.server.grpcPort, 'add', 'dana', '--for', '10m', '--note', 'INC-7', '--token-file', tokenFile);
    expect(made).toMatchObject({ code: 0, stdout: expect.stringMatching(/^suspended: dana {2}until \S+ {2}since \S+ {2}manual {2}"INC-7"\n$/) });
    expect(await check(client)).toMatchObject({ reason: 'REASON_DENIED_BY_SUSPENSION' });
    expect((await cli(t.server.grpcPort, 'lift', 'dana')).code).toBe(2);
    expect((await cli(t.server.grpcPort, 'lift', 'dana', '--token-file', tokenFile)).code).toBe(0);
    expect(await check(client)).toMatchObject({ effect: 'EFFECT_ALLOW' });
  });
});
