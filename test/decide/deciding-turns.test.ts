import { afterAll, describe, expect, it } from 'vitest';
import { DecisionPipeline, type CallMeta, type CheckInput } from '../../src/decide/index.js';
import { callerGroup } from '../../src/decisions/caller-group.js';
import type { DecisionSink } from '../../src/decisions/log-client.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import type { PolicySet } from '../../src/policy/policy-set.js';
import { loadFiles, removeTempDirs, request, rulesDoc } from '../helpers/policies.js';

afterAll(removeTempDirs);

// Each item's condition runs to its budget (a million comparisons): slow, and bounded.
const slowSet: PolicySet = loadFiles({
  'rules.yaml': rulesDoc([{ id: 'pairs', effect: 'allow', actions: ['read'], resource: { type: 'pairs' }, when: 'context.attributes.l.all(x, context.attributes.l.all(y, x != ""))' }]),
}).policySet;
const slow = request({ principal: { id: 'eve' }, action: 'read', resource: { type: 'pairs', id: 'p' }, context: { l: Array.from({ length: 1_000 }, (_, i) => `e${i}`) } });
const items = (count: number): CheckInput[] => Array.from({ length: count }, () => slow);

/** A sink that records at once, remembering who asked, in order. */
function memorySink(): { sink: DecisionSink; callers: string[] } {
  const callers: string[] = [];
  return { callers, sink: { path: ':memory:', append: (record: DecisionRecord) => (callers.push(record.caller), Promise.resolve()) } };
}

describe('long calls running at once', () => {
  it('share one slice of each event-loop turn, so a check waits for one slice, not one per call', async () => {
    const { sink, callers } = memorySink();
    const pipeline = new DecisionPipeline({ current: slowSet }, sink);
    // Twenty batches from twenty connections; another caller's check gets the turns between.
    const batches = Array.from({ length: 20 }, (_, i) => pipeline.checkBatch(items(12), { caller: `flood-${i}`, requestId: null }));
    let done = false;
    const perTurn: number[] = [];
    let seen = 0;
    const turn = (): void => {
      perTurn.push(callers.length - seen);
      seen = callers.length;
      if (!done) setImmediate(turn);
    };
    setImmediate(turn);
    await Promise.all(batches);
    done = true;
    expect(callers).toHaveLength(240);
    // A slice (2 ms) holds a few of these items; each call taking its own slice every turn let 20 slices' worth through.
    const most = Math.max(...perTurn);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(12);
  });

  it('take turns by caller: a caller with ten batches waiting gets no more slices than one with a single batch', async () => {
    const { sink, callers } = memorySink();
    const pipeline = new DecisionPipeline({ current: slowSet }, sink);
    const flooder: CallMeta = { caller: 'flooder', requestId: null };
    const other: CallMeta = { caller: 'other', requestId: null };
    const finished: string[] = [];
    const floods = Array.from({ length: 10 }, () => pipeline.checkBatch(items(30), flooder).then(() => finished.push('flooder')));
    const single = pipeline.checkBatch(items(30), other).then(() => finished.push('other'));
    await Promise.all([...floods, single]);
    // In one line of calls, the single batch would have had a turn in eleven and finished with the last of the others.
    expect(finished[0]).toBe('other');
    // When it finished, the flooder had had about as many items decided as it had, not ten times as many.
    const otherDone = callers.lastIndexOf('other');
    const flooderBefore = callers.slice(0, otherDone).filter((c) => c === 'flooder').length;
    expect(flooderBefore).toBeLessThan(3 * 30);
  });

  it('count only their own deciding against the turn, and hand what is left of it on: many quick batches under other load finish in a few turns', async () => {
    const quickSet = loadFiles({ 'rules.yaml': rulesDoc([{ id: 'r', effect: 'allow', actions: ['read'], resource: { type: 'doc' } }]) }).policySet;
    const quick = request({ principal: { id: 'eve' }, action: 'read', resource: { type: 'doc', id: 'd' } });
    const { sink, callers } = memorySink();
    const pipeline = new DecisionPipeline({ current: quickSet }, sink);
    // Other work (checks, HTTP) taking 4 ms of every turn.
    let stop = false;
    let turns = 0;
    const load = (): void => {
      turns++;
      for (const until = performance.now() + 4; performance.now() < until; );
      if (!stop) setImmediate(load);
    };
    setImmediate(load);
    await Promise.all(
      Array.from({ length: 100 }, async (_, c) => {
        for (let k = 0; k < 10; k++) {
          await new Promise((resolve) => setImmediate(resolve));
          await pipeline.checkBatch([quick, quick, quick], { caller: `gw-${c}`, requestId: null });
        }
      }),
    );
    stop = true;
    expect(callers).toHaveLength(3000);
    // A thousand batches of three quick items are a few ms of deciding: one call per turn took a thousand turns.
    expect(turns).toBeLessThan(100);
  });

  it('group callers by host: a host with ten connections gets no more turns than another with one, and its connections take turns', async () => {
    const { sink, callers } = memorySink();
    const pipeline = new DecisionPipeline({ current: slowSet }, sink);
    const finished: string[] = [];
    const floods = Array.from({ length: 10 }, (_, i) => pipeline.checkBatch(items(30), { caller: `10.0.0.1:${40000 + i}`, requestId: null }).then(() => finished.push(`10.0.0.1:${40000 + i}`)));
    const other = pipeline.checkBatch(items(30), { caller: '10.0.0.2:50000', requestId: null }).then(() => finished.push('10.0.0.2:50000'));
    await Promise.all([...floods, other]);
    expect(finished[0]).toBe('10.0.0.2:50000');
    const otherDone = callers.lastIndexOf('10.0.0.2:50000');
    expect(callers.slice(0, otherDone).filter((c) => c.startsWith('10.0.0.1:')).length).toBeLessThan(3 * 30);
  });

  it('name a caller group by host, an IPv6 one by its /64, and an identity by itself', () => {
    expect(callerGroup('10.0.0.7:41234')).toBe('10.0.0.7');
    expect(callerGroup('[2001:db8:1:2:3:4:5:6]:5000')).toBe('2001:db8:1:2::/64');
    expect(callerGroup('[2001:db8:1:2::9]:5001')).toBe('2001:db8:1:2::/64');
    expect(callerGroup('[2001:db8::1]:5000')).toBe('2001:db8:0:0::/64');
    expect(callerGroup('[::1]:5000')).toBe('0:0:0:0::/64');
    expect(callerGroup('[::ffff:10.0.0.7]:5000')).toBe('10.0.0.7');
    expect(callerGroup('2001:db8:1:2::9:5001')).toBe('2001:db8:1:2::/64');
    expect(callerGroup('::1:5000')).toBe('0:0:0:0::/64');
    expect(callerGroup('::ffff:10.0.0.7:5000')).toBe('10.0.0.7');
    expect(callerGroup('api-key:orders-service')).toBe('api-key:orders-service');
    expect(callerGroup('uri:spiffe://prod/sa/gw')).toBe('uri:spiffe://prod/sa/gw');
  });

  it('still decide a quick batch in the turn it came, when nothing else is waiting', async () => {
    const { sink, callers } = memorySink();
    const pipeline = new DecisionPipeline({ current: slowSet }, sink);
    const quick = pipeline.checkBatch(items(1), { caller: 'quick', requestId: null });
    // Decided and appended before the call's first await returns control.
    expect(callers).toEqual(['quick']);
    await quick;
  });
});
