import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert, AlertQuery, AlertReader } from '../../src/analysis/alert.js';
import { queryDecisions, type StoredDecision } from '../../src/decisions/query.js';
import { startServer, type RunningServer } from '../../src/server/app.js';
import { resolveConfig } from '../../src/server/config.js';
import { UNRECORDED_VALUE } from '../../src/server/console-query.js';
import { createLogger } from '../../src/server/logger.js';
import { ROOT, checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';

const TOKEN = 'console-test-token-0123456789abcdef0123456789';
const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const eve = { id: 'eve', roles: [] as string[], attributes: { org: 'evil' } };
const model = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json: () => any;
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const auth = { authorization: `Bearer ${TOKEN}` };
const dirs: string[] = [];

function consoleRows(db: string, method?: string): StoredDecision[] {
  return queryDecisions(db, { resourceType: 'verdict.admin', limit: 1000, ...(method ? { action: method } : {}) }).reverse();
}

async function start(options: { token: boolean; alerts?: AlertReader; alertsEnabled?: boolean }): Promise<{ server: RunningServer; db: string; client: VerdictClient }> {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-console-'));
  dirs.push(dir);
  const db = join(dir, 'decisions.db');
  const tokenFile = join(dir, 'admin.token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const config = resolveConfig([
    { policies: join(ROOT, 'policies'), db, grpc: '127.0.0.1:0', http: '127.0.0.1:0', watch: false, checkpointEveryRows: 5, ...(options.token ? { admin: { tokenFile } } : {}) },
  ]);
  const server = await startServer(options.alertsEnabled === false ? { ...config, alerts: { ...config.alerts, enabled: false } } : config, createLogger('silent'), { alerts: options.alerts ?? null });
  return { server, db, client: verdictClient(server.grpcPort) };
}

async function check(client: VerdictClient, principal: { id: string; roles: string[]; attributes: Record<string, unknown> }, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const answer = await client.call<{ decisionId: string }>('Authorization', 'Check', checkRequest({ principal, action: 'predict', resource: model }));
    ids.push(answer.decisionId);
  }
  return ids;
}

