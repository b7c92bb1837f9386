import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VerdictError } from '../../src/errors.js';
import { InvalidRequest, RefusedRequest } from '../../src/decide/index.js';
import { DECISION_ID_TRAILER } from '../../src/server/grpc/index.js';
import { hardCeiling } from '../../src/server/grpc/server.js';
import { asRequest, checkRequest, clientFor, startServer, unary, type Harness } from './support.js';

interface CheckResponse {
  effect: string;
  reason: string;
  ruleIds: string[];
  errors: { ruleId: string; message: string }[];
  policyVersion: string;
  decisionId: string;
  requestId: string;
}

describe('verdict.v1.Authorization', () => {
  let harness: Harness;
  let client: grpc.Client;

  beforeAll(async () => {
    harness = await startServer();
    client = clientFor('verdict.v1.Authorization', harness.address);
  });
  afterAll(async () => {
    client.close();
    await harness.close();
  });

  it('answers a Check and hands the handler plain JSON attributes', async () => {
    const { error, response } = await unary<CheckResponse>(client, 'Check', checkRequest());
    expect(error).toBeNull();
    expect(response).toEqual({
      effect: 'EFFECT_ALLOW',
      reason: 'REASON_ALLOWED_BY_RULE',
      ruleIds: ['readers'],
      errors: [],
      policyVersion: 'v-test',
      decisionId: expect.stringMatching(/^d-\d+$/),
      requestId: 'req-1',
      // No limit applied: the rate-limit fields keep their defaults.
      retryAfter: null,
      remaining: '0',
      limitId: '',
    });
    const seen = harness.seen.inputs.at(-1);
    expect(seen).not.toBeInstanceOf(InvalidRequest);
    expect(seen).toEqual({
      principal: { id: 'alice', roles: ['reader'], attributes: { tier: 'gold', level: 3 } },
      action: 'read',
      resource: { type: 'model', id: 'm1', attributes: { owner: 'bob' } },
      context: { attributes: { ip: '10.0.0.1' } },
    });
    const meta = harness.seen.metas.at(-1)!;
    expect(meta.requestId).toBe('req-1');
    expect(meta.caller).toMatch(/^(ipv4:)?127\.0\.0\.1:\d+$/);
  });

  it('converts nested structs, lists, nulls and booleans', async () => {
    const attributes = {
      fields: {
        nested: { structValue: { fields: { deep: { listValue: { values: [{ numberValue: 1 }, { nullValue: 'NULL_VALUE' }, { boolValue: false }] } } } } },
        empty: { structValue: { fields: {} } },
      },
    };
    const request = checkRequest({ context: { attributes } });
    expect((await unary<CheckResponse>(client, 'Check', request)).error).toBeNull();
    expect(asRequest(harness.seen.inputs.at(-1)).context.attributes).toEqual({ nested: { deep: [1, null, false] }, empty: {} });
  });

  it('takes the request id from x-request-id when the message has none, and denies with a reason', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-request-id', 'from-header');
    const { response } = await unary<CheckResponse>(client, 'Check', checkRequest({ requestId: '', action: 'delete' }), metadata);
    expect(response?.requestId).toBe('from-header');
    expect(response?.effect).toBe('EFFECT_DENY');
    expect(response?.reason).toBe('REASON_DENIED_BY_DEFAULT');
  });

  describe('refuses invalid requests with INVALID_ARGUMENT naming the field, after the handler saw them', () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['missing principal', { principal: null }, 'principal.id is required'],
      ['empty principal.id', { principal: { id: '', roles: [] } }, 'principal.id is required'],
      ['missing action', { action: '' }, 'action is required'],
      ['missing resource', { resource: null }, 'resource.type is required'],
      ['empty resource.type', { resource: { type: '', id: 'm1' } }, 'resource.type is required'],
      ['empty role', { principal: { id: 'alice', roles: ['reader', ''] } }, 'principal.roles[1]: must not be empty'],
      [
        'attribute with no value',
        { principal: { id: 'alice', attributes: { fields: { tier: {} } } } },
        'principal.attributes.tier: no value set (send null_value for null)',
      ],
      [
        'non-finite number deep inside',
        { resource: { type: 'model', attributes: { fields: { 'a-b': { listValue: { values: [{ numberValue: 1 }, { numberValue: Infinity }] } } } } } },
        'resource.attributes["a-b"][1]: number must be finite (NaN and Infinity are not JSON)',
      ],
    ];
    for (const [name, overrides, message] of cases) {
      it(name, async () => {
        const before = harness.seen.inputs.length;
        const { error } = await unary(client, 'Check', checkRequest(overrides));
        expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(error?.details).toBe(message);
        expect(error?.metadata.get(DECISION_ID_TRAILER)[0]).toMatch(/^d-\d+$/);
        expect(harness.seen.inputs.length).toBe(before + 1);
        const seen = harness.seen.inputs.at(-1);
        expect(seen).toBeInstanceOf(InvalidRequest);
        expect((seen as InvalidRequest).error.message).toBe(message);
        // What could be read is kept, for the record.
        expect((seen as InvalidRequest).request.action).toBe((overrides['action'] as string | undefined) ?? 'read');
      });
    }
  });

  it('keeps CheckBatch results in item order, one per item', async () => {
    const actions = ['read', 'write', 'read', 'delete', 'read'];
    const request = {
      principal: checkRequest()['principal'],
      requestId: 'batch-1',
      items: actions.map((action, i) => ({ action, resource: { type: 'model', id: `m${i}` } })),
    };
    const { error, response } = await unary<{ results: CheckResponse[] }>(client, 'CheckBatch', request);
    expect(error).toBeNull();
    expect(response!.results.map((r) => r.effect)).toEqual(actions.map((a) => (a === 'read' ? 'EFFECT_ALLOW' : 'EFFECT_DENY')));
    expect(response!.results.every((r) => r.requestId === 'batch-1')).toBe(true);
    expect(new Set(response!.results.map((r) => r.decisionId)).size).toBe(actions.length);
    expect(harness.seen.batches.at(-1)!.map((input) => asRequest(input).resource.id)).toEqual(actions.map((_, i) => `m${i}`));
  });

  it('answers an invalid batch item with DENIED_INVALID_REQUEST and the others normally', async () => {
    const request = {
      principal: { id: 'alice' },
      items: [
        { action: 'read', resource: { type: 'model' } },
        { action: 'read', resource: { type: '' } },
      ],
    };
    const { error, response } = await unary<{ results: CheckResponse[] }>(client, 'CheckBatch', request);
    expect(error).toBeNull();
    expect(response!.results[0]!.effect).toBe('EFFECT_ALLOW');
    expect(response!.results[1]).toMatchObject({
      effect: 'EFFECT_DENY',
      reason: 'REASON_DENIED_INVALID_REQUEST',
      errors: [{ ruleId: '', message: 'items[1].resource.type is required' }],
    });
  });

  it('refuses a batch whose shared principal is invalid, after recording every item', async () => {
    const request = { principal: { id: '' }, items: [{ action: 'read', resource: { type: 'model' } }, { action: 'read', resource: { type: 'x' } }] };
    const { error } = await unary(client, 'CheckBatch', request);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toBe('principal.id is required');
    expect(harness.seen.batches.at(-1)!.every((input) => input instanceof InvalidRequest)).toBe(true);
  });

  it('records a batch with no items and an invalid shared principal once, and names that decision', async () => {
    const before = harness.seen.inputs.length;
    const { error } = await unary(client, 'CheckBatch', { principal: { id: '' }, items: [] });
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toBe('principal.id is required');
    expect(harness.seen.inputs.length).toBe(before + 1);
    const refused = harness.seen.inputs.at(-1);
    expect(refused).toBeInstanceOf(InvalidRequest);
    expect((refused as InvalidRequest).error.message).toBe('principal.id is required');
    // The trailer names the decision that recorded it (none was named before).
    expect(error?.metadata.get(DECISION_ID_TRAILER)).toEqual([expect.stringMatching(/^d-\d+$/)]);
  });

  it('records a message over the size limit as an invalid request, then refuses it with INVALID_ARGUMENT', async () => {
    const big = 'x'.repeat(1024 * 1024 + 10);
    const before = harness.seen.inputs.length;
    const { error } = await unary(client, 'Check', checkRequest({ action: big }));
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toMatch(/^message is \d+ bytes, over the limit of 1048576 bytes/);
    expect(harness.seen.inputs.length).toBe(before + 1);
    const seen = harness.seen.inputs.at(-1);
    expect(seen).toBeInstanceOf(InvalidRequest);
  });

  it('refuses a message past the hard ceiling unread, with RESOURCE_EXHAUSTED', async () => {
    const huge = 'x'.repeat(hardCeiling(1024 * 1024) + 10);
    const before = harness.seen.inputs.length;
    const { error } = await unary(client, 'Check', checkRequest({ action: huge }));
    expect(error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(harness.seen.inputs.length).toBe(before);
  });
});

