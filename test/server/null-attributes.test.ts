import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision } from '../../src/decisions/query.js';
import { startVerdictWithPep, type GatewayVerdict } from '../gateway/support.js';
import { checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';

// An attribute sent as null is unknown, as an absent one is. The shipped deny
// `resource.attributes.env == "production"` fails closed on an absent env; with
// `env: null` it was simply false, and an admin's delete was allowed. Against a real
// `verdict serve` on the shipped policies, over gRPC and AuthZEN.

describe('attributes sent as null', () => {
  let server: GatewayVerdict;
  let client: VerdictClient;
  let pepKey: string;
  beforeAll(async () => {
    ({ verdict: server, pepKey } = await startVerdictWithPep());
    client = verdictClient(server.verdict.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  const ada = { id: 'ada', roles: ['admin'], attributes: { org: 'acme' } };
  const check = (resource: Record<string, unknown>, context: Record<string, unknown> = {}) =>
    client.call<{ effect: string; reason: string; ruleIds: string[]; decisionId: string }>('Authorization', 'Check', checkRequest({ principal: ada, action: 'delete', resource: { type: 'model', id: 'fraud-v3', attributes: resource }, context }));

  it('are decided as absent over gRPC: a delete of a model whose env is null fails closed, and the row holds no null', async () => {
    const absent = await check({ org: 'acme' });
    expect(absent).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR', ruleIds: ['no-delete-production-models'] });
    const nulled = await check({ org: 'acme', env: null, meta: { env: null, team: 'risk' } }, { ticket: null });
    expect(nulled).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR', ruleIds: ['no-delete-production-models'] });
    const row = getDecision(server.db, nulled.decisionId)!;
    expect(row.request.resource.attributes).toEqual({ org: 'acme', meta: { team: 'risk' } });
    expect(row.request.context.attributes).toEqual({});
    // A list keeps its items as sent.
    const listed = await check({ org: 'acme', env: 'staging', tags: [null, 'x'] });
    expect(listed.effect).toBe('EFFECT_ALLOW');
    expect(getDecision(server.db, listed.decisionId)!.request.resource.attributes).toEqual({ org: 'acme', env: 'staging', tags: [null, 'x'] });
  });

  it("keeps the directory's facts for an attribute sent as null: credit-risk-v2 is production", async () => {
    const answer = await client.call<{ effect: string; ruleIds: string[] }>(
      'Authorization',
      'Check',
      checkRequest({ principal: ada, action: 'delete', resource: { type: 'model', id: 'credit-risk-v2', attributes: { env: null } } }),
    );
    expect(answer).toMatchObject({ effect: 'EFFECT_DENY', ruleIds: ['no-delete-production-models'] });
  });

  it('are decided as absent over AuthZEN', async () => {
    const response = await fetch(`http://127.0.0.1:${server.verdict.httpPort}/access/v1/evaluation`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${pepKey}` },
      body: JSON.stringify({ subject: { type: 'user', id: 'ada', properties: { roles: ['admin'], org: 'acme' } }, action: { name: 'delete' }, resource: { type: 'model', id: 'fraud-v3', properties: { org: 'acme', env: null } } }),
    });
    expect(response.status).toBe(200);
    const answer = (await response.json()) as { decision: boolean; context: { reason: string; rule_ids: string[] } };
    expect(answer).toMatchObject({ decision: false, context: { reason: 'DENIED_BY_ERROR', rule_ids: ['no-delete-production-models'] } });
  });
});
