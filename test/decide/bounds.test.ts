import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_REQUEST_LIMITS, DecisionPipeline, RequestMeter, type CallMeta, type RequestLimits } from '../../src/decide/index.js';
import { DecisionReader } from '../../src/decisions/query.js';
import { readConfigFile, resolveConfig } from '../../src/server/config.js';
import type { DecisionRequest } from '../../src/types.js';
import { loadFiles, makeTempDir, removeTempDirs, request, rulesDoc } from '../helpers/policies.js';
import { useDecisionLog } from '../helpers/decision-log.js';

afterAll(removeTempDirs);

const small: RequestLimits = { maxStringLength: 10, maxListLength: 3, maxValues: 8, maxTotalLength: 40 };
const over = (r: DecisionRequest, limits: RequestLimits = small) => new RequestMeter(limits).problem(r);

describe('caps on the size of a request', () => {
  it('a request within every cap passes; the defaults are documented numbers', () => {
    expect(over(request({ principal: { id: 'al', roles: ['r'], attributes: { a: ['x', 'y'] } }, action: 'read', resource: { type: 'doc', id: 'd' } }))).toBeNull();
    expect(DEFAULT_REQUEST_LIMITS).toEqual({ maxStringLength: 8192, maxListLength: 1000, maxValues: 10_000, maxTotalLength: 1_048_576 });
  });

  it.each<[string, DecisionRequest, RegExp]>([
    ['a long principal id', request({ principal: { id: 'x'.repeat(11) } }), /^principal\.id: 11 characters, over the limit of 10 \(requestLimits\.maxStringLength\)$/],
    ['a long role', request({ principal: { id: 'a', roles: ['ok', 'r'.repeat(11)] } }), /^principal\.roles\[1\]: 11 characters/],
    ['too many roles', request({ principal: { id: 'a', roles: ['1', '2', '3', '4'] } }), /^principal\.roles: 4 items, over the limit of 3 \(requestLimits\.maxListLength\)$/],
    ['a long action', request({ action: 'a'.repeat(11) }), /^action: 11 characters/],
    ['a long resource id', request({ resource: { type: 'doc', id: 'i'.repeat(11) } }), /^resource\.id: 11 characters/],
    ['a long nested string', request({ resource: { type: 'doc', id: 'd', attributes: { tags: [{ name: 'n'.repeat(11) }] } } }), /^resource\.attributes\.tags\[0\]\.name: 11 characters/],
    ['a long key', request({ context: { ['k'.repeat(11)]: 1 } }), /^context\.attributes\.kkkkkkkkkkk: 11 characters/],
    ['a long list', request({ principal: { id: 'a', attributes: { groups: ['a', 'b', 'c', 'd'] } } }), /^principal\.attributes\.groups: 4 items/],
    ['a nested long list', request({ context: { m: { 'odd key': [[1, 2, 3, 4]] } } }), /^context\.attributes\.m\["odd key"\]\[0\]: 4 items/],
    ['too many values in one part', request({ context: { a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9 } }), /^context\.attributes: more than 8 values/],
    ['too many values across parts', request({ principal: { id: 'a', roles: ['1', '2', '3'], attributes: { a: 1, b: 2 } }, context: { c: 3, d: 4, e: 5, f: 6 } }), /^request: 9 values, over the limit of 8 \(requestLimits\.maxValues\)$/],
    ['too many characters', request({ principal: { id: 'aaaaaaaaaa', roles: ['bbbbbbbbbb'] }, action: 'cccccccccc', resource: { type: 'dddddddddd', id: 'e' } }), /^request: 41 characters, over the limit of 40 \(requestLimits\.maxTotalLength\)$/],
  ])('refuses %s, naming the field and the cap', (_what, r, message) => {
    expect(over(r)).toMatch(message);
  });

  it('refuses nesting deeper than 64 levels (attributes from a JSON token can nest without end)', () => {
    let deep: Record<string, unknown> = { leaf: true };
    for (let i = 0; i < 100; i++) deep = { d: deep };
    expect(over(request({ principal: { id: 'a', attributes: deep } }), DEFAULT_REQUEST_LIMITS)).toMatch(/^principal\.attributes(\.d){65}: nested deeper than 64 levels$/);
  });

  it('measures a principal shared by a batch once, and still refuses each item on its own merits', () => {
    const meter = new RequestMeter(small);
    const principal = { id: 'p', roles: ['a'], attributes: {} };
    const base = request({ principal, action: 'read', resource: { type: 'doc', id: 'd' } });
    const shared = { ...base, principal: base.principal };
    expect(meter.problem(shared)).toBeNull();
    expect(meter.problem({ ...shared, resource: { ...shared.resource, id: 'x'.repeat(11) } })).toMatch(/^resource\.id/);
    expect(meter.problem(shared)).toBeNull();
    expect(meter.problem({ ...shared, principal: { ...shared.principal, id: 'y'.repeat(11) } })).toMatch(/^principal\.id/);
  });

  it('measures resource attributes shared by the candidates of a search page once, only the id again', () => {
    const meter = new RequestMeter(DEFAULT_REQUEST_LIMITS);
    // Counts the walks over the attributes: each for...in over the map asks for its keys once.
    let walks = 0;
    const attributes = new Proxy(Object.fromEntries(Array.from({ length: 9000 }, (_, i) => [`k${i}`, `v${i}`])), {
      ownKeys: (target) => (walks++, Reflect.ownKeys(target)),
    });
    const question = request({ principal: { id: 'p', roles: [], attributes: {} }, action: 'read', resource: { type: 'doc', id: '' } });
    const asked = (id: string): DecisionRequest => ({ ...question, resource: { type: 'doc', id, attributes } });
    for (let i = 0; i < 100; i++) expect(meter.problem(asked(`doc-${i}`))).toBeNull();
    expect(walks).toBe(1);
    // Each candidate's id is still measured on its own, and a cap the attributes break still holds for every candidate.
    expect(meter.problem(asked('x'.repeat(9000)))).toMatch(/^resource\.id: 9000 characters/);
    const tight = new RequestMeter({ ...DEFAULT_REQUEST_LIMITS, maxValues: 5000 });
    expect(tight.problem(asked('doc-1'))).toMatch(/^resource\.attributes: more than 5000 values/);
    expect(tight.problem(asked('doc-2'))).toMatch(/^resource\.attributes: more than 5000 values/);
  });
});

