import { describe, expect, it } from 'vitest';
import { InvalidRequest, RequestFieldError, refusalDecision } from '../../src/decide/index.js';
import { jsonToStruct, MAX_ATTRIBUTE_DEPTH, structToAttributes } from '../../src/server/grpc/convert/struct.js';
import { fromTimestamp, toBatchInputs, toCheckInput, toCheckResponse, toDecisionFilters, toTimestamp } from '../../src/server/grpc/convert/verdict.js';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import type { Struct__Output as StructMessage } from '../../src/server/grpc/generated/google/protobuf/Struct.js';
import type { Value__Output as ValueMessage } from '../../src/server/grpc/generated/google/protobuf/Value.js';
import type { ListDecisionsRequest__Output as ListDecisionsRequestMessage } from '../../src/server/grpc/generated/verdict/v1/ListDecisionsRequest.js';
import { REASONS } from '../../src/types.js';

/** As proto-loader decodes it: the oneof's member named in `kind`. */
function decoded(value: ValueMessage): ValueMessage {
  const kind = (['nullValue', 'numberValue', 'stringValue', 'boolValue', 'structValue', 'listValue'] as const).find((k) => k in value);
  return kind ? { ...value, kind } : value;
}

function struct(fields: Record<string, ValueMessage>): StructMessage {
  return { fields: Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, decoded(v)])) };
}

describe('Struct ↔ JSON', () => {
  it('round-trips JSON through Struct', () => {
    const json = { s: 'x', n: 1.5, b: true, z: null, list: [1, 'two', [false], { k: null }], obj: { inner: { deeper: 'yes' } }, empty: {} };
    const message = jsonToStruct(json) as StructMessage;
    // Re-shape as the decoder would (kind on every Value, recursively).
    const redecode = (value: ValueMessage): ValueMessage => {
      const v = decoded(value);
      if (v.structValue) return { ...v, structValue: { fields: Object.fromEntries(Object.entries(v.structValue.fields).map(([k, x]) => [k, redecode(x)])) } };
      if (v.listValue) return { ...v, listValue: { values: v.listValue.values.map(redecode) } };
      return v;
    };
    const fields = Object.fromEntries(Object.entries(message.fields).map(([k, v]) => [k, redecode(v)]));
    expect(structToAttributes({ fields }, 'x')).toEqual(json);
  });

  it('keeps a __proto__ key as data, not as a prototype', () => {
    const message = jsonToStruct(JSON.parse('{"__proto__": {"admin": true}}') as unknown);
    expect(Object.getPrototypeOf(message.fields) as unknown).toBe(Object.prototype);
    expect(Object.keys(message.fields ?? {})).toEqual(['__proto__']);
  });

  it('names the path of a bad attribute', () => {
    const bad = struct({ a: { structValue: struct({ 'b c': { listValue: { values: [decoded({ stringValue: 'ok' }), decoded({ numberValue: NaN })] } } }) } });
    expect(() => structToAttributes(bad, 'context.attributes')).toThrow(
      new RequestFieldError('context.attributes.a["b c"][1]', 'context.attributes.a["b c"][1]: number must be finite (NaN and Infinity are not JSON)'),
    );
  });

  it(`refuses nesting deeper than ${MAX_ATTRIBUTE_DEPTH}`, () => {
    let value: ValueMessage = decoded({ stringValue: 'bottom' });
    for (let i = 0; i <= MAX_ATTRIBUTE_DEPTH; i++) value = decoded({ structValue: { fields: { d: value } } });
    expect(() => structToAttributes({ fields: { d: value } }, 'p')).toThrow(/nested deeper than 32 levels/);
    let ok: ValueMessage = decoded({ stringValue: 'bottom' });
    for (let i = 0; i < MAX_ATTRIBUTE_DEPTH; i++) ok = decoded({ structValue: { fields: { d: ok } } });
    expect(() => structToAttributes({ fields: { d: ok } }, 'p')).not.toThrow();
  });

  it('shares one empty object for absent attributes', () => {
    expect(structToAttributes(null, 'x')).toBe(structToAttributes({ fields: {} }, 'y'));
  });
});

