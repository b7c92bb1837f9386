import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { getDecision } from '../../src/decisions/query.js';
import { messageType, serviceDefinition } from '../../src/server/grpc/descriptors.js';
import { jsonToStruct } from '../../src/server/grpc/convert/struct.js';
import { shippedAllowedCheck, shippedAllowedRequest, useShippedServer } from '../helpers/verdict-process.js';

// A request the request limits refuse was decoded whole before they refused it: a
// megabyte holding a list of 260,000 nulls, which 1.2 KB of gzip carries, took about a
// tenth of a second to decode (and as long again to walk and convert), holding every
// other caller's check. The wire walk now measures lists, values, roles and batch
// items against the limits before anything is decoded: attributes over a limit are
// cut out and what held them refused (the rest of the request is still read and
// recorded), and a repeated field with too many elements refuses the message whole.

const CHECK = messageType('verdict.v1.CheckRequest')!;
const BATCH = messageType('verdict.v1.CheckBatchRequest')!;
const nulls = (count: number): unknown[] => Array.from({ length: count }, () => null);

interface RawAnswer {
  readonly error: grpc.ServiceError | null;
  readonly response: Buffer | null;
  readonly decisionId: string | null;
}

/** One call of encoded `bytes`, gzip-compressed by grpc-js when `gzip`. */
function call(port: number, method: 'Check' | 'CheckBatch', bytes: Buffer, gzip = false): Promise<RawAnswer> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), gzip ? { 'grpc.default_compression_algorithm': 2, 'grpc.use_local_subchannel_pool': 1 } : { 'grpc.use_local_subchannel_pool': 1 });
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | null = null;
    let response: Buffer | null = null;
    const unary = client.makeUnaryRequest<Buffer, Buffer>(
      `/verdict.v1.Authorization/${method}`,
      (raw) => raw,
      (raw) => raw,
      bytes,
      new grpc.Metadata(),
      { deadline: Date.now() + 20_000 },
      (error, value) => {
        response = value ?? null;
        setImmediate(() => {
          client.close();
          const id = trailers?.get('verdict-decision-id')[0];
          resolve({ error: error as grpc.ServiceError | null, response, decisionId: typeof id === 'string' ? id : null });
        });
      },
    );
    unary.on('status', (status: grpc.StatusObject) => (trailers = status.metadata));
  });
}

const checkBytes = (request: Record<string, unknown>): Buffer => Buffer.from(CHECK.encode(CHECK.fromObject(request)).finish());
/** The shipped allowed request with `context` as its context attributes, encoded. */
const allowedWith = (context: Record<string, unknown>): Buffer => serviceDefinition('verdict.v1.Authorization').Check!.requestSerialize(shippedAllowedRequest(context));