describe('error mapping and limits', () => {
  it('maps DECISION_LOG_UNAVAILABLE to UNAVAILABLE, unknown errors to a bare INTERNAL', async () => {
    const reported: unknown[] = [];
    const harness = await startServer(
      {
        check: (input) => {
          if (input instanceof RefusedRequest) throw new Error('should not happen');
          if (input.principal.id === 'bug') throw new Error('secret detail at /srv/app.js:12');
          throw new VerdictError('DECISION_LOG_UNAVAILABLE', 'decision log unavailable: disk full');
        },
      },
      { onInternalError: (error) => reported.push(error) },
    );
    const client = clientFor('verdict.v1.Authorization', harness.address);
    try {
      const down = await unary(client, 'Check', checkRequest());
      expect(down.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(down.error?.details).toBe('decision log unavailable: disk full');
      const bug = await unary(client, 'Check', checkRequest({ principal: { id: 'bug' } }));
      expect(bug.error?.code).toBe(grpc.status.INTERNAL);
      expect(bug.error?.details).toBe('internal error');
      expect(reported).toHaveLength(1);
    } finally {
      client.close();
      await harness.close();
    }
  });

  it('honours deadlines: a check still deciding when its deadline passes gets DEADLINE_EXCEEDED', async () => {
    // The check answers only after the client has given up on it.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const harness = await startServer({
      check: async (input) => {
        await gate;
        return { request: asRequest(input), decision: { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], errors: [], policyVersion: 'v' }, decisionId: 'too-late' };
      },
    });
    const client = clientFor('verdict.v1.Authorization', harness.address);
    try {
      const { error } = await unary(client, 'Check', checkRequest(), undefined, { deadline: Date.now() + 50 });
      expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    } finally {
      release();
      client.close();
      await harness.close();
    }
  });

  it('uses the configured message size limit and batch limit', async () => {
    const harness = await startServer({}, { maxReceiveMessageBytes: 64 * 1024, maxBatchItems: 2 });
    const client = clientFor('verdict.v1.Authorization', harness.address);
    try {
      const big = await unary(client, 'Check', checkRequest({ action: 'x'.repeat(70 * 1024) }));
      expect(big.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(big.error?.details).toContain('over the limit of 65536 bytes');
      const items = [1, 2, 3].map(() => ({ action: 'read', resource: { type: 'model' } }));
      const many = await unary(client, 'CheckBatch', { principal: { id: 'alice' }, items });
      expect(many.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(many.error?.details).toBe('items: more than 2 items, over the limit of 2 per batch');
      // Refused whole, and recorded once like any bad input: the trailer names its decision.
      const refused = harness.seen.inputs.at(-1);
      expect(refused).toBeInstanceOf(InvalidRequest);
      expect((refused as InvalidRequest).error.message).toBe('items: more than 2 items, over the limit of 2 per batch');
      expect(many.error?.metadata.get(DECISION_ID_TRAILER)).toEqual([`d-${harness.seen.inputs.length}`]);
      expect(harness.seen.batches).toEqual([]);
    } finally {
      client.close();
      await harness.close();
    }
  });

  it('lets in-flight checks finish on shutdown', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const entered = new Promise<void>((resolve) => (started = resolve));
    const harness = await startServer({
      check: async (input) => {
        started();
        await gate;
        return { request: asRequest(input), decision: { effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['r'], errors: [], policyVersion: 'v' }, decisionId: 'late' };
      },
    });
    const client = clientFor('verdict.v1.Authorization', harness.address);
    const call = unary<CheckResponse>(client, 'Check', checkRequest());
    await entered;
    let stoppedEarly = false;
    const stopped = harness.close().then(() => (stoppedEarly = true));
    // Shutting down: a new connection is refused, while the check in flight is still waited for.
    const latecomer = clientFor('verdict.v1.Authorization', harness.address);
    const refused = await unary(latecomer, 'Check', checkRequest());
    latecomer.close();
    expect(refused.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(stoppedEarly).toBe(false);
    release();
    const { error, response } = await call;
    await stopped;
    expect(error).toBeNull();
    expect(response?.decisionId).toBe('late');
    client.close();
  });
});
