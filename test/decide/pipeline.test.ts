import { afterAll, describe, expect, it } from 'vitest';
import {
  BatchRefused,
  DecisionPipeline,
  InvalidRequest,
  RefusedRequest,
  RequestFieldError,
  noRoute,
  refusalDecision,
  type CallMeta,
  type CheckResult,
  type DecisionObserver,
} from '../../src/decide/index.js';
import type { DecisionSink } from '../../src/decisions/log-client.js';
import { DecisionReader } from '../../src/decisions/query.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { VerdictError } from '../../src/errors.js';
import type { PolicySet } from '../../src/policy/policy-set.js';
import { loadFiles, removeTempDirs, request, rolesDoc, rulesDoc } from '../helpers/policies.js';
import { useDecisionLog } from '../helpers/decision-log.js';

const policySet: PolicySet = loadFiles({
  'roles.yaml': rolesDoc([{ name: 'reader' }]),
  'rules.yaml': rulesDoc([{ id: 'readers', effect: 'allow', actions: ['read'], principal: { roles: ['reader'] }, resource: { type: 'doc' } }]),
}).policySet;
const reader = request({ principal: { id: 'rita', roles: ['reader'] }, action: 'read', resource: { type: 'doc', id: 'd1' } });
const meta: CallMeta = { caller: '10.0.0.7:41234', requestId: 'r-1' };

const decisionLog = useDecisionLog();
afterAll(removeTempDirs);

