// Bytes that are not a protobuf message, sent over a real HTTP/2 gRPC call (verdict's
// Authorization service or Envoy's ext_authz), are bad
// input like any other: answered INVALID_ARGUMENT (not INTERNAL) and recorded.
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { checkRequest, useShippedServer, verdictClient } from '../helpers/verdict-process.js';

/** Each fails protobuf decoding: an invalid wire type, a length past the end, a truncated varint, a group never closed. */
const GARBAGE: readonly (readonly [string, Buffer])[] = [
  ['invalid wire type', Buffer.from([0x0f, 0x01, 0x02])],
  ['length past the end', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x41])],
  ['truncated varint', Buffer.from([0x08, 0xff, 0xff])],
  ['random bytes', Buffer.from('fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0', 'hex')],
];

function sendRaw(port: number, method: 'Check' | 'CheckBatch' | 'envoy', bytes: Buffer): Promise<{ error: grpc.ServiceError | null; trailers: grpc.Metadata | null }> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | null = null;
    const call = client.makeUnaryRequest<Buffer, Buffer>(
      method === 'envoy' ? '/envoy.service.auth.v3.Authorization/Check' : `/verdict.v1.Authorization/${method}`,
      (raw) => raw,
      (raw) => raw,
      bytes,
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (error) => {
        client.close();
        // The status (and its trailers) may arrive after the callback; wait for it.
        setImmediate(() => resolve({ error: error as grpc.ServiceError | null, trailers }));
      },
    );
    call.on('status', (status: grpc.StatusObject) => (trailers = status.metadata));
  });
}

describe('malformed protobuf on Check, CheckBatch and Envoy ext_authz Check', () => {
  const shipped = useShippedServer();

  it.each(['Check', 'CheckBatch'] as const)('%s: answered INVALID_ARGUMENT naming the message type, recorded as an invalid request', async (method) => {
    for (const [what, bytes] of GARBAGE) {
      const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
      const { error, trailers } = await sendRaw(shipped.server.grpcPort, method, bytes);
      expect(error?.code, what).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error?.details, what).toContain(`are not a valid verdict.v1.${method}Request protobuf message`);
      const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
      expect(recorded.length, what).toBe(before + 1);
      expect(recorded[0]!.effect).toBe('DENY');
      expect(recorded[0]!.errors[0]!.message).toContain(`not a valid verdict.v1.${method}Request`);
      expect(trailers?.get('verdict-decision-id')[0]).toBe(recorded[0]!.decisionId);
    }
  });

  it('Envoy ext_authz Check: answered INVALID_ARGUMENT (not INTERNAL), recorded as an invalid request', async () => {
    for (const [what, bytes] of GARBAGE) {
      const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
      const { error, trailers } = await sendRaw(shipped.server.grpcPort, 'envoy', bytes);
      expect(error?.code, what).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error?.details, what).toContain('are not a valid envoy.service.auth.v3.CheckRequest protobuf message');
      const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
      expect(recorded.length, what).toBe(before + 1);
      expect(recorded[0]!.effect).toBe('DENY');
      expect(recorded[0]!.errors[0]!.message).toContain('not a valid envoy.service.auth.v3.CheckRequest');
      expect(trailers?.get('verdict-decision-id')[0]).toBe(recorded[0]!.decisionId);
    }
  });

  it('keeps serving valid checks afterwards', async () => {
    const client = verdictClient(shipped.server.grpcPort);
    try {
      const ok = await client.call<{ effect: string }>('Authorization', 'Check', checkRequest({ principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } }, action: 'read', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } } }));
      expect(ok.effect).toBe('EFFECT_ALLOW');
    } finally {
      client.close();
    }
  });
});
