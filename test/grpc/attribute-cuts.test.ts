import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidRequest, RefusedRequest, RequestMeter } from '../../src/decide/index.js';
import { cutAttributes, markCuts } from '../../src/server/grpc/attribute-cuts.js';
import { toBatchInputs, toCheckInput } from '../../src/server/grpc/convert/verdict.js';
import { jsonToStruct } from '../../src/server/grpc/convert/struct.js';
import { messageType, serviceDefinition } from '../../src/server/grpc/descriptors.js';
import { readWithin, type AttributeCut, type WalkBudget } from '../../src/server/grpc/once-fields.js';
import type { CheckBatchRequest__Output } from '../../src/server/grpc/generated/verdict/v1/CheckBatchRequest.js';
import type { CheckRequest__Output } from '../../src/server/grpc/generated/verdict/v1/CheckRequest.js';

// The wire walk's request limits (once-fields.ts) and the cuts they lead to
// (attribute-cuts.ts), on small limits: attributes are only cut when the request
// limits would refuse the request anyway, what is cut is refused even without the
// words naming it, and the bytes left decode to the rest of the request unchanged.

const BUDGET: WalkBudget = { maxValues: 12, maxListLength: 4, maxItems: 3, tooManyItems: 'more than 3 items, over the limit of 3 per batch' };
const LIMITS = { maxStringLength: 8_192, maxListLength: 4, maxValues: 12, maxTotalLength: 1_048_576 };
const CHECK = messageType('verdict.v1.CheckRequest')!;
const BATCH = messageType('verdict.v1.CheckBatchRequest')!;
const decodeCheck = serviceDefinition('verdict.v1.Authorization').Check!.requestDeserialize as (bytes: Buffer) => CheckRequest__Output;
const decodeBatch = serviceDefinition('verdict.v1.Authorization').CheckBatch!.requestDeserialize as (bytes: Buffer) => CheckBatchRequest__Output;

function read(bytes: Buffer, type = CHECK, budget = BUDGET): { cuts: AttributeCut[]; refusal: ReturnType<typeof readWithin> } {
  const cuts: AttributeCut[] = [];
  const refusal = readWithin(bytes, type, { budget, cuts });
  return { cuts, refusal };
}

const leaf = fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.string({ maxLength: 3 }));
const attribute = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('value'), { maxLength: 6 }), fc.dictionary(fc.string({ minLength: 1, maxLength: 3 }).filter((k) => k !== '__proto__' && k !== 'constructor'), tie('value'), { maxKeys: 5 })),
})).value;
const attributes = fc.dictionary(fc.string({ minLength: 1, maxLength: 3 }).filter((k) => k !== '__proto__' && k !== 'constructor'), attribute, { maxKeys: 6 });