describe('requests over the request limits are refused before they are decoded', () => {
  const shipped = useShippedServer();

  it('a gzip Check whose context holds a list of 260,000 nulls: refused naming the attributes and the list limit, recorded with its principal and action', async () => {
    const bytes = allowedWith({ junk: nulls(260_000) });
    expect(bytes.length).toBeGreaterThan(1_000_000);
    const { error, decisionId } = await call(shipped.server.grpcPort, 'Check', bytes, true);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toBe('context.attributes.junk: more than 1000 items, over the limit of 1000 (requestLimits.maxListLength)');
    const row = getDecision(shipped.db, decisionId!);
    expect(row).toMatchObject({ principalId: 'dana', action: 'read', resourceType: 'model', resourceId: 'fraud-v3', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    expect(JSON.stringify(row!.request)).not.toContain('junk');
    expect(await shippedAllowedCheck(shipped.server.grpcPort)).toBe('EFFECT_ALLOW');
  }, 30_000);

  it('a Check whose principal attributes hold 200 lists of 1,000 nulls (each list within the limit, 200,000 values): refused for the values', async () => {
    const lists = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`l${i}`, nulls(1000)]));
    const request = shippedAllowedRequest();
    (request['principal'] as Record<string, unknown>)['attributes'] = jsonToStruct(lists);
    const { error, decisionId } = await call(shipped.server.grpcPort, 'Check', serviceDefinition('verdict.v1.Authorization').Check!.requestSerialize(request));
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toBe('principal.attributes: more than 10000 values, over the limit (requestLimits.maxValues)');
    expect(getDecision(shipped.db, decisionId!)).toMatchObject({ principalId: 'dana', action: 'read', reason: 'DENIED_INVALID_REQUEST' });
  }, 30_000);

  it('a CheckBatch whose second item holds the list, its items interleaved with the principal on the wire: that item alone is refused, the others decided', async () => {
    const shippedRequest = shippedAllowedRequest();
    const item = { action: 'read', resource: shippedRequest['resource'] };
    const bomb = { action: 'read', resource: { type: 'model', id: 'fraud-v3', attributes: jsonToStruct({ org: 'acme', junk: nulls(200_000) }) } };
    // Concatenated messages are one message: item 0, the principal, item 1 (the list), item 2.
    const bytes = Buffer.concat([
      BATCH.encode(BATCH.fromObject({ items: [item] })).finish(),
      BATCH.encode(BATCH.fromObject({ principal: shippedRequest['principal'] })).finish(),
      BATCH.encode(BATCH.fromObject({ items: [bomb] })).finish(),
      BATCH.encode(BATCH.fromObject({ items: [item] })).finish(),
    ]);
    const { error, response } = await call(shipped.server.grpcPort, 'CheckBatch', bytes, true);
    expect(error).toBeNull();
    const results = (messageType('verdict.v1.CheckBatchResponse')!.toObject(messageType('verdict.v1.CheckBatchResponse')!.decode(response!), { enums: String }) as { results: { effect: string; reason: string; errors?: { message: string }[]; decisionId: string }[] }).results;
    expect(results.map((r) => `${r.effect} ${r.reason}`)).toEqual(['EFFECT_ALLOW REASON_ALLOWED_BY_RULE', 'EFFECT_DENY REASON_DENIED_INVALID_REQUEST', 'EFFECT_ALLOW REASON_ALLOWED_BY_RULE']);
    expect(results[1]!.errors?.[0]?.message).toBe('items[1].resource.attributes.junk: more than 1000 items, over the limit of 1000 (requestLimits.maxListLength)');
    expect(getDecision(shipped.db, results[1]!.decisionId)).toMatchObject({ principalId: 'dana', action: 'read', resourceId: 'fraud-v3', reason: 'DENIED_INVALID_REQUEST' });
  }, 30_000);

  it('a Check with 340,000 roles and a CheckBatch with 500,000 empty items: refused whole, naming the field', async () => {
    const roles = await call(shipped.server.grpcPort, 'Check', checkBytes({ principal: { id: 'dana', roles: Array.from({ length: 340_000 }, () => 'a') }, action: 'read', resource: { type: 'model', id: 'fraud-v3' } }), true);
    expect(roles.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(roles.error?.details).toBe('principal.roles: more than 1000 items, over the limit of 1000 (requestLimits.maxListLength)');
    expect(getDecision(shipped.db, roles.decisionId!)).toMatchObject({ principalId: '', reason: 'DENIED_INVALID_REQUEST' });

    const items = await call(shipped.server.grpcPort, 'CheckBatch', Buffer.from(BATCH.encode(BATCH.fromObject({ principal: { id: 'dana' }, items: Array.from({ length: 500_000 }, () => ({})) })).finish()), true);
    expect(items.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(items.error?.details).toBe('items: more than 1000 items, over the limit of 1000 per batch');
    expect(getDecision(shipped.db, items.decisionId!)).toMatchObject({ reason: 'DENIED_INVALID_REQUEST' });
  }, 30_000);

  it('requests at the limits are decided as before: a list of 1,000 and 10,000 values in all', async () => {
    const atLimit = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`l${i}`, nulls(1000)]));
    const { error, response } = await call(shipped.server.grpcPort, 'Check', allowedWith({ ...atLimit, last: nulls(980) }));
    expect(error).toBeNull();
    expect(messageType('verdict.v1.CheckResponse')!.toObject(messageType('verdict.v1.CheckResponse')!.decode(response!), { enums: String })['effect']).toBe('EFFECT_ALLOW');
  }, 30_000);
});
