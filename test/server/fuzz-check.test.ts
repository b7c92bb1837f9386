// The fuzzing gate for the gRPC surface: random well-formed and malformed Check
// messages against a real server never crash it, never allow an invalid request, and
// leave a decision log that verifies.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision } from '../../src/decisions/query.js';
import { ROOT, healthStatus, useShippedServer, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';

const SEED = Number(process.env.VERDICT_FUZZ_SEED ?? 20261204);

/** A Struct value of random shape: nulls, numbers, strings, bools, lists and nested structs. */
const valueArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.record({ nullValue: fc.constant('NULL_VALUE') }),
    fc.record({ numberValue: fc.double({ noNaN: false }) }),
    fc.record({ stringValue: fc.string({ unit: 'binary', maxLength: 40 }) }),
    fc.record({ boolValue: fc.boolean() }),
    fc.record({ listValue: fc.record({ values: fc.array(tie('value'), { maxLength: 4 }) }) }),
    fc.record({ structValue: tie('struct') }),
  ),
  struct: fc.record({ fields: fc.dictionary(fc.string({ unit: 'binary', maxLength: 12 }), tie('value'), { maxKeys: 4 }) }),
})).value;
const structArb = fc.record({ fields: fc.dictionary(fc.string({ unit: 'binary', maxLength: 12 }), valueArb, { maxKeys: 5 }) });
const idArb = fc.oneof(fc.constantFrom('', 'dana', 'ada', 'fraud-v3', '*', 'dana\u0000', 'da\u200Bna'), fc.string({ unit: 'binary', maxLength: 20 }));

const checkArb = fc.record({
  principal: fc.option(fc.record({ id: idArb, roles: fc.array(fc.oneof(fc.constantFrom('', 'admin', 'data_scientist', 'viewer'), fc.string({ maxLength: 10 })), { maxLength: 4 }), attributes: fc.option(structArb, { nil: undefined }) }), { nil: undefined }),
  action: fc.oneof(fc.constantFrom('', 'predict', 'read', 'delete', 'retrain'), fc.string({ unit: 'binary', maxLength: 12 })),
  resource: fc.option(fc.record({ type: fc.oneof(fc.constantFrom('', 'model', 'dataset'), fc.string({ maxLength: 8 })), id: idArb, attributes: fc.option(structArb, { nil: undefined }) }), { nil: undefined }),
  context: fc.option(fc.record({ attributes: structArb }), { nil: undefined }),
  requestId: fc.string({ maxLength: 16 }),
});

function sendBytes(port: number, bytes: Uint8Array): Promise<grpc.ServiceError | null> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>('/verdict.v1.Authorization/Check', (raw) => raw, (raw) => raw, Buffer.from(bytes), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (error) => {
      client.close();
      resolve(error as grpc.ServiceError | null);
    });
  });
}

describe('fuzzing gate: random Check messages', () => {
  const shipped = useShippedServer();
  let client: VerdictClient;

  beforeAll(() => {
    client = verdictClient(shipped.server.grpcPort);
  });
  afterAll(() => {
    client?.close();
  });

  it('never allows an invalid request, and records every answer as given', async () => {
    await fc.assert(
      fc.asyncProperty(checkArb, async (message) => {
        const invalid = !message.principal || message.principal.id === '' || message.principal.roles.includes('') || message.action === '' || !message.resource || message.resource.type === '';
        const outcome = await client.call<{ effect: string; decisionId: string }>('Authorization', 'Check', message).then(
          (response) => ({ response, error: null }),
          (error: grpc.ServiceError) => ({ response: null, error }),
        );
        if (outcome.error) {
          // Bad input is INVALID_ARGUMENT, never a crash (INTERNAL) or an unavailable log.
          expect(outcome.error.code, outcome.error.details).toBe(grpc.status.INVALID_ARGUMENT);
          return;
        }
        expect(invalid, 'an invalid request was answered as if valid').toBe(false);
        const row = getDecision(shipped.db, outcome.response!.decisionId);
        expect(row?.effect).toBe(outcome.response!.effect === 'EFFECT_ALLOW' ? 'ALLOW' : 'DENY');
      }),
      { numRuns: 300, seed: SEED },
    );
  });

  it('answers random bytes with INVALID_ARGUMENT or a decision, and keeps serving', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (bytes) => {
        const error = await sendBytes(shipped.server.grpcPort, bytes);
        // Some byte strings are valid messages (unknown fields are skipped); those are decided like any other.
        if (error) expect([grpc.status.INVALID_ARGUMENT], error.details).toContain(error.code);
      }),
      { numRuns: 200, seed: SEED },
    );
    expect(await healthStatus(shipped.server.grpcPort, 'verdict.v1.Authorization')).toBe('SERVING');
  });

  it('leaves a decision log that verifies', () => {
    const verified = spawnSync(process.execPath, [join(ROOT, 'bin', 'verdict.js'), 'audit', 'verify', '--db', shipped.db], { cwd: ROOT, encoding: 'utf8' });
    expect(verified.status, verified.stdout + verified.stderr).toBe(0);
  });
});
