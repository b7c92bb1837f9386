import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionReader } from '../../src/decisions/query.js';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import { makeTempDir, removeTempDirs, rulesDoc, writePolicyDir } from '../helpers/policies.js';
import { checkRequest, ensureBuilt, metricValue, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

// Inputs a caller controls must cost bounded work: each of these once blocked the whole
// process for seconds. No timing is asserted; a per-test timeout far above a normal answer
// (and far below what the backtracking code took) makes the old behaviour fail.
const PROMPT = 5_000;

interface CheckResponse {
  effect: string;
  reason: string;
  ruleIds: string[];
  errors: { ruleId: string; message: string }[];
  decisionId: string;
}

const policies = {
  'rules.yaml': rulesDoc([
    { id: 'prod-replicas', effect: 'allow', actions: ['read'], resource: { type: 'model', id: { glob: '*-*-*-prod' } } },
    { id: 'a-runs', effect: 'allow', actions: ['read'], resource: { type: 'text' }, when: 'resource.attributes.name.matches("^(a+)+$")' },
    { id: 'all-pairs', effect: 'allow', actions: ['read'], resource: { type: 'pairs' }, when: 'resource.attributes.l.all(x, resource.attributes.l.all(y, x != ""))' },
    { id: 'context-pairs', effect: 'allow', actions: ['read'], resource: { type: 'context-pairs' }, when: 'context.attributes.l.all(x, context.attributes.l.all(y, x != ""))' },
    { id: 'tag-runs', effect: 'allow', actions: ['read'], resource: { type: 'tagged' }, when: 'resource.attributes.tags.all(t, t.matches("^[a-z0-9-]+$"))' },
  ]),
};

beforeAll(() => ensureBuilt(), 120_000);

describe('evaluation is bounded: a caller-controlled value never stalls the server', () => {
  let server: VerdictProcess;
  let client: VerdictClient;
  let db: string;

  beforeAll(async () => {
    db = join(makeTempDir(), 'decisions.db');
    server = await startVerdict({ policies: writePolicyDir(policies), db });
    client = verdictClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
    removeTempDirs();
  });

  const check = (resource: { type: string; id?: string; attributes?: Record<string, unknown> }, context: Record<string, unknown> = {}) =>
    client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: { id: 'eve' }, action: 'read', resource, context }));

  it('matches a glob with many stars against a 4 KiB resource id without backtracking', async () => {
    const id = 'a-'.repeat(2048);
    expect(id.length).toBe(4096);
    expect(await check({ type: 'model', id })).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_DEFAULT' });
    expect(await check({ type: 'model', id: `${id}prod` })).toMatchObject({ effect: 'EFFECT_ALLOW', ruleIds: ['prod-replicas'] });
  }, PROMPT);

  it('runs CEL matches("^(a+)+$") against a 75-byte value in linear time (RE2)', async () => {
    expect(await check({ type: 'text', attributes: { name: `${'a'.repeat(74)}!` } })).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_DEFAULT' });
    expect(await check({ type: 'text', attributes: { name: 'a'.repeat(75) } })).toMatchObject({ effect: 'EFFECT_ALLOW', ruleIds: ['a-runs'] });
  }, PROMPT);

  it('charges matches() the length of its string: 1,000 tags of 1,000 characters, within the shipped caps, give up the condition', async () => {
    const tags = Array.from({ length: 1_000 }, () => 'a'.repeat(1_000));
    const res = await check({ type: 'tagged', attributes: { tags } });
    expect(res).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR', ruleIds: ['tag-runs'] });
    expect(res.errors).toEqual([{ ruleId: 'tag-runs', message: expect.stringMatching(/^condition gave up: .*matches\(\) counts one per 4 characters/) }]);
    // Within the budget the rule decides as written.
    expect(await check({ type: 'tagged', attributes: { tags: tags.slice(0, 10) } })).toMatchObject({ effect: 'EFFECT_ALLOW', ruleIds: ['tag-runs'] });
  }, PROMPT);

  it('refuses a request over a size cap with INVALID_ARGUMENT naming the field, and records it', async () => {
    const groups = Array.from({ length: 6_000 }, (_, i) => `g${i}`);
    const error = await check({ type: 'text', attributes: { name: 'a' } }, { groups }).then(
      () => null,
      (e: ServiceError) => e,
    );
    expect(error?.code).toBe(status.INVALID_ARGUMENT);
    expect(error?.details).toBe('context.attributes.groups: more than 1000 items, over the limit of 1000 (requestLimits.maxListLength)');
    const decisionId = String(error?.metadata.get('verdict-decision-id')[0]);
    const reader = DecisionReader.open(db);
    try {
      expect(reader.get(decisionId)).toMatchObject({ principalId: 'eve', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', errors: [{ ruleId: '', message: error?.details }] });
    } finally {
      reader.close();
    }
    const long = await check({ type: 'model', id: 'x'.repeat(8_193) }).then(
      () => null,
      (e: ServiceError) => e,
    );
    expect(long?.code).toBe(status.INVALID_ARGUMENT);
    expect(long?.details).toBe('resource.id: 8193 characters, over the limit of 8192 (requestLimits.maxStringLength)');
  }, PROMPT);

  it('decides other callers\' checks between the items of a batch that runs each to the condition budget', async () => {
    // One context list shared by all 1,000 items: each item's condition runs to its budget, so the
    // batch takes a while to decide; held in one turn, every other caller's check waited for all of it.
    const l = Array.from({ length: 1_000 }, (_, i) => `e${i}`);
    const shared = checkRequest({ principal: { id: 'eve' }, action: 'read', resource: { type: 'context-pairs' }, context: { l } });
    const other = verdictClient(server.grpcPort, { ownConnection: true });
    try {
      let answered = false;
      const batch = client
        .call<{ results: CheckResponse[] }>('Authorization', 'CheckBatch', { principal: shared.principal, context: shared.context, requestId: 'slow-batch', items: Array.from({ length: 1_000 }, () => ({ action: 'read', resource: shared.resource })) })
        .finally(() => (answered = true));
      const singles: Promise<CheckResponse>[] = [];
      for (let i = 0; !answered && i < 5_000; i++) {
        singles.push(other.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: { id: 'sam' }, action: 'read', resource: { type: 'model', id: 'x' }, requestId: `single-${i}` })));
        await sleep(2);
      }
      const { results } = await batch;
      expect(results).toHaveLength(1_000);
      expect(new Set(results.map((r) => r.reason))).toEqual(new Set(['REASON_DENIED_BY_ERROR']));
      expect((await Promise.all(singles)).every((r) => r.reason === 'REASON_DENIED_BY_DEFAULT')).toBe(true);
      // The log's order is the order of deciding: some single check sits among the batch's rows.
      const log = new Database(db, { readonly: true });
      try {
        const range = log.prepare("SELECT min(seq) AS first, max(seq) AS last, count(*) AS n FROM decisions WHERE request_id = 'slow-batch'").get() as { first: number; last: number; n: number };
        expect(range.n).toBe(1_000);
        const between = log.prepare("SELECT count(*) AS n FROM decisions WHERE request_id LIKE 'single-%' AND seq > ? AND seq < ?").get(range.first, range.last) as { n: number };
        expect(between.n).toBeGreaterThan(0);
      } finally {
        log.close();
      }
    } finally {
      other.close();
    }
  }, 60_000);

  it('answers another caller\'s check within a slice or two while one caller runs sixty slow batches at once', async () => {
    // Sixty batches on one connection, each item running its condition to the budget. When every
    // batch took its own slice of each turn, a check waited sixty slices (and its row for the
    // writer's backlog): the log held 60 or more batch rows between one check and the next.
    const l = Array.from({ length: 1_000 }, (_, i) => `e${i}`);
    const shared = checkRequest({ principal: { id: 'eve' }, action: 'read', resource: { type: 'context-pairs' }, context: { l } });
    const other = verdictClient(server.grpcPort, { ownConnection: true });
    try {
      const batches = Array.from({ length: 60 }, (_, b) =>
        client.call<{ results: CheckResponse[] }>('Authorization', 'CheckBatch', {
          principal: shared.principal,
          context: shared.context,
          requestId: `flood-${b}`,
          items: Array.from({ length: 100 }, () => ({ action: 'read', resource: shared.resource })),
        }, { deadline: Date.now() + 50_000 }),
      );
      await sleep(200);
      // The operator sees them queue: most of the sixty wait for a slice at any moment.
      expect(await metricValue(server.httpPort, 'verdict_long_calls_waiting')).toBeGreaterThan(10);
      for (let i = 0; i < 7; i++) {
        expect(await other.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: { id: 'sam' }, action: 'read', resource: { type: 'model', id: 'x' }, requestId: `probe-${i}` }))).toMatchObject({
          reason: 'REASON_DENIED_BY_DEFAULT',
        });
      }
      for (const { results } of await Promise.all(batches)) expect(results).toHaveLength(100);
      expect(await metricValue(server.httpPort, 'verdict_long_calls_waiting')).toBe(0);
      expect(await metricValue(server.httpPort, 'verdict_decision_log_rows_pending')).toBe(0);
      const log = new Database(db, { readonly: true });
      try {
        const probes = (log.prepare("SELECT seq FROM decisions WHERE request_id LIKE 'probe-%' ORDER BY seq").all() as { seq: number }[]).map((r) => r.seq);
        expect(probes).toHaveLength(7);
        const between = log.prepare("SELECT count(*) AS n FROM decisions WHERE request_id LIKE 'flood-%' AND seq > ? AND seq < ?");
        const gaps = probes.slice(1).map((seq, i) => (between.get(probes[i], seq) as { n: number }).n).sort((a, b) => a - b);
        expect(gaps[3]).toBeLessThan(40);
      } finally {
        log.close();
      }
    } finally {
      other.close();
    }
  }, 60_000);

  it('stops deciding batches whose caller has gone: cancelled calls waiting their turn decide and record no more', async () => {
    const l = Array.from({ length: 1_000 }, (_, i) => `e${i}`);
    const shared = checkRequest({ principal: { id: 'eve' }, action: 'read', resource: { type: 'context-pairs' }, context: { l } });
    type Call = { cancel(): void };
    const Authorization = (grpc.loadPackageDefinition(packageDefinition) as unknown as { verdict: { v1: { Authorization: new (address: string, credentials: grpc.ChannelCredentials, options: object) => grpc.Client & { CheckBatch(request: unknown, callback: () => void): Call } } } }).verdict.v1.Authorization;
    const gone = new Authorization(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const calls = Array.from({ length: 30 }, (_, b) =>
      gone.CheckBatch({ principal: shared.principal, context: shared.context, requestId: `gone-${b}`, items: Array.from({ length: 100 }, () => ({ action: 'read', resource: shared.resource })) }, () => undefined),
    );
    await sleep(300);
    for (const call of calls) call.cancel();
    gone.close();
    // Settled: nothing waits for a slice or for the writer.
    for (let i = 0; i < 200; i++) {
      if ((await metricValue(server.httpPort, 'verdict_long_calls_waiting')) === 0 && (await metricValue(server.httpPort, 'verdict_decision_log_rows_pending')) === 0) break;
      await sleep(50);
    }
    const log = new Database(db, { readonly: true });
    try {
      const { n } = log.prepare("SELECT count(*) AS n FROM decisions WHERE request_id LIKE 'gone-%'").get() as { n: number };
      // Decided for nobody, every one of the 3,000 was: now only those decided before the calls were cancelled.
      expect(n).toBeGreaterThan(0);
      expect(n).toBeLessThan(1_500);
    } finally {
      log.close();
    }
    // Still serving.
    expect(await check({ type: 'model', id: 'x' })).toMatchObject({ reason: 'REASON_DENIED_BY_DEFAULT' });
  }, 60_000);

  it('refuses `constructor` as an attribute name, at any depth, naming it, rather than failing every condition with a type error', async () => {
    const refused = (resource: { type: string; attributes?: Record<string, unknown> }, context: Record<string, unknown> = {}) =>
      check(resource, context).then(
        () => null,
        (e: ServiceError) => e,
      );
    const top = await refused({ type: 'text', attributes: { name: 'aaa', constructor: 'x' } });
    expect(top?.code).toBe(status.INVALID_ARGUMENT);
    expect(top?.details).toBe('resource.attributes.constructor: cannot be an attribute name, since conditions could not read the object holding it (send it under another name)');
    const nested = await refused({ type: 'text', attributes: { name: 'aaa' } }, { meta: { constructor: { a: 1 } } });
    expect(nested?.details).toMatch(/^context\.attributes\.meta\.constructor: cannot be an attribute name/);
    const reader = DecisionReader.open(db);
    try {
      expect(reader.get(String(top?.metadata.get('verdict-decision-id')[0]))).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', errors: [{ message: top?.details }] });
    } finally {
      reader.close();
    }
    // Sent as a value, or under any other name, it is data like any other.
    expect(await check({ type: 'text', attributes: { name: 'aaa', kind: 'constructor', toString: 'x' } })).toMatchObject({ effect: 'EFFECT_ALLOW', ruleIds: ['a-runs'] });
  }, PROMPT);
});