describe('the console API on a server with an admin token', () => {
  let server: RunningServer;
  let client: VerdictClient;
  let db: string;
  let danaIds: string[];
  let eveIds: string[];
  const listed: AlertQuery[] = [];

  beforeAll(async () => {
    const alerts: AlertReader = {
      async list(query) {
        listed.push(query);
        const alert: Alert = {
          id: 'alert-1',
          type: 'probing',
          subject: { kind: 'principal', id: 'eve' },
          windowStart: Date.now() - 3_600_000,
          windowEnd: Date.now(),
          observed: 100,
          threshold: 50,
          decisionIds: eveIds.slice(0, 2),
          raisedAt: Date.now(),
          summary: 'eve: 100% of decisions denied, over 50%',
        };
        return [alert];
      },
    };
    ({ server, client, db } = await start({ token: true, alerts }));
    danaIds = await check(client, dana, 6);
    eveIds = await check(client, eve, 3);
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
  });

  it('serves the page to anyone, self-contained, under a strict Content-Security-Policy', async () => {
    const page = await get(server.httpPort, '/console');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toMatch(/default-src 'none'/);
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
    expect(csp).toMatch(/connect-src 'self'/);
    expect(csp).not.toMatch(/unsafe/);
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    // Nothing loaded from elsewhere: no src/href to another origin, no external script or style.
    expect(page.body).not.toMatch(/(src|href)\s*=\s*["']?(https?:)?\/\//i);
    expect(page.body).not.toMatch(/<link|<script[^>]+src/i);
    // The inline script parses (the browser test runs it).
    const script = page.body.slice(page.body.indexOf('<script>') + 8, page.body.indexOf('</script>'));
    expect(() => new Function(script)).not.toThrow();
  });

  it('answers every data endpoint 401 without the admin token, and records each refusal', async () => {
    const before = consoleRows(db).length;
    const paths = ['/console/api/policy', '/console/api/audit', '/console/api/summary', '/console/api/decisions', `/console/api/decision/${danaIds[0]}`, '/console/api/alerts', '/console/api/tail'];
    for (const path of paths) {
      const answer = await get(server.httpPort, path);
      expect(answer.status, path).toBe(401);
      expect(answer.headers['www-authenticate']).toBe('Bearer realm="verdict-admin"');
      expect(answer.json().error).toMatch(/admin identity is required/);
      expect(answer.body).not.toMatch(/\n\s+at /);
    }
    const wrong = await get(server.httpPort, '/console/api/decisions', { authorization: `Bearer ${TOKEN}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.json().error).toBe('admin: the admin token was not accepted');
    const rows = consoleRows(db).slice(before);
    expect(rows.map((r) => r.action)).toEqual(['ConsolePolicy', 'ConsoleAudit', 'ConsoleSummary', 'ConsoleDecisions', 'ConsoleDecision', 'ConsoleAlerts', 'ConsoleTail', 'ConsoleDecisions']);
    for (const row of rows) expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED', resourceType: 'verdict.admin', details: { admin: { refused: 'UNAUTHENTICATED' } } });
    expect(rows[4]!.resourceId).toBe(danaIds[0]);
  });

  it('records each admitted call with its parameters', async () => {
    const answer = await get(server.httpPort, '/console/api/decisions?principal=dana&limit=2', auth);
    expect(answer.status).toBe(200);
    expect(consoleRows(db, 'ConsoleDecisions').at(-1)).toMatchObject({
      effect: 'ALLOW',
      principalId: 'admin-token',
      ruleIds: ['admin'],
      details: { admin: { method: 'ConsoleDecisions', via: 'token', parameters: { principal: 'dana', limit: '2' } } },
    });
  });

  it('never records the value of a parameter no endpoint reads, so a token pasted as ?token= stays out of the log', async () => {
    const secret = 'console-secret-9f3b1c7e';
    const pasted = await get(server.httpPort, `/console/api/decisions?principal=dana&token=${secret}`, auth);
    expect(pasted.status).toBe(400);
    expect(pasted.json()).toMatchObject({ parameter: 'token' });
    const refused = await get(server.httpPort, `/console/api/summary?since=1h&access_token=${secret}`);
    expect(refused.status).toBe(401);
    const rows = consoleRows(db).slice(-2);
    expect(rows[0]!.details).toMatchObject({ admin: { method: 'ConsoleDecisions', parameters: { principal: 'dana', token: UNRECORDED_VALUE } } });
    expect(rows[1]!.details).toMatchObject({ admin: { method: 'ConsoleSummary', refused: 'UNAUTHENTICATED', parameters: { since: '1h', access_token: UNRECORDED_VALUE } } });
    expect(JSON.stringify(queryDecisions(db, { limit: 1000 }))).not.toContain(secret);
    for (const file of [db, `${db}-wal`]) {
      if (existsSync(file)) expect(readFileSync(file).includes(secret), file).toBe(false);
    }
  });

  it('records the value of every parameter some endpoint reads (each endpoint names what it reads when refusing another)', async () => {
    for (const path of ['/console/api/decisions', '/console/api/summary', '/console/api/alerts']) {
      const answer = await get(server.httpPort, `${path}?zz=1`, auth);
      const accepted = /use (.*)$/.exec((answer.json() as { error: string }).error)![1]!.split(', ');
      expect(accepted.length, path).toBeGreaterThan(2);
      const query = accepted.map((name) => `${name}=`).join('&');
      await get(server.httpPort, `${path}?${query}`, auth);
      const recorded = (consoleRows(db).at(-1)!.details as { admin: { parameters: Record<string, string> } }).admin.parameters;
      expect(Object.keys(recorded).sort(), path).toEqual([...accepted].sort());
      for (const name of accepted) expect(recorded[name], `${path} ${name}`).toBe('');
    }
  });

  it('counts decisions by bucket, effect and reason, leaving out its own rows', async () => {
    const answer = await get(server.httpPort, '/console/api/summary?since=1h&buckets=12', auth);
    expect(answer.status).toBe(200);
    const summary = answer.json() as { bucketMs: number; since: number; until: number; counts: { start: number; effect: string; reason: string; count: number }[] };
    expect(summary.bucketMs).toBe(300_000);
    const total = (effect: string): number => summary.counts.filter((c) => c.effect === effect).reduce((a, c) => a + c.count, 0);
    expect(total('ALLOW')).toBe(6);
    expect(total('DENY')).toBe(3);
    expect(summary.counts.filter((c) => c.reason === 'DENIED_BY_DEFAULT').reduce((a, c) => a + c.count, 0)).toBe(3);
    for (const c of summary.counts) expect(c.start % summary.bucketMs).toBe(0);
    const dana = await get(server.httpPort, '/console/api/summary?since=1h&principal=dana', auth);
    expect((dana.json().counts as { count: number }[]).reduce((a, c) => a + c.count, 0)).toBe(6);
  });

  it('lists decisions with the filters of verdict decisions, page by page', async () => {
    const first = (await get(server.httpPort, '/console/api/decisions?principal=dana&limit=4', auth)).json();
    expect(first.decisions).toHaveLength(4);
    for (const d of first.decisions) expect(d).toMatchObject({ principalId: 'dana', effect: 'ALLOW', resourceId: 'fraud-v3' });
    expect(first.next).toEqual(expect.any(String));
    const second = (await get(server.httpPort, `/console/api/decisions?principal=dana&limit=4&page=${first.next}`, auth)).json();
    expect(second.decisions).toHaveLength(2);
    expect(second.next).toBeNull();
    expect(new Set([...first.decisions, ...second.decisions].map((d: { decisionId: string }) => d.decisionId))).toEqual(new Set(danaIds));
    // A relative since moves with each request: the answer gives it resolved, and the next page asks with that.
    const recent = (await get(server.httpPort, '/console/api/decisions?principal=dana&limit=4&since=1h', auth)).json();
    expect(recent.since).toBeGreaterThan(Date.now() - 3_600_000 - 60_000);
    expect(recent.until).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const moved = await get(server.httpPort, `/console/api/decisions?principal=dana&limit=4&since=1h&page=${recent.next}`, auth);
    expect(moved.status).toBe(400);
    const recentNext = (await get(server.httpPort, `/console/api/decisions?principal=dana&limit=4&since=${recent.since}&page=${recent.next}`, auth)).json();
    expect(new Set([...recent.decisions, ...recentNext.decisions].map((d: { decisionId: string }) => d.decisionId))).toEqual(new Set(danaIds));
    const denied = (await get(server.httpPort, '/console/api/decisions?effect=deny&reason=denied_by_default&resourceType=model&since=1h', auth)).json();
    expect(denied.decisions.map((d: { decisionId: string }) => d.decisionId).sort()).toEqual([...eveIds].sort());
    // The console's own calls stay out of the list unless asked for.
    const all = (await get(server.httpPort, '/console/api/decisions?limit=200', auth)).json();
    expect(all.decisions.filter((d: { action: string }) => d.action.startsWith('Console'))).toEqual([]);
    const own = (await get(server.httpPort, '/console/api/decisions?limit=200&own=1&resourceType=verdict.admin', auth)).json();
    expect(own.decisions.length).toBeGreaterThan(5);
    expect((await get(server.httpPort, '/console/api/decisions?own=yes', auth)).json().parameter).toBe('own');
  });

  it('gives one decision in full, hash and request included', async () => {
    const answer = await get(server.httpPort, `/console/api/decision/${eveIds[0]}`, auth);
    expect(answer.status).toBe(200);
    expect(answer.json()).toMatchObject({
      decisionId: eveIds[0],
      principalId: 'eve',
      effect: 'DENY',
      reason: 'DENIED_BY_DEFAULT',
      request: { principal: { attributes: { org: 'evil' } }, resource: { attributes: { org: 'acme' } } },
      hash: expect.stringMatching(/^[0-9a-f]{64}$/) as string,
      seq: expect.any(Number) as number,
    });
    const missing = await get(server.httpPort, '/console/api/decision/nope', auth);
    expect(missing.status).toBe(404);
    expect(missing.json().error).toBe('no decision with id nope');
  });

  it('refuses bad parameters with 400 naming the parameter, never a stack trace', async () => {
    const cases: [string, string, RegExp][] = [
      ['/console/api/decisions?since=yesterday', 'since', /since: must be an ISO 8601 time/],
      ['/console/api/summary?until=2026-13-45', 'until', /until: 2026-13-45 is not a day of the calendar/],
      // A day the month does not have is a typo, not the first days of the next month.
      ['/console/api/decisions?since=2026-02-31', 'since', /since: 2026-02-31 is not a day of the calendar/],
      ['/console/api/summary?until=2026-04-31T10:00:00Z', 'until', /until: 2026-04-31 is not a day of the calendar/],
      ['/console/api/decisions?since=999999999w', 'since', /since: 999999999w is before 2000; leave since out/],
      ['/console/api/alerts?since=999999999d', 'since', /since: 999999999d is before 2000/],
      ['/console/api/decisions?since=9999999999999999', 'since', /since: must be an ISO 8601 time/],
      // What the answer gives back must read back: nothing before 2000, and seconds are not taken for milliseconds.
      ['/console/api/decisions?since=1969-12-31', 'since', /since: 1969-12-31 is before 2000/],
      ['/console/api/decisions?since=1970-01-02', 'since', /since: 1970-01-02 is before 2000/],
      ['/console/api/summary?since=1767225600', 'since', /since: 1767225600 reads as epoch seconds; give epoch milliseconds \(1767225600000\)/],
      ['/console/api/decisions?until=275761-01-01', 'until', /until: must be an ISO 8601 time/],
      ['/console/api/decisions?since=1h&until=2h', 'until', /until: must be after since/],
      ['/console/api/decisions?limit=100000', 'limit', /limit: must be a whole number from 1 to 200/],
      ['/console/api/decisions?limit=-1', 'limit', /limit/],
      ['/console/api/summary?buckets=0', 'buckets', /buckets: must be a whole number from 1 to 500/],
      ['/console/api/decisions?effect=maybe', 'effect', /effect: must be one of allow, deny/],
      ['/console/api/decisions?reason=whim', 'reason', /reason: must be one of/],
      ['/console/api/decisions?principal=a&principal=b', 'principal', /more than once/],
      ['/console/api/decisions?colour=red', 'colour', /colour: is not a parameter here; use .*principal/],
      ['/console/api/decisions?page=not-a-token', 'page', /page: is not a token this server gave/],
      ['/console/api/alerts?type=weird', 'type', /type: must be one of volume/],
      [`/console/api/decisions?principal=${'x'.repeat(2000)}`, 'principal', /longer than 1024/],
      ['/console/api/decision/%E0%A4%A', 'id', /percent-encoding/],
    ];
    for (const [path, parameter, message] of cases) {
      const answer = await get(server.httpPort, path, auth);
      expect(answer.status, path).toBe(400);
      expect(answer.json(), path).toMatchObject({ parameter, error: expect.stringMatching(message) as string });
      expect(answer.body).not.toMatch(/\n\s+at |node:internal/);
    }
    const long = await get(server.httpPort, `/console/api/decisions?principal=${'x'.repeat(5000)}`, auth);
    expect(long.status).toBe(414);
    const unknown = await get(server.httpPort, '/console/api/secrets', auth);
    expect(unknown.status).toBe(404);
    expect(unknown.body).not.toContain('secrets');
  });

  it('lists alerts with the decisions behind them, asking the reader with bounded filters', async () => {
    const answer = (await get(server.httpPort, '/console/api/alerts?since=7d&type=probing&subject=eve&limit=10', auth)).json();
    expect(answer.enabled).toBe(true);
    expect(answer.alerts).toHaveLength(1);
    expect(answer.alerts[0]).toMatchObject({ type: 'probing', subject: { id: 'eve' }, decisionIds: eveIds.slice(0, 2) });
    expect(listed.at(-1)).toMatchObject({ type: 'probing', subjectId: 'eve', limit: 10, since: expect.any(Number) as number });
  });

  it('shows the policy set and the audit trail, verifying only new rows after the first pass', async () => {
    const policy = (await get(server.httpPort, '/console/api/policy', auth)).json();
    expect(policy).toMatchObject({ version: server.store.current.version, ruleCount: server.store.current.rules.length, lastReloadError: null });
    const first = (await get(server.httpPort, '/console/api/audit', auth)).json();
    expect(first).toMatchObject({ ok: true, error: null, break: null });
    expect(first.verifiedThrough).toBeGreaterThanOrEqual(9);
    expect(first.lastCheckpoint).toMatchObject({ seq: expect.any(Number) as number });
    expect(first.checkpoints.verified).toBe(first.checkpoints.total);
  });

  it('streams new decisions live on one recorded call, without its own rows', async () => {
    const before = consoleRows(db, 'ConsoleTail').length;
    const tail = await openTail(server.httpPort);
    expect(tail.status).toBe(200);
    expect(tail.contentType).toBe('text/event-stream; charset=utf-8');
    const rows = (): TailRow[] => tail.events.map((e) => e.row);
    // The backlog: the recent checks arrive first.
    await waitFor(() => rows().some((e) => e.decisionId === danaIds[0]));
    // Console calls made meanwhile are recorded but not streamed.
    for (let i = 0; i < 5; i++) expect((await get(server.httpPort, '/console/api/policy', auth)).status).toBe(200);
    const [fresh] = await check(client, dana, 1);
    await waitFor(() => rows().some((e) => e.decisionId === fresh));
    tail.close();
    expect(rows().filter((e) => e.resourceType === 'verdict.admin' && e.action.startsWith('Console'))).toEqual([]);
    expect(consoleRows(db, 'ConsoleTail').length - before).toBe(1);
  });
});

describe('the console live tail under load', () => {
  let server: RunningServer;
  let client: VerdictClient;

  beforeAll(async () => {
    ({ server, client } = await start({ token: true }));
    await check(client, dana, 2);
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
  });

  it('keeps at most 16 streams open, refusing more with 429, and frees a slot when one closes', async () => {
    const open = (): Promise<{ status: number; close: () => void }> =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: server.httpPort, path: '/console/api/tail', headers: auth });
        req.on('response', (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, close: () => req.destroy() });
        });
        req.on('error', reject);
        req.end();
      });
    const streams = [];
    for (let i = 0; i < 16; i++) streams.push(await open());
    expect(streams.map((s) => s.status)).toEqual(new Array(16).fill(200));
    const refused = await open();
    expect(refused.status).toBe(429);
    streams.pop()!.close();
    let again = await open();
    for (let i = 0; i < 50 && again.status === 429; i++) {
      await new Promise((r) => setTimeout(r, 100));
      again = await open();
    }
    expect(again.status).toBe(200);
    for (const s of [...streams, again]) s.close();
  });
});

describe('the console live tail, many rows at once', () => {
  let server: RunningServer;
  let client: VerdictClient;

  beforeAll(async () => {
    ({ server, client } = await start({ token: true }));
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
  });

  it('streams every decision once, in order, however many each read brings (rows go to a stream a read at a time)', async () => {
    const tail = await openTail(server.httpPort);
    const ids = (): string[] => tail.events.map((e) => e.row.decisionId);
    // Joined once a decision made now comes through (the stream first gets the last 50 as they stand when it joins).
    const [joined] = await check(client, dana, 1);
    await waitFor(() => ids().includes(joined!));
    // Three batches of 250: more than one read's 200 rows at a time.
    const decided: string[] = [];
    for (let b = 0; b < 3; b++) {
      const answer = await client.call<{ results: Array<{ decisionId: string }> }>('Authorization', 'CheckBatch', {
        principal: checkRequest({ principal: dana, action: 'predict', resource: model })['principal'],
        items: Array.from({ length: 250 }, () => ({ action: 'predict', resource: checkRequest({ principal: dana, action: 'predict', resource: model })['resource'] })),
      });
      decided.push(...answer.results.map((r) => r.decisionId));
    }
    await waitFor(() => decided.every((id) => ids().includes(id)));
    tail.close();
    expect(new Set(ids()).size).toBe(ids().length);
    const seqs = tail.events.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(ids().slice(-decided.length)).toEqual(decided);
  });
});

describe('the console live tail beside chart queries', () => {
  let server: RunningServer;
  let client: VerdictClient;

  beforeAll(async () => {
    ({ server, client } = await start({ token: true }));
    // Rows for every chart to count: enough that each takes a while.
    for (let b = 0; b < 20; b++) {
      const request = checkRequest({ principal: dana, action: 'predict', resource: model });
      await client.call('Authorization', 'CheckBatch', { principal: request['principal'], items: Array.from({ length: 1000 }, () => ({ action: 'predict', resource: request['resource'] })) });
    }
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
  });

  it('streams a new decision while charts are being counted, not after them (the tail reads in a thread of its own)', async () => {
    const tail = await openTail(server.httpPort);
    const ids = (): string[] => tail.events.map((e) => e.row.decisionId);
    const [joined] = await check(client, dana, 1);
    await waitFor(() => ids().includes(joined!));
    // Charts over the whole log, queued in the Admin query thread one behind another.
    const CHARTS = 60;
    let chartsDone = 0;
    const charts = Array.from({ length: CHARTS }, () =>
      get(server.httpPort, '/console/api/summary?since=7d&buckets=500', auth).then((answer) => {
        chartsDone++;
        return answer.status;
      }),
    );
    // Decided once the charts are being counted.
    while (chartsDone === 0) await new Promise((r) => setTimeout(r, 1));
    const [fresh] = await check(client, dana, 1);
    while (!ids().includes(fresh!) && chartsDone < CHARTS) await new Promise((r) => setTimeout(r, 1));
    const doneWhenStreamed = chartsDone;
    expect(await Promise.all(charts)).toEqual(new Array(CHARTS).fill(200));
    await waitFor(() => ids().includes(fresh!));
    tail.close();
    // Behind the queue it would have come after the last of them.
    expect(doneWhenStreamed, `charts answered when the new decision was streamed, of ${CHARTS}`).toBeLessThan(CHARTS / 2);
  });
});

describe('the console API on a server admitting loopback callers (no token configured)', () => {
  let server: RunningServer;
  let client: VerdictClient;
  let db: string;

  beforeAll(async () => {
    ({ server, client, db } = await start({ token: false, alertsEnabled: false }));
    await check(client, dana, 1);
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('admits a loopback caller naming a loopback host', async () => {
    const answer = await get(server.httpPort, '/console/api/policy', { host: `127.0.0.1:${server.httpPort}` });
    expect(answer.status).toBe(200);
    expect(consoleRows(db, 'ConsolePolicy').at(-1)).toMatchObject({ effect: 'ALLOW', principalId: 'loopback' });
    expect((await get(server.httpPort, '/console/api/policy', { host: `localhost:${server.httpPort}` })).status).toBe(200);
  });

  it('refuses another host name (DNS rebinding) and cross-site requests, and records them', async () => {
    const rebound = await get(server.httpPort, '/console/api/decisions', { host: `attacker.example:${server.httpPort}` });
    expect(rebound.status).toBe(401);
    expect(rebound.json().error).toMatch(/served on a loopback address only/);
    const crossSite = await get(server.httpPort, '/console/api/decisions', { host: `127.0.0.1:${server.httpPort}`, 'sec-fetch-site': 'cross-site' });
    expect(crossSite.status).toBe(401);
    expect(crossSite.json().error).toMatch(/answers its own page only/);
    // A browser that sends no Sec-Fetch-Site still sends Origin with a cross-site fetch.
    for (const origin of ['http://evil.example', 'null', `http://localhost:${server.httpPort + 1}`]) {
      const foreign = await get(server.httpPort, '/console/api/decisions', { host: `127.0.0.1:${server.httpPort}`, origin });
      expect(foreign.status, origin).toBe(401);
      expect(foreign.json().error, origin).toMatch(/answers its own page only/);
    }
    expect((await get(server.httpPort, '/console/api/decisions', { host: `127.0.0.1:${server.httpPort}`, origin: `http://127.0.0.1:${server.httpPort}` })).status).toBe(200);
    const rows = consoleRows(db, 'ConsoleDecisions').slice(-6, -1);
    for (const row of rows) expect(row).toMatchObject({ effect: 'DENY', details: { admin: { refused: 'UNAUTHENTICATED' } } });
  });

  it('refuses a loopback call that came through a proxy on this host (X-Forwarded-For, X-Real-IP, Forwarded), and a [::1] host with trailing text', async () => {
    for (const header of ['x-forwarded-for', 'x-real-ip', 'forwarded']) {
      const proxied = await get(server.httpPort, '/console/api/decisions', { host: `127.0.0.1:${server.httpPort}`, [header]: '203.0.113.9' });
      expect(proxied.status, header).toBe(401);
      expect(proxied.json().error).toMatch(new RegExp(`came through a proxy \\(it carries ${header}\\)`));
    }
    expect((await get(server.httpPort, '/console/api/decisions', { host: '[::1]evil.example' })).status).toBe(401);
    expect((await get(server.httpPort, '/console/api/decisions', { host: `[::1]:${server.httpPort}` })).status).toBe(200);
  });

  it('keeps a pasted ?token= out of the log whether the call is admitted, refused or malformed', async () => {
    const secret = 'SECRET-loopback-5d21a7';
    const local = { host: `127.0.0.1:${server.httpPort}` };
    const before = consoleRows(db).length;
    // Admitted by the loopback rule (an ALLOW row), then refused for the parameter no endpoint reads.
    for (const path of ['/console/api/policy', '/console/api/tail', '/console/api/decisions?principal=dana']) {
      const answer = await get(server.httpPort, `${path}${path.includes('?') ? '&' : '?'}token=${secret}`, local);
      expect(answer.status, path).toBe(400);
    }
    // Refused by the gate (another site), given twice, and longer than any parameter may be.
    expect((await get(server.httpPort, `/console/api/summary?token=${secret}`, { ...local, 'sec-fetch-site': 'cross-site' })).status).toBe(401);
    expect((await get(server.httpPort, `/console/api/summary?token=${secret}&token=${secret}`, local)).status).toBe(400);
    expect((await get(server.httpPort, `/console/api/summary?token=${secret}${'x'.repeat(1100)}`, local)).status).toBe(400);
    const rows = consoleRows(db).slice(before);
    expect(rows).toHaveLength(6);
    expect(rows.slice(0, 3).map((r) => r.effect)).toEqual(['ALLOW', 'ALLOW', 'ALLOW']);
    // The name says what was tried; the value is gone.
    for (const row of rows.slice(0, 4)) expect((row.details as { admin: { parameters: Record<string, string> } }).admin.parameters.token).toBe(UNRECORDED_VALUE);
    expect(JSON.stringify(queryDecisions(db, { limit: 1000 }))).not.toContain(secret);
    for (const file of [db, `${db}-wal`]) {
      if (existsSync(file)) expect(readFileSync(file).includes(secret), file).toBe(false);
    }
  });

  it('says alerts are not enabled when the server runs no detectors (alerts.enabled: false)', async () => {
    const answer = (await get(server.httpPort, '/console/api/alerts', { host: `127.0.0.1:${server.httpPort}` })).json();
    expect(answer).toEqual({ enabled: false, alerts: [], message: 'alerts are not enabled on this server' });
  });
});

/** A live tail opened with the admin token: its events as they arrive (seq from `id:`, the row from `data:`). */
async function openTail(port: number): Promise<{ readonly events: Array<{ seq: number; row: TailRow }>; readonly status: number; readonly contentType: string | undefined; close(): void }> {
  const events: Array<{ seq: number; row: TailRow }> = [];
  let buffer = '';
  const req = httpRequest({ host: '127.0.0.1', port, path: '/console/api/tail', headers: auth });
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
    req.end();
  });
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const lines = buffer.slice(0, end).split('\n');
      buffer = buffer.slice(end + 2);
      const id = lines.find((l) => l.startsWith('id: '));
      const data = lines.find((l) => l.startsWith('data: '));
      if (id && data) events.push({ seq: Number(id.slice(4)), row: JSON.parse(data.slice(6)) as TailRow });
    }
  });
  return { events, status: res.statusCode ?? 0, contentType: res.headers['content-type'], close: () => req.destroy() };
}

interface TailRow {
  readonly decisionId: string;
  readonly principalId: string;
  readonly resourceType: string;
  readonly action: string;
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