describe('the pipeline refuses a request over a cap, records it, and never evaluates it', () => {
  const decisionLog = useDecisionLog();
  const meta: CallMeta = { caller: 'test', requestId: null };
  const policySet = loadFiles({ 'rules.yaml': rulesDoc([{ id: 'anyone', effect: 'allow', actions: ['read'], resource: { type: 'doc' } }]) }).policySet;

  it('as DENIED_INVALID_REQUEST with the cap in its error; the log keeps the ids, not the bulk', async () => {
    const pipeline = new DecisionPipeline({ current: policySet }, decisionLog(), { requestLimits: small });
    const bulky = request({ principal: { id: 'pat', roles: ['r'], attributes: { groups: ['a', 'b', 'c', 'd'] } }, action: 'read', resource: { type: 'doc', id: 'd1' } });
    const result = await pipeline.check(bulky, meta);
    expect(result.decision).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', ruleIds: [], errors: [{ ruleId: '', message: expect.stringMatching(/^principal\.attributes\.groups: 4 items/) }] });
    expect(result.request).toEqual({ principal: { id: 'pat', roles: [], attributes: {} }, action: 'read', resource: { type: 'doc', id: 'd1', attributes: {} }, context: { attributes: {} } });
    const reader = DecisionReader.open(decisionLog().path);
    try {
      expect(reader.get(result.decisionId)).toMatchObject({ principalId: 'pat', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    } finally {
      reader.close();
    }
    // Within the caps, the same pipeline decides as usual.
    expect((await pipeline.check(request({ principal: { id: 'pat' }, action: 'read', resource: { type: 'doc', id: 'd1' } }), meta)).decision.effect).toBe('ALLOW');
  });

  it('cuts an over-long id it records to the string cap', async () => {
    const pipeline = new DecisionPipeline({ current: policySet }, decisionLog(), { requestLimits: small });
    const result = await pipeline.check(request({ principal: { id: 'z'.repeat(50) }, action: 'read', resource: { type: 'doc', id: 'd' } }), meta);
    expect(result.request.principal.id).toBe(`${'z'.repeat(10)}…`);
  });
});

describe('requestLimits in the config file', () => {
  it('defaults to the documented caps; a file sets some, the rest keep their defaults', () => {
    expect(resolveConfig([]).requestLimits).toEqual({ ...DEFAULT_REQUEST_LIMITS, maxConditionSteps: 10_000, maxExtAuthzEntries: 4096 });
    const dir = makeTempDir();
    const file = join(dir, 'verdict.yaml');
    writeFileSync(file, 'requestLimits:\n  maxListLength: 10000\n');
    expect(resolveConfig([readConfigFile(file)]).requestLimits).toEqual({ ...DEFAULT_REQUEST_LIMITS, maxConditionSteps: 10_000, maxExtAuthzEntries: 4096, maxListLength: 10_000 });
  });

  it('refuses an unknown or non-positive cap, naming it', () => {
    const dir = makeTempDir();
    const file = join(dir, 'verdict.yaml');
    writeFileSync(file, 'requestLimits:\n  maxListLen: 10\n');
    expect(() => readConfigFile(file)).toThrow(/requestLimits.*maxListLen/);
    writeFileSync(file, 'requestLimits:\n  maxValues: 0\n');
    expect(() => readConfigFile(file)).toThrow(/requestLimits\.maxValues/);
  });
});
