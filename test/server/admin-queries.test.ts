import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLog, record } from '../decisions/helpers.js';
import { ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

// A log large enough that a query no index serves (by reason) scans for a while.
const ROWS = 100_000;
const PRINCIPALS = 50;

interface Listed {
  decisions: { decisionId: string; principalId: string; resourceId: string }[];
  nextPageToken: string;
}

describe('Admin queries are bounded and run beside the checks, not in front of them', () => {
  let server: VerdictProcess;
  let client: VerdictClient;

  beforeAll(async () => {
    ensureBuilt();
    const db = join(mkdtempSync(join(tmpdir(), 'verdict-admin-queries-')), 'decisions.db');
    const log = await openLog(db, { mode: 'async' });
    const base = Date.now() - 3_600_000;
    for (let i = 0; i < ROWS; i += 5_000) {
      const appends: Promise<void>[] = [];
      // Three rows share each millisecond, so pages end inside ties.
      for (let j = i; j < i + 5_000; j++) appends.push(log.append(record({ time: base + Math.floor(j / 3), principalId: `p${j % PRINCIPALS}`, resourceId: `r${j}` })));
      await Promise.all(appends);
    }
    await log.close();
    server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--no-watch'] });
    client = verdictClient(server.grpcPort);
  }, 180_000);
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
  });

  it('caps a huge limit at 1000 decisions and hands out a token for the rest', async () => {
    const page = await client.call<Listed>('Admin', 'ListDecisions', { limit: 1_000_000 });
    expect(page.decisions).toHaveLength(1000);
    expect(page.nextPageToken).not.toBe('');
    const next = await client.call<Listed>('Admin', 'ListDecisions', { limit: 1_000_000, pageToken: page.nextPageToken });
    expect(next.decisions).toHaveLength(1000);
    expect(new Set([...page.decisions, ...next.decisions].map((d) => d.decisionId)).size).toBe(2000);
  });

  it('answers checks issued while queries are running before those queries complete', async () => {
    const events: string[] = [];
    // Queries no index serves, each a scan of the whole log, queued one behind another in the query thread.
    const queries = Array.from({ length: 30 }, (_, i) =>
      client.call<Listed>('Admin', 'ListDecisions', { reason: 'REASON_DENIED_BY_RATE_LIMIT', limit: 1_000_000 }, { deadline: Date.now() + 120_000 }).then((page) => {
        events.push(`query ${i}`);
        return page;
      }),
    );
    const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
    const model = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };
    for (let i = 0; i < 5; i++) {
      const answer = await client.call<{ effect: string; reason: string }>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: model }));
      expect(answer).toMatchObject({ effect: 'EFFECT_ALLOW', reason: 'REASON_ALLOWED_BY_RULE' });
      events.push(`check ${i}`);
    }
    const pages = await Promise.all(queries);
    for (const page of pages) expect(page).toEqual({ decisions: [], nextPageToken: '' });
    // Every check was answered while the queries were still being worked through.
    expect(events.indexOf('check 4')).toBeLessThan(events.indexOf('query 29'));
    expect(events.filter((e) => e.startsWith('query')).length).toBe(30);
  }, 180_000);

  it('pages through one principal with a cursor, returning every decision exactly once', async () => {
    const ids: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await client.call<Listed>('Admin', 'ListDecisions', { principalId: 'p7', limit: 150, pageToken });
      pages++;
      for (const d of page.decisions) expect(d.principalId).toBe('p7');
      ids.push(...page.decisions.map((d) => d.resourceId));
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    const expected = Array.from({ length: ROWS / PRINCIPALS }, (_, k) => `r${ROWS - PRINCIPALS + 7 - k * PRINCIPALS}`);
    expect(pages).toBe(Math.ceil(expected.length / 150));
    expect(ids).toEqual(expected);
  }, 120_000);

  it('refuses a token used with other filters', async () => {
    const first = await client.call<Listed>('Admin', 'ListDecisions', { principalId: 'p1', limit: 10 });
    await expect(client.call('Admin', 'ListDecisions', { principalId: 'p2', pageToken: first.nextPageToken })).rejects.toMatchObject({
      code: 3,
      details: expect.stringContaining('page_token was given for other filters') as string,
    });
  });
});