describe('attributes cut for breaking a request limit', () => {
  it('are cut only from requests the request limits refuse, and the rest of the request is read as sent', () => {
    let cutRequests = 0;
    fc.assert(
      fc.property(attributes, attributes, attributes, (principal, resource, context) => {
        const message = CHECK.fromObject({
          principal: { id: 'p', attributes: jsonToStruct(principal) },
          action: 'a',
          resource: { type: 't', id: 'i', attributes: jsonToStruct(resource) },
          context: { attributes: jsonToStruct(context) },
        });
        const bytes = Buffer.from(CHECK.encode(message).finish());
        const { cuts, refusal } = read(bytes);
        expect(refusal).toBeNull();
        const whole = toCheckInput(decodeCheck(bytes));
        const meter = new RequestMeter(LIMITS);
        const refusedWhole = whole instanceof InvalidRequest || whole instanceof RefusedRequest || meter.problem(whole) !== null;
        if (cuts.length > 0) {
          cutRequests++;
          expect(refusedWhole).toBe(true);
          const cut = cutAttributes(bytes, cuts)!;
          const decoded = decodeCheck(cut);
          markCuts(decoded, cuts);
          const input = toCheckInput(decoded);
          expect(input).toBeInstanceOf(InvalidRequest);
          expect((input as InvalidRequest).error.message).toBe(`${cuts[0]!.field}: ${cuts[0]!.problem}`);
          // The rest of the request is what was sent.
          expect(decoded.principal?.id).toBe('p');
          expect(decoded.action).toBe('a');
          expect(decoded.resource?.id).toBe('i');
        }
      }),
      { numRuns: 400 },
    );
    expect(cutRequests).toBeGreaterThan(20);
  });

  it('leaves attributes at the limits whole: a list of 4, and 12 values in all', () => {
    const at = (context: Record<string, unknown>): AttributeCut[] => read(Buffer.from(CHECK.encode(CHECK.fromObject({ principal: { id: 'p' }, action: 'a', resource: { type: 't' }, context: { attributes: jsonToStruct(context) } })).finish())).cuts;
    expect(at({ list: [1, 2, 3, 4], more: [1, 2, 3, 4], last: 1, one: 1 })).toEqual([]);
    expect(at({ list: [1, 2, 3, 4, 5] }).map((cut) => cut.problem)).toEqual(['more than 4 items, over the limit of 4 (requestLimits.maxListLength)']);
    expect(at({ list: [1, 2, 3, 4], more: [1, 2, 3, 4], last: 1, one: 1, two: 1 }).map((cut) => cut.problem)).toEqual(['more than 12 values, over the limit (requestLimits.maxValues)']);
  });

  it('names the list as the request limits name it once decoded: keys and indexes, a key sent after its value', () => {
    const at = (context: Record<string, unknown>): string[] => read(Buffer.from(CHECK.encode(CHECK.fromObject({ principal: { id: 'p' }, context: { attributes: jsonToStruct(context) } })).finish())).cuts.map((cut) => `${cut.field}: ${cut.problem}`);
    expect(at({ a: { b: [[1], [1, 2, 3, 4, 5, 6]] } })).toEqual(['context.attributes.a.b[1]: more than 4 items, over the limit of 4 (requestLimits.maxListLength)']);
    expect(at({ 'a b': [1, 2, 3, 4, 5] })).toEqual(['context.attributes["a b"]: more than 4 items, over the limit of 4 (requestLimits.maxListLength)']);
    const varint = (n: number): Buffer => Buffer.from(n < 0x80 ? [n] : [(n & 0x7f) | 0x80, n >> 7]);
    const ld = (field: number, body: Buffer): Buffer => Buffer.concat([varint(field * 8 + 2), varint(body.length), body]);
    const list = ld(6, Buffer.concat(Array.from({ length: 5 }, () => ld(1, Buffer.from([0x08, 0x00])))));
    // The map entry's value (2) before its key (1).
    const entry = ld(1, Buffer.concat([ld(2, list), ld(1, Buffer.from('late'))]));
    const bytes = Buffer.concat([ld(1, ld(1, Buffer.from('p'))), ld(4, ld(1, entry))]);
    expect(read(bytes).cuts.map((cut) => `${cut.field}: ${cut.problem}`)).toEqual(['context.attributes.late: more than 4 items, over the limit of 4 (requestLimits.maxListLength)']);
  });

  it('measures a list sent behind a bool of ten bytes as protobufjs reads it (five bytes, five more skipped)', () => {
    const varint = (n: number): Buffer => Buffer.from(n < 0x80 ? [n] : [(n & 0x7f) | 0x80, n >> 7]);
    const ld = (field: number, body: Buffer): Buffer => Buffer.concat([varint(field * 8 + 2), varint(body.length), body]);
    const list = ld(6, Buffer.concat(Array.from({ length: 5 }, () => ld(1, Buffer.from([0x08, 0x00])))));
    // bool_value (4) as ten bytes of 0x80, then the list: read to the first byte below 0x80, the bool swallowed the list's tag.
    const value = Buffer.concat([Buffer.from([0x20, ...Array.from({ length: 10 }, () => 0x80)]), list]);
    const bytes = Buffer.concat([ld(1, ld(1, Buffer.from('p'))), ld(4, ld(1, ld(1, Buffer.concat([ld(1, Buffer.from('v')), ld(2, value)]))))]);
    const { cuts, refusal } = read(bytes);
    expect(refusal).toBeNull();
    expect(cuts.map((cut) => `${cut.field}: ${cut.problem}`)).toEqual(['context.attributes.v: more than 4 items, over the limit of 4 (requestLimits.maxListLength)']);
  });

  it('what is cut is refused by the conversion even without the cuts marked on the message', () => {
    const bytes = Buffer.from(CHECK.encode(CHECK.fromObject({ principal: { id: 'p' }, action: 'a', resource: { type: 't' }, context: { attributes: jsonToStruct({ list: [1, 2, 3, 4, 5] }) } })).finish());
    const { cuts } = read(bytes);
    expect(cuts.map((cut) => cut.field)).toEqual(['context.attributes.list']);
    const input = toCheckInput(decodeCheck(cutAttributes(bytes, cuts)!));
    expect(input).toBeInstanceOf(InvalidRequest);
    expect((input as InvalidRequest).error.message).toBe('context.attributes[""]: no value set (send null_value for null)');
  });

  it("names a batch item by its place among the items, wherever the other fields fall between them; the others are read whole", () => {
    const item = (n: number): Uint8Array => BATCH.encode(BATCH.fromObject({ items: [{ action: 'a', resource: { type: 't', id: `i${n}`, attributes: jsonToStruct(n === 1 ? { list: [1, 2, 3, 4, 5] } : { n }) } }] })).finish();
    const bytes = Buffer.concat([item(0), BATCH.encode(BATCH.fromObject({ principal: { id: 'p' } })).finish(), item(1), BATCH.encode(BATCH.fromObject({ requestId: 'x' })).finish(), item(2)]);
    const { cuts } = read(bytes, BATCH);
    expect(cuts.map((cut) => [cut.field, cut.item])).toEqual([['items[1].resource.attributes.list', 1]]);
    const decoded = decodeBatch(cutAttributes(bytes, cuts)!);
    markCuts(decoded, cuts);
    const { inputs, shared } = toBatchInputs(decoded);
    expect(shared).toBeNull();
    expect(inputs.map((input) => (input instanceof InvalidRequest ? input.error.message : input instanceof RefusedRequest ? 'refused' : input.resource.attributes))).toEqual([
      { n: 0 },
      'items[1].resource.attributes.list: more than 4 items, over the limit of 4 (requestLimits.maxListLength)',
      { n: 2 },
    ]);
  });

  it('cuts many items of one batch in one pass, reading the others whole', () => {
    const items = Array.from({ length: 40 }, (_, n) => ({ action: 'a', resource: { type: 't', id: `i${n}`, attributes: jsonToStruct(n % 3 === 0 ? { list: [1, 2, 3, 4, 5] } : { n }) } }));
    const bytes = Buffer.from(BATCH.encode(BATCH.fromObject({ principal: { id: 'p' }, items })).finish());
    const { cuts, refusal } = read(bytes, BATCH, { ...BUDGET, maxItems: 1000 });
    expect(refusal).toBeNull();
    expect(cuts.map((cut) => cut.item)).toEqual(Array.from({ length: 14 }, (_, i) => i * 3));
    const decoded = decodeBatch(cutAttributes(bytes, cuts)!);
    markCuts(decoded, cuts);
    const { inputs } = toBatchInputs(decoded);
    inputs.forEach((input, n) => {
      if (n % 3 === 0) expect(input).toBeInstanceOf(InvalidRequest);
      else expect(input).toMatchObject({ resource: { id: `i${n}`, attributes: { n } } });
    });
    // Cuts out of order, or two in one field, cut nothing.
    expect(cutAttributes(bytes, [cuts[1]!, cuts[0]!])).toBeNull();
    expect(cutAttributes(bytes, [cuts[0]!, cuts[0]!])).toBeNull();
  });

  it('refuses whole a repeated field with more elements than any request may hold', () => {
    expect(read(Buffer.from(CHECK.encode(CHECK.fromObject({ principal: { id: 'p', roles: ['a', 'b', 'c', 'd', 'e'] } })).finish())).refusal).toEqual({
      kind: 'too_many',
      field: 'principal.roles',
      reason: 'more than 4 items, over the limit of 4 (requestLimits.maxListLength)',
    });
    expect(read(Buffer.from(BATCH.encode(BATCH.fromObject({ items: [{}, {}, {}, {}] })).finish()), BATCH).refusal).toEqual({ kind: 'too_many', field: 'items', reason: 'more than 3 items, over the limit of 3 per batch' });
    expect(read(Buffer.from(BATCH.encode(BATCH.fromObject({ items: [{}, {}, {}] })).finish()), BATCH).refusal).toBeNull();
  });

  it('cuts nothing from frames that do not nest as the walk leaves them', () => {
    const bytes = Buffer.from(CHECK.encode(CHECK.fromObject({ principal: { id: 'p' }, context: { attributes: jsonToStruct({ list: [1, 2, 3, 4, 5] }) } })).finish());
    const [cut] = read(bytes).cuts;
    expect(cutAttributes(bytes, [{ ...cut!, frames: [cut!.frames[1]!, cut!.frames[0]!, cut!.frames[2]!] }])).toBeNull();
    expect(cutAttributes(bytes, [{ ...cut!, frames: [...cut!.frames.slice(0, 3), 0, 1, bytes.length + 1] }])).toBeNull();
  });
});