/** The real log, with appends held until released: shows that nothing is answered before it is recorded. */
function heldLog(): { sink: DecisionSink; appended: DecisionRecord[]; release(): void } {
  const appended: DecisionRecord[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  return {
    appended,
    release: () => release(),
    sink: { path: decisionLog().path, append: async (record) => (appended.push(record), await gate, decisionLog().append(record)) },
  };
}

describe('the decision pipeline', () => {
  it('decides with the engine, records, and only then answers', async () => {
    const held = heldLog();
    const pipeline = new DecisionPipeline({ current: policySet }, held.sink);
    let answered: CheckResult | null = null;
    const pending = pipeline.check(reader, meta).then((r) => (answered = r));
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(held.appended).toHaveLength(1);
    expect(answered).toBeNull();
    held.release();
    const result = await pending;
    expect(result.decision).toMatchObject({ effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['readers'], policyVersion: policySet.version });
    expect(result.request).toBe(reader);
    const stored = DecisionReader.open(decisionLog().path);
    try {
      expect(stored.get(result.decisionId)).toMatchObject({ caller: meta.caller, requestId: 'r-1', principalId: 'rita', effect: 'ALLOW', ruleIds: ['readers'] });
    } finally {
      stored.close();
    }
  });

  it('records a refused request as its refusal, without evaluating it', async () => {
    const pipeline = new DecisionPipeline({ current: policySet }, decisionLog());
    // The request alone would be allowed; refused, it is not evaluated.
    const result = await pipeline.check(new RefusedRequest(reader, noRoute('GET', '/docs')), meta);
    expect(result.decision).toEqual(refusalDecision(noRoute('GET', '/docs'), policySet.version));
    const invalid = await pipeline.check(new InvalidRequest(RequestFieldError.required('action'), { ...reader, action: '' }), meta);
    expect(invalid.decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', errors: [{ ruleId: '', message: 'action is required' }] });
  });

  it('answers a batch one result per input, in order, all from one read of the policy set', async () => {
    let reads = 0;
    const source = {
      get current() {
        reads++;
        return policySet;
      },
    };
    const pipeline = new DecisionPipeline(source, decisionLog());
    const results = await pipeline.checkBatch([reader, { ...reader, action: 'delete' }, new RefusedRequest(reader, noRoute('GET', '/'))], meta);
    expect(results.map((r) => r.decision.reason)).toEqual(['ALLOWED_BY_RULE', 'DENIED_BY_DEFAULT', 'DENIED_BY_DEFAULT']);
    expect(results.map((r) => r.decision.errors.length)).toEqual([0, 0, 1]);
    expect(new Set(results.map((r) => r.decisionId)).size).toBe(3);
    expect(reads).toBe(1);
  });

  describe('a batch whose items take long to decide', () => {
    // Each item's condition runs to its budget (10,000 elements gone through): slow, and bounded.
    const slowSet: PolicySet = loadFiles({
      'rules.yaml': rulesDoc([{ id: 'pairs', effect: 'allow', actions: ['read'], resource: { type: 'pairs' }, when: 'context.attributes.l.all(x, context.attributes.l.all(y, x != ""))' }]),
    }).policySet;
    const slow = request({ principal: { id: 'eve' }, action: 'read', resource: { type: 'pairs', id: 'p' }, context: { l: Array.from({ length: 1_000 }, (_, i) => `e${i}`) } });
    const items = Array.from({ length: 200 }, () => slow);

    it('gives the event loop turns between its items, every item still decided with the set read once', async () => {
      const held = heldLog();
      const pipeline = new DecisionPipeline({ current: slowSet }, held.sink);
      for (const run of [(inputs: typeof items) => pipeline.checkBatch(inputs, meta), (inputs: typeof items) => pipeline.checkUntil(inputs, meta, () => false)]) {
        held.appended.length = 0;
        let appendedAtFirstTurn = -1;
        setImmediate(() => (appendedAtFirstTurn = held.appended.length));
        const pending = run(items);
        await new Promise<void>((resolve) => setTimeout(resolve, 0));
        held.release();
        const results = await pending;
        expect(results.map((r) => r.decision.reason)).toEqual(items.map(() => 'DENIED_BY_ERROR'));
        // Another caller's turn came after some items and before the last.
        expect(appendedAtFirstTurn).toBeGreaterThan(0);
        expect(appendedAtFirstTurn).toBeLessThan(items.length);
      }
    });

    it('rejects, without an unhandled rejection, when an item cannot be recorded', async () => {
      const failing: DecisionSink = { path: decisionLog().path, append: () => Promise.reject(new VerdictError('DECISION_LOG_UNAVAILABLE', 'disk full')) };
      const pipeline = new DecisionPipeline({ current: slowSet }, failing);
      await expect(pipeline.checkBatch(items, meta)).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
      await expect(pipeline.checkUntil(items, meta, () => false)).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
    });
  });

  it('decides a batch in order until a decision stops it: later inputs are neither decided nor recorded', async () => {
    const held = heldLog();
    const pipeline = new DecisionPipeline({ current: policySet }, held.sink);
    const denied = { ...reader, action: 'delete' };
    const pending = pipeline.checkUntil([reader, denied, reader, denied], meta, (decision) => decision.effect === 'DENY');
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Both decided ones are appended in the same turn, before either is answered.
    expect(held.appended.map((r) => r.action)).toEqual(['read', 'delete']);
    held.release();
    const results = await pending;
    expect(results.map((r) => r.decision.effect)).toEqual(['ALLOW', 'DENY']);
    expect(held.appended).toHaveLength(2);
    const all = await pipeline.checkUntil([reader, reader], meta, () => false);
    expect(all).toHaveLength(2);
    const first = await pipeline.checkUntil([new RefusedRequest(reader, noRoute('GET', '/')), reader], meta, (decision) => decision.effect === 'DENY');
    expect(first.map((r) => r.decision.reason)).toEqual(['DENIED_BY_DEFAULT']);
    expect(await pipeline.checkUntil([], meta, () => true)).toEqual([]);
  });

  it.each(['checkBatch', 'checkUntil'] as const)('%s refuses a batch that would record too much, whole, recording the refusal once, for every transport', async (method) => {
    const appended: DecisionRecord[] = [];
    const sink: DecisionSink = { path: decisionLog().path, append: async (record) => (appended.push(record), decisionLog().append(record)) };
    const pipeline = new DecisionPipeline({ current: policySet }, sink, { maxBatchRecordedBytes: 4096 });
    // 100 items sharing a principal whose roles and attributes are ~200 bytes: ~20 KB recorded, over 4 KiB.
    const large = request({ principal: { id: 'rita', roles: ['reader'], attributes: { pad: 'x'.repeat(200) } }, action: 'read', resource: { type: 'doc', id: 'd1' } });
    const inputs = Array.from({ length: 100 }, () => large);
    const run = (options?: { field?: string }) =>
      method === 'checkBatch' ? pipeline.checkBatch(inputs, meta, options) : pipeline.checkUntil(inputs, meta, () => false, options);
    const refused = await run({ field: 'evaluations' }).then(() => null, (error: unknown) => error);
    expect(refused).toBeInstanceOf(BatchRefused);
    const error = refused as BatchRefused;
    expect(error.message).toMatch(/^evaluations: the principals, resources and contexts of these 100 items are recorded with each item, over 4096 bytes in all/);
    expect(error.result.decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    // One small record: the principal's id, none of what made the batch large.
    expect(appended).toHaveLength(1);
    expect(appended[0]!.decisionId).toBe(error.result.decisionId);
    expect(appended[0]!.principalId).toBe('rita');
    expect(appended[0]!.request.principal).toEqual({ roles: [], attributes: {} });
    expect(appended[0]!.requestId).toBe('r-1');
    // The default field name is the gRPC one; a batch within the budget is decided as usual.
    expect(String(await run().catch((e: unknown) => e))).toMatch(/items: the principals/);
    expect(await (method === 'checkBatch' ? pipeline.checkBatch(inputs.slice(0, 10), meta) : pipeline.checkUntil(inputs.slice(0, 10), meta, () => false))).toHaveLength(10);
  });

  it('counts a resource the items share once per item, as it is recorded with each (and so in the room a batch takes in flight)', async () => {
    const appended: DecisionRecord[] = [];
    const sink: DecisionSink = { path: decisionLog().path, append: async (record) => (appended.push(record), decisionLog().append(record)) };
    const pipeline = new DecisionPipeline({ current: policySet }, sink, { maxBatchRecordedBytes: 4096 });
    // An AuthZEN top-level resource shared by `{}` items: 100 × ~200 bytes of attributes, over 4 KiB.
    const large = request({ principal: { id: 'rita', roles: ['reader'], attributes: {} }, action: 'read', resource: { type: 'doc', id: 'd1', attributes: { pad: 'x'.repeat(200) } } });
    const refused = await pipeline.checkBatch(Array.from({ length: 100 }, () => large), meta, { field: 'evaluations' }).then(() => null, (error: unknown) => error);
    expect(refused).toBeInstanceOf(BatchRefused);
    expect(String(refused)).toMatch(/evaluations: the principals, resources and contexts of these 100 items are recorded with each item, over 4096 bytes/);
    expect(appended).toHaveLength(1);
    expect(appended[0]!.request.resource).toEqual({ attributes: {} });
    expect(await pipeline.checkBatch(Array.from({ length: 10 }, () => large), meta)).toHaveLength(10);
  });

  it('counts the call\'s caller and request id, written with every row, in a batch\'s budget', async () => {
    const pipeline = new DecisionPipeline({ current: policySet }, decisionLog(), { maxBatchRecordedBytes: 4096 });
    // 100 small items: within 4 KiB from a short caller, over it from a caller of 100 characters (a long JWT subject).
    const inputs = Array.from({ length: 100 }, () => reader);
    expect(await pipeline.checkBatch(inputs, { caller: 'api-key:a', requestId: null })).toHaveLength(100);
    const refused = await pipeline.checkBatch(inputs, { caller: `jwt:${'s'.repeat(96)}`, requestId: null }).then(() => null, (error: unknown) => error);
    expect(refused).toBeInstanceOf(BatchRefused);
    expect(await pipeline.checkBatch(inputs, { caller: 'api-key:a', requestId: 'r'.repeat(100) }).then(() => null, (error: unknown) => error)).toBeInstanceOf(BatchRefused);
  });

  it('prepares a question with the policy set that decides it', async () => {
    const pipeline = new DecisionPipeline({ current: policySet }, decisionLog());
    let seen: PolicySet | null = null;
    const result = await pipeline.checkWith((set) => ((seen = set), reader), meta);
    expect(seen).toBe(policySet);
    expect(result.decision.effect).toBe('ALLOW');
  });

  it('refuses a decision that cannot be recorded, and tells the observers so', async () => {
    const failing: DecisionSink = { path: decisionLog().path, append: () => Promise.reject(new VerdictError('DECISION_LOG_UNAVAILABLE', 'disk full')) };
    const pipeline = new DecisionPipeline({ current: policySet }, failing);
    const seen: string[] = [];
    pipeline.observe({ decided: () => seen.push('decided'), unrecorded: (error) => seen.push(`unrecorded: ${(error as Error).message}`) });
    await expect(pipeline.check(reader, meta)).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
    expect(seen).toEqual(['unrecorded: disk full']);
  });

  it('tells every observer of every recorded decision, past one that throws, until it is removed', async () => {
    const pipeline = new DecisionPipeline({ current: policySet }, decisionLog());
    const seen: { result: CheckResult; meta: CallMeta; seconds: number }[] = [];
    const broken: DecisionObserver = {
      decided: () => {
        throw new Error('an observer bug');
      },
    };
    pipeline.observe(broken);
    const remove = pipeline.observe({ decided: (result, callMeta, seconds) => seen.push({ result, meta: callMeta, seconds }) });
    const result = await pipeline.check(reader, meta);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.result).toBe(result);
    expect(seen[0]!.meta).toBe(meta);
    expect(seen[0]!.seconds).toBeGreaterThanOrEqual(0);
    await pipeline.checkBatch([reader, reader], meta);
    expect(seen).toHaveLength(3);
    remove();
    await pipeline.check(reader, meta);
    expect(seen).toHaveLength(3);
  });
});
