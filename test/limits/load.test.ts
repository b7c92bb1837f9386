import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { factorFor, LoadBoard } from '../../src/limits/index.js';
import { checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

// Admin ReportLoad on a real server: a hot pool scales its load-aware limits down,
// a cool one brings them back, and a stale report decays to no load.

const POLICIES = `
kind: rules
rules:
  - { id: everyone-predicts, effect: allow, actions: [predict], resource: { type: model } }
---
kind: limits
limits:
  - id: predict-gpu
    actions: [predict]
    rate: 60/minute
    burst: 10
    loadAware: { pool: gpu-a, min: 0.25, from: 0.5 }
  - id: plain
    actions: [explain]
    rate: 60/minute
`;

describe('the load factor', () => {
  it('is whole up to `from`, falls linearly to `min` at full load, and decays when the report is stale', () => {
    const aware = { pool: 'p', from: 0.5, min: 0.25 };
    expect([0, 0.5, 0.75, 1, 7].map((load) => factorFor(aware, load))).toEqual([1, 1, 0.63, 0.25, 0.25]);
    let now = 0;
    const board = new LoadBoard(1000, () => now);
    board.report('p', 1);
    expect(board.factor(aware)).toBe(0.25);
    now = 1001;
    expect(board.factor(aware)).toBe(1);
  });

  it('keeps the time of a report passed on from another process, so it goes stale when it would there', () => {
    let now = 10_000;
    const board = new LoadBoard(1000, () => now);
    const aware = { pool: 'p', from: 0.5, min: 0.25 };
    board.report('p', 1, 9_500);
    board.report('q', 1, 8_000);
    expect(board.factor(aware)).toBe(0.25);
    expect(board.current()).toEqual([{ pool: 'p', load: 1, reportedAt: 9_500 }]);
    now = 10_501;
    expect(board.factor(aware)).toBe(1);
    expect(board.current()).toEqual([]);
  });
});

describe('ReportLoad on a real server', () => {
  let dir: string;
  let verdict: VerdictProcess;
  let client: VerdictClient;
  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'verdict-load-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'policies.yaml'), POLICIES);
    writeFileSync(join(dir, 'verdict.yaml'), stringify({ limits: { loadStaleAfterMs: 5000 } }));
    verdict = await startVerdict({ policies: join(dir, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', join(dir, 'verdict.yaml'), '--no-watch'] });
    client = verdictClient(verdict.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  type Factors = { loadFactors: { limitId: string; pool: string; load: number; factor: number }[] };
  const report = (pool: string, load: number) => client.call<Factors>('Admin', 'ReportLoad', { pool, load });
  const status = () => client.call<Factors & { limitBackend: string; limitBackendHealthy: boolean }>('Admin', 'GetPolicyStatus', {});
  const predict = (principal: string) => client.call<{ effect: string; reason: string }>('Authorization', 'Check', checkRequest({ principal: { id: principal }, action: 'predict', resource: { type: 'model', id: 'm' } }));
  const allowedOf = async (principal: string, calls: number): Promise<number> => {
    let allowed = 0;
    for (let i = 0; i < calls; i++) if ((await predict(principal)).effect === 'EFFECT_ALLOW') allowed++;
    return allowed;
  };
  const factorMetric = async (): Promise<string | undefined> => /^verdict_rate_limit_load_factor\{limit="predict-gpu",pool="gpu-a"\} (\S+)$/m.exec(await (await fetch(`http://127.0.0.1:${verdict.httpPort}/metrics`)).text())?.[1];

  it('scales a load-aware limit down while its pool is hot and back when it cools; the factor is in GetPolicyStatus and /metrics', async () => {
    expect(await status()).toMatchObject({ limitBackend: 'memory', limitBackendHealthy: true, loadFactors: [{ limitId: 'predict-gpu', pool: 'gpu-a', load: 0, factor: 1 }] });
    expect(await factorMetric()).toBe('1');

    expect(await report('gpu-a', 1)).toEqual({ loadFactors: [{ limitId: 'predict-gpu', pool: 'gpu-a', load: 1, factor: 0.25 }] });
    expect(await factorMetric()).toBe('0.25');
    // A quarter of the rate: a burst of 2 instead of 10.
    expect(await allowedOf('hot', 12)).toBe(2);
    // Another pool's report changes nothing here.
    expect((await report('gpu-b', 1)).loadFactors).toEqual([]);

    expect((await report('gpu-a', 0.2)).loadFactors[0]).toMatchObject({ factor: 1 });
    expect(await allowedOf('cool', 12)).toBe(10);

    // A model server that stops reporting: after loadStaleAfterMs (5 s here) its last report no longer counts.
    await report('gpu-a', 0.9);
    expect((await status()).loadFactors[0]!.factor).toBeLessThan(1);
    await new Promise((r) => setTimeout(r, 5200));
    expect((await status()).loadFactors[0]).toMatchObject({ load: 0, factor: 1 });
    expect(await factorMetric()).toBe('1');
  });

  it('refuses a malformed report with INVALID_ARGUMENT, and records every report', async () => {
    const refused = async (pool: string, load: number): Promise<ServiceError> => {
      try {
        await report(pool, load);
      } catch (error) {
        return error as ServiceError;
      }
      throw new Error('accepted');
    };
    expect((await refused('gpu-a', 1.5)).code).toBe(3);
    expect((await refused('gpu-a', -0.1)).code).toBe(3);
    expect((await refused('gpu a', 0.5)).code).toBe(3);
    expect((await refused('', 0.5)).code).toBe(3);
    const rows = queryDecisions(join(dir, 'decisions.db'), { action: 'ReportLoad', limit: 100 });
    expect(rows.length).toBeGreaterThanOrEqual(8);
    expect(rows.some((r) => r.resourceId === 'gpu-a' && (r.details as { admin: { parameters?: { load?: number } } }).admin.parameters?.load === 1.5)).toBe(true);
  });
});
