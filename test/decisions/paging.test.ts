import { beforeAll, describe, expect, it } from 'vitest';
import { DecisionQueryThread } from '../../src/decisions/query-thread.js';
import { DecisionReader, MAX_PAGE_ROWS, decodePageToken, encodePageToken, type DecisionFilters, type PagePosition } from '../../src/decisions/query.js';
import { openLog, record, tempDb } from './helpers.js';

const ROWS = 2_500;
const base = Date.UTC(2025, 5, 1, 12, 0, 0);
let file: string;

beforeAll(async () => {
  file = tempDb();
  const log = await openLog(file, { mode: 'async' });
  const appends: Promise<void>[] = [];
  // Seven rows share each millisecond, so pages end in the middle of a tie.
  for (let i = 0; i < ROWS; i++) appends.push(log.append(record({ time: base + Math.floor(i / 7), principalId: `p${i % 3}`, resourceId: `r${i}` })));
  await Promise.all(appends);
  await log.close();
}, 60_000);

function pageAll(reader: DecisionReader, filters: DecisionFilters, limit: number): { ids: string[]; pages: number } {
  const ids: string[] = [];
  let after: PagePosition | null = null;
  let pages = 0;
  do {
    const page = reader.page(filters, { limit, after });
    pages++;
    ids.push(...page.decisions.map((d) => d.resourceId));
    after = page.next;
  } while (after !== null);
  return { ids, pages };
}

describe('paging the decision log', () => {
  it('returns every matching row exactly once, newest first, across ties in time', () => {
    const reader = DecisionReader.open(file);
    try {
      const all = pageAll(reader, {}, 100);
      expect(all.pages).toBe(25);
      expect(all.ids).toHaveLength(ROWS);
      expect(new Set(all.ids).size).toBe(ROWS);
      expect(all.ids).toEqual(Array.from({ length: ROWS }, (_, i) => `r${ROWS - 1 - i}`));
      const filtered = pageAll(reader, { principalId: 'p1' }, 13);
      expect(filtered.ids).toEqual(all.ids.filter((id) => Number(id.slice(1)) % 3 === 1));
    } finally {
      reader.close();
    }
  });

  it('clamps a page to MAX_PAGE_ROWS and says there is more', () => {
    const reader = DecisionReader.open(file);
    try {
      const page = reader.page({}, { limit: 1_000_000 });
      expect(page.decisions).toHaveLength(MAX_PAGE_ROWS);
      expect(page.next).not.toBeNull();
      expect(() => reader.page({}, { limit: 0 })).toThrow(/limit must be a positive integer/);
    } finally {
      reader.close();
    }
  });

  it('ends a page early at its byte budget, always with at least one row, and still returns every row once', () => {
    const reader = DecisionReader.open(file);
    try {
      const one = reader.page({}, { limit: 500, maxBytes: 1 });
      expect(one.decisions).toHaveLength(1);
      const some = reader.page({}, { limit: 500, maxBytes: 5_000 });
      expect(some.decisions.length).toBeGreaterThan(1);
      expect(some.decisions.length).toBeLessThan(500);
      const ids: string[] = [];
      let after: PagePosition | null = null;
      do {
        const page = reader.page({ principalId: 'p2' }, { limit: 500, maxBytes: 5_000, after });
        ids.push(...page.decisions.map((d) => d.resourceId));
        after = page.next;
      } while (after !== null);
      expect(ids).toHaveLength(Math.floor(ROWS / 3));
      expect(new Set(ids).size).toBe(ids.length);
    } finally {
      reader.close();
    }
  });
});

describe('page tokens', () => {
  it('round-trip, bound to their filters', () => {
    const filters: DecisionFilters = { principalId: 'p1', limit: 10 };
    const token = encodePageToken({ time: base, seq: 42 }, filters);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodePageToken(token, { principalId: 'p1', limit: 500 })).toEqual({ time: base, seq: 42 });
    expect(() => decodePageToken(token, { principalId: 'p2' })).toThrow(/page_token was given for other filters/);
  });

  it('refuse anything this server did not make, with a USAGE error', () => {
    const good = encodePageToken({ time: base, seq: 1 }, {});
    for (const forged of ['', 'x', '!!!', 'a'.repeat(10_000), Buffer.from('p1.1.2.short').toString('base64url'), Buffer.from(`p1.-1.2.${'a'.repeat(12)}`).toString('base64url'), `${good}=`]) {
      expect(() => decodePageToken(forged, {}), forged.slice(0, 20)).toThrow(expect.objectContaining({ code: 'USAGE' }) as Error);
    }
  });
});

describe('the decision query thread', () => {
  it('answers pages and lookups from its own thread, and reports a missing log as unavailable', async () => {
    const queries = new DecisionQueryThread(file);
    try {
      const page = await queries.page({ principalId: 'p0' }, { limit: 5 });
      expect(page.decisions.map((d) => d.resourceId)).toEqual(['r2499', 'r2496', 'r2493', 'r2490', 'r2487']);
      expect(await queries.get(page.decisions[0]!.decisionId)).toMatchObject({ resourceId: 'r2499' });
      expect(await queries.get('nope')).toBeNull();
      await expect(queries.page({}, { limit: -1 })).rejects.toMatchObject({ code: 'USAGE' });
    } finally {
      await queries.close();
    }
    await expect(queries.page({})).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
    const missing = new DecisionQueryThread(`${file}.missing`);
    await expect(missing.page({})).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE', message: expect.stringContaining('no decision log at') as string });
    await missing.close();
  });
});
