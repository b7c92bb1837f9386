import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DecisionReader, getDecision, queryDecisions } from '../../src/decisions/query.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { connect, openLog, record, tempDb, tempDir } from './helpers.js';

const T0 = Date.UTC(2025, 5, 1, 12, 0, 0);
const MIN = 60_000;

let file: string;
let fixtures: DecisionRecord[];

beforeAll(async () => {
  file = tempDb();
  fixtures = [
    record({ time: T0, principalId: 'dana', action: 'predict', resourceType: 'model', resourceId: 'fraud-v3', effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', policyVersion: 'v1' }),
    record({ time: T0 + 1 * MIN, principalId: 'dana', action: 'download', resourceType: 'model', resourceId: 'fraud-v3', effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], policyVersion: 'v1' }),
    record({ time: T0 + 2 * MIN, principalId: 'erin', action: 'predict', resourceType: 'model', resourceId: 'churn-v1', effect: 'DENY', reason: 'DENIED_BY_RATE_LIMIT', ruleIds: ['limit-free-tier'], policyVersion: 'v2' }),
    record({ time: T0 + 3 * MIN, principalId: 'erin', action: 'predict', resourceType: 'dataset', resourceId: 'fraud-v3', effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', policyVersion: 'v2', requestId: null }),
    record({
      time: T0 + 4 * MIN, principalId: 'frank', action: 'predict', resourceType: 'model', resourceId: 'fraud-v3', effect: 'DENY', reason: 'DENIED_BY_ERROR',
      ruleIds: ['deny-when'], errors: [{ ruleId: 'deny-when', message: 'no such attribute: tier' }], policyVersion: 'v2',
    }),
  ];
  const log = await openLog(file);
  await Promise.all(fixtures.map((r) => log.append(r)));
  await log.close();
});

const idsOf = (decisions: Array<{ decisionId: string }>): string[] => decisions.map((d) => d.decisionId);
const fx = (...indexes: number[]): string[] => indexes.map((i) => fixtures[i]!.decisionId);

describe('queryDecisions', () => {
  it('returns everything newest first, as typed objects with JSON columns parsed', () => {
    const all = queryDecisions(file);
    expect(idsOf(all)).toEqual(fx(4, 3, 2, 1, 0));
    const { seq, hash, ...stored } = all[0]!;
    expect(seq).toBe(5);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored).toEqual(fixtures[4]);
  });

  it('filters by each field', () => {
    expect(idsOf(queryDecisions(file, { principalId: 'dana' }))).toEqual(fx(1, 0));
    expect(idsOf(queryDecisions(file, { resourceType: 'model' }))).toEqual(fx(4, 2, 1, 0));
    expect(idsOf(queryDecisions(file, { resourceType: 'model', resourceId: 'fraud-v3' }))).toEqual(fx(4, 1, 0));
    expect(idsOf(queryDecisions(file, { resourceId: 'fraud-v3' }))).toEqual(fx(4, 3, 1, 0));
    expect(idsOf(queryDecisions(file, { action: 'download' }))).toEqual(fx(1));
    expect(idsOf(queryDecisions(file, { effect: 'DENY' }))).toEqual(fx(4, 2, 1));
    expect(idsOf(queryDecisions(file, { reason: 'DENIED_BY_RATE_LIMIT' }))).toEqual(fx(2));
    expect(idsOf(queryDecisions(file, { policyVersion: 'v1' }))).toEqual(fx(1, 0));
    expect(idsOf(queryDecisions(file, { decisionId: fixtures[3]!.decisionId }))).toEqual(fx(3));
    expect(idsOf(queryDecisions(file, { since: T0 + 2 * MIN }))).toEqual(fx(4, 3, 2));
    expect(idsOf(queryDecisions(file, { until: T0 + 2 * MIN }))).toEqual(fx(1, 0));
    expect(idsOf(queryDecisions(file, { since: T0 + MIN, until: T0 + 3 * MIN, effect: 'DENY' }))).toEqual(fx(2, 1));
    expect(idsOf(queryDecisions(file, { principalId: 'nobody' }))).toEqual([]);
  });

  it('limits, defaulting to 100, and rejects a bad limit', () => {
    expect(idsOf(queryDecisions(file, { limit: 2 }))).toEqual(fx(4, 3));
    expect(() => queryDecisions(file, { limit: 0 })).toThrow(expect.objectContaining({ code: 'USAGE' }) as Error);
    expect(() => queryDecisions(file, { limit: 1.5 })).toThrow(expect.objectContaining({ code: 'USAGE' }) as Error);
  });

  it('getDecision finds one by id, or null', () => {
    const found = getDecision(file, fixtures[4]!.decisionId);
    expect(found?.errors).toEqual([{ ruleId: 'deny-when', message: 'no such attribute: tier' }]);
    expect(found?.requestId).toBe('req-1');
    expect(getDecision(file, fixtures[3]!.decisionId)?.requestId).toBeNull();
    expect(getDecision(file, 'missing')).toBeNull();
  });

  it('reads through an open reader or a caller-owned connection', () => {
    const reader = DecisionReader.open(file);
    expect(queryDecisions(reader, { principalId: 'erin' })).toHaveLength(2);
    expect(reader.get(fixtures[0]!.decisionId)?.principalId).toBe('dana');
    reader.close();
    const db = connect(file);
    expect(getDecision(db, fixtures[0]!.decisionId)?.action).toBe('predict');
    expect(db.open).toBe(true);
    db.close();
  });
});

describe('the live tail', () => {
  it('reads only what the tail shows: no request, details or errors, which the full record (get) still has', () => {
    const reader = DecisionReader.open(file);
    const { decisions, cursor } = reader.tail(null, 10);
    expect(decisions.map((d) => d.decisionId).sort()).toEqual(fixtures.map((f) => f.decisionId).sort());
    for (const row of decisions) {
      expect(Object.keys(row).sort()).toEqual(['action', 'decisionId', 'effect', 'policyVersion', 'principalId', 'reason', 'resourceId', 'resourceType', 'ruleIds', 'seq', 'time']);
      expect(row).not.toHaveProperty('request');
    }
    const frank = decisions.find((d) => d.principalId === 'frank')!;
    expect(frank).toMatchObject({ time: T0 + 4 * MIN, effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: ['deny-when'], policyVersion: 'v2' });
    expect(reader.get(frank.decisionId)!.request).toEqual(fixtures[4]!.request);
    const next = reader.tail(decisions[0]!.seq, 2);
    expect(next.decisions.map((d) => d.seq)).toEqual([decisions[1]!.seq, decisions[2]!.seq]);
    expect(next.cursor).toBe(decisions[2]!.seq);
    expect(reader.tail(cursor, 10)).toEqual({ decisions: [], cursor });
    reader.close();
  });
});

describe('read connection', () => {
  it('fails clearly, creating nothing, when there is no log', () => {
    const missing = path.join(tempDir(), 'none.db');
    expect(() => queryDecisions(missing)).toThrow(expect.objectContaining({ code: 'DECISION_LOG_UNAVAILABLE', message: `no decision log at ${missing}` }) as Error);
    expect(fs.existsSync(missing)).toBe(false);
  });

  it('refuses a file that is not a decision log', () => {
    const junk = path.join(tempDir(), 'junk.db');
    fs.writeFileSync(junk, 'definitely not sqlite '.repeat(100));
    expect(() => queryDecisions(junk)).toThrow(expect.objectContaining({ code: 'DECISION_LOG_CORRUPT' }) as Error);
  });

  it('sees committed rows while the writer is open, and an open read never blocks the writer', async () => {
    const live = tempDb();
    const log = await openLog(live, { busyTimeoutMs: 20 });
    await log.append(record({ principalId: 'gina' }));
    const reader = DecisionReader.open(live);
    expect(reader.query({ principalId: 'gina' })).toHaveLength(1);

    // A read transaction held open on another connection.
    const db = connect(live);
    db.exec('BEGIN');
    db.prepare('SELECT count(*) FROM decisions').get();
    await log.append(record({ principalId: 'gina' }));
    expect(log.healthy).toBe(true);
    db.exec('COMMIT');
    db.close();

    expect(reader.query({ principalId: 'gina' })).toHaveLength(2);
    reader.close();
    await log.close();
  });
});