describe('requests', () => {
  const valid = {
    principal: { id: 'alice', roles: ['r'], attributes: null },
    action: 'read',
    resource: { type: 'model', id: 'm', attributes: null },
    context: null,
    requestId: '',
  };

  it('reports the first problem in field order and keeps what it could read', () => {
    const input = toCheckInput({ ...valid, principal: { id: '', roles: [], attributes: null }, action: '' });
    expect(input).toBeInstanceOf(InvalidRequest);
    const invalid = input as InvalidRequest;
    expect(invalid.error.field).toBe('principal.id');
    expect(invalid.request.resource.type).toBe('model');
    expect(refusalDecision(invalid.refusal, 'v')).toEqual({
      effect: 'DENY',
      reason: 'DENIED_INVALID_REQUEST',
      ruleIds: [],
      errors: [{ ruleId: '', message: 'principal.id is required' }],
      policyVersion: 'v',
    });
  });

  it('passes a valid request through without copying its roles', () => {
    const input = toCheckInput(valid);
    expect(input).not.toBeInstanceOf(InvalidRequest);
    expect((input as { principal: { roles: unknown } }).principal.roles).toBe(valid.principal.roles);
  });

  it('marks only the bad items of a batch, or all of them when the shared part is bad', () => {
    const items = [
      { action: 'read', resource: { type: 'model', id: '', attributes: null } },
      { action: '', resource: { type: 'model', id: '', attributes: null } },
    ];
    const some = toBatchInputs({ principal: valid.principal, context: null, requestId: '', items });
    expect(some.shared).toBeNull();
    expect(some.inputs.map((i) => (i instanceof InvalidRequest ? i.error.message : 'ok'))).toEqual(['ok', 'items[1].action is required']);
    const all = toBatchInputs({ principal: null, context: null, requestId: '', items });
    expect(all.shared?.message).toBe('principal.id is required');
    expect(all.inputs.every((i) => i instanceof InvalidRequest && i.error.field === 'principal.id')).toBe(true);
  });
});

describe('admin messages', () => {
  it('converts timestamps both ways and refuses invalid ones', () => {
    expect(toTimestamp(1_700_000_000_123)).toEqual({ seconds: 1_700_000_000, nanos: 123_000_000 });
    expect(toTimestamp(-1)).toEqual({ seconds: -1, nanos: 999_000_000 });
    expect(fromTimestamp({ seconds: '1700000000', nanos: 123_000_000 }, 'since')).toBe(1_700_000_000_123);
    expect(() => fromTimestamp({ seconds: '1', nanos: 1e9 }, 'until')).toThrow('until.nanos: must be between 0 and 999999999');
  });

  it('leaves unset filters out of the log filters', () => {
    const empty: ListDecisionsRequestMessage = {
      principalId: '',
      resourceType: '',
      resourceId: '',
      action: '',
      effect: 'EFFECT_UNSPECIFIED',
      reason: 'REASON_UNSPECIFIED',
      since: null,
      until: null,
      limit: 0,
      pageToken: '',
    };
    expect(toDecisionFilters(empty)).toEqual({});
    expect(
      toDecisionFilters({ ...empty, principalId: 'alice', effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT', since: { seconds: '10', nanos: 0 }, limit: 5 }),
    ).toEqual({ principalId: 'alice', effect: 'DENY', reason: 'DENIED_BY_RATE_LIMIT', since: 10_000, limit: 5 });
  });
});

describe('the reason enum', () => {
  const wireNames = (packageDefinition['verdict.v1.Reason'] as { type: { value: { name: string }[] } }).type.value.map((v) => v.name);

  it('gives every reason of src/types.ts a value of verdict.v1.Reason, and reads each value but UNSPECIFIED back', () => {
    const sent = REASONS.map((reason) => toCheckResponse({ decision: { effect: 'DENY', reason, ruleIds: [], errors: [], policyVersion: 'v' }, decisionId: 'd' }, null).reason);
    expect([...sent].sort()).toEqual(wireNames.filter((name) => name !== 'REASON_UNSPECIFIED').sort());
    const empty: ListDecisionsRequestMessage = { principalId: '', resourceType: '', resourceId: '', action: '', effect: 'EFFECT_UNSPECIFIED', reason: 'REASON_UNSPECIFIED', since: null, until: null, limit: 0, pageToken: '' };
    for (const reason of REASONS) expect(toDecisionFilters({ ...empty, reason: `REASON_${reason}` }).reason).toBe(reason);
    expect(toDecisionFilters(empty).reason).toBeUndefined();
  });
});