describe('with caps raised in the config file, a condition still gives up within its budget', () => {
  let server: VerdictProcess;
  let client: VerdictClient;

  beforeAll(async () => {
    const dir = makeTempDir();
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, 'requestLimits:\n  maxListLength: 10000\n');
    server = await startVerdict({ policies: writePolicyDir(policies), db: join(dir, 'decisions.db'), args: ['--config', config] });
    client = verdictClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
    removeTempDirs();
  });

  it('a nested all() over 6,000 elements is denied by error, not run for seconds', async () => {
    const l = Array.from({ length: 6_000 }, (_, i) => `e${i}`);
    const res = await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: { id: 'eve' }, action: 'read', resource: { type: 'pairs', attributes: { l } } }));
    expect(res).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR', ruleIds: ['all-pairs'] });
    expect(res.errors).toEqual([{ ruleId: 'all-pairs', message: expect.stringMatching(/^condition gave up: it would go through more than 10000 list or map elements/) }]);
    // Within the budget the rule decides as written.
    const few = await client.call<CheckResponse>('Authorization', 'Check', checkRequest({ principal: { id: 'eve' }, action: 'read', resource: { type: 'pairs', attributes: { l: l.slice(0, 50) } } }));
    expect(few).toMatchObject({ effect: 'EFFECT_ALLOW', ruleIds: ['all-pairs'] });
  }, PROMPT);
});
