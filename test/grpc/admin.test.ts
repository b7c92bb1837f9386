import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DecisionFilters } from '../../src/decisions/query.js';
import { clientFor, sampleRecord, startServer, unary, type Harness } from './support.js';

describe('verdict.v1.Admin', () => {
  let harness: Harness;
  let client: grpc.Client;
  const queries: DecisionFilters[] = [];

  beforeAll(async () => {
    harness = await startServer({
      listDecisions: (query) => {
        queries.push(query.read().filters);
        return { decisions: [sampleRecord], nextPageToken: 'next-page' };
      },
    });
    client = clientFor('verdict.v1.Admin', harness.address);
  });
  afterAll(async () => {
    client.close();
    await harness.close();
  });

  it('reports policy status and reload outcomes', async () => {
    const status = await unary(client, 'GetPolicyStatus', {});
    expect(status.response).toEqual({
      version: 'v-test',
      loadedAt: { seconds: '1700000000', nanos: 123_000_000 },
      ruleCount: 7,
      lastReloadError: '',
      lastReloadAttemptAt: null,
      lastReloadLongestBlockMs: 0,
      // No shadow set: its fields are empty.
      shadowVersion: '',
      shadowRuleCount: 0,
      shadowLastReloadError: '',
      // Rate limits' state (a handler without limits reports none).
      loadFactors: [],
      limitBackend: '',
      limitBackendHealthy: false,
      // A handler that names no replica reports none.
      replicaId: '',
    });
    const reload = await unary<{ reloaded: boolean; error: string; status: { lastReloadError: string } }>(client, 'ReloadPolicies', {});
    expect(reload.response).toMatchObject({ reloaded: false, error: expect.stringContaining('rules.yaml:3:5'), status: { lastReloadError: 'broken', lastReloadLongestBlockMs: 2.5 } });
  });

  it('gets a decision by id, NOT_FOUND for an unknown one, INVALID_ARGUMENT for none', async () => {
    const found = await unary(client, 'GetDecision', { decisionId: 'd-1' });
    expect(found.error).toBeNull();
    expect(found.response).toEqual({
      decisionId: 'd-1',
      time: { seconds: String(Math.floor(Date.UTC(2025, 0, 2, 3, 4, 5) / 1000)), nanos: 678_000_000 },
      caller: '127.0.0.1:5555',
      requestId: 'r-1',
      principalId: 'alice',
      action: 'read',
      resourceType: 'model',
      resourceId: 'm1',
      effect: 'EFFECT_ALLOW',
      reason: 'REASON_ALLOWED_BY_RULE',
      ruleIds: ['readers'],
      errors: [{ ruleId: 'cond', message: 'no such attribute' }],
      policyVersion: 'v-test',
      request: expect.objectContaining({ fields: expect.objectContaining({ principal: expect.anything() }) }),
      latencyUs: '42',
    });
    type V = { structValue: { fields: Record<string, V> }; listValue: { values: { kind: string }[] } };
    const request = (found.response as { request: { fields: Record<string, V> } }).request;
    const tags = request.fields['principal']!.structValue.fields['attributes']!.structValue.fields['tags']!;
    expect(tags.listValue.values.map((v: { kind: string }) => v.kind)).toEqual(['stringValue', 'nullValue', 'boolValue']);

    const missing = await unary(client, 'GetDecision', { decisionId: 'nope' });
    expect(missing.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.error?.details).toBe('no decision with id nope');
    const none = await unary(client, 'GetDecision', {});
    expect(none.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(none.error?.details).toBe('decision_id is required');
  });

  it("lists decisions with its filters converted to the log's", async () => {
    const { error, response } = await unary<{ decisions: unknown[] }>(client, 'ListDecisions', {
      principalId: 'alice',
      effect: 'EFFECT_ALLOW',
      since: { seconds: 1_700_000_000, nanos: 0 },
      limit: 10,
    });
    expect(error).toBeNull();
    expect(response?.decisions).toHaveLength(1);
    expect((response as { nextPageToken?: string }).nextPageToken).toBe('next-page');
    expect(queries.at(-1)).toEqual({ principalId: 'alice', effect: 'ALLOW', since: 1_700_000_000_000, limit: 10 });
    const bad = await unary(client, 'ListDecisions', { until: { seconds: 1, nanos: -5 } });
    expect(bad.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.error?.details).toBe('until.nanos: must be between 0 and 999999999');
  });
});
