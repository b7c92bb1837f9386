import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../../src/authn/api-keys.js';
import { getDecision } from '../../src/decisions/query.js';
import { startGatewayVerdict, type GatewayVerdict } from './support.js';

// A PEP that asks verdict over HTTP (AuthZEN) reserves a cost up front (max_tokens)
// and says afterwards what the call really used, as a gRPC caller does with Settle:
// against a real `verdict serve`, with real API keys. Only listed PEPs settle: an end
// user's own key would settle its own budget.

const TOKENS = `
kind: rules
rules:
  - { id: anyone-generates, effect: allow, actions: [generate], resource: { type: llm } }
---
kind: limits
limits:
  - { id: tokens-per-day, actions: [generate], cost: context.attributes.max_tokens, rate: 10000/day }
`;

describe('AuthZEN: POST /access/v1/settle', () => {
  let server: GatewayVerdict;
  const pep: Record<'gateway' | 'other', string> = { gateway: '', other: '' };
  beforeAll(async () => {
    server = await startGatewayVerdict({ extraPolicies: { 'tokens.yaml': TOKENS }, config: { authzen: { peps: ['api-key:1001', 'api-key:1002'] } } });
    const store = ApiKeyStore.open(join(server.dir, 'keys.db'));
    // Numeric owners: `api-key:1001` and `api-key:1002` were once read as the host `api-key` on two ports, one caller.
    pep.gateway = store.create({ owner: '1001', name: 'the gateway settling costs' }).key;
    pep.other = store.create({ owner: '1002', name: 'another gateway' }).key;
    store.close();
  });
  afterAll(async () => {
    await server?.stop();
  });

  const post = async (path: string, body: unknown, key: string | null): Promise<{ status: number; body: Record<string, unknown> }> => {
    const response = await fetch(`http://127.0.0.1:${server.verdict.httpPort}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key === null ? {} : { authorization: `Bearer ${key}` }) },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const generate = async (maxTokens: number, who: 'dana' | 'ada' = 'dana'): Promise<{ decision: boolean; decisionId: string }> => {
    const answer = await post('/access/v1/evaluation', { subject: { type: 'user', id: who }, action: { name: 'generate' }, resource: { type: 'llm', id: 'chat' }, context: { max_tokens: maxTokens } }, pep.gateway);
    expect(answer.status).toBe(200);
    return { decision: answer.body['decision'] as boolean, decisionId: (answer.body['context'] as { decision_id: string }).decision_id };
  };
  const settle = (body: unknown, key: string | null = pep.gateway) => post('/access/v1/settle', body, key);

  it('gives back what a call reserved and did not use, once, to the caller that asked', async () => {
    const first = await generate(6000);
    expect(first.decision).toBe(true);
    const settled = await settle({ decision_id: first.decisionId, actual_units: 1000 });
    expect(settled).toEqual({ status: 200, body: { settle_id: expect.any(String), reserved_units: 6000, actual_units: 1000, limit_ids: ['tokens-per-day'], remaining: 9000 } });
    // 9,000 are left: without the settle only 4,000 would be, and this would be refused.
    const second = await generate(9000);
    expect(second.decision).toBe(true);
    // Only once.
    expect(await settle({ decision_id: first.decisionId, actual_units: 0 })).toMatchObject({ status: 409, body: { error: 'already settled', detail: `decision ${first.decisionId} is already settled` } });
    // Only by the caller that asked: another PEP cannot give dana's tokens back (nor learn the decision exists).
    const byOther = await settle({ decision_id: second.decisionId, actual_units: 0 }, pep.other);
    expect(byOther).toMatchObject({ status: 404, body: { error: 'not found', detail: expect.stringContaining("another caller's") } });
    expect(await settle({ decision_id: second.decisionId, actual_units: 9000 })).toMatchObject({ status: 200, body: { remaining: 0 } });
    // Every settle is a row: action settle on the decision's principal and resource, with what was settled.
    const row = getDecision(server.db, settled.body['settle_id'] as string)!;
    expect(row).toMatchObject({ principalId: 'dana', action: 'settle', resourceType: 'llm', resourceId: 'chat', caller: 'api-key:1001', effect: 'ALLOW', ruleIds: ['limit:tokens-per-day'] });
    expect(row.details).toMatchObject({ settle: { decisionId: first.decisionId, actualUnits: 1000 } });
    const refusedRow = getDecision(server.db, byOther.body['settle_id'] as string)!;
    expect(refusedRow).toMatchObject({ action: 'settle', caller: 'api-key:1002', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
  });

  it("refuses an end user's own key (not a listed PEP): 403, recorded, and the decision stays open for the PEP", async () => {
    const { decisionId, decision } = await generate(100, 'ada');
    expect(decision).toBe(true);
    const own = await settle({ decision_id: decisionId, actual_units: 0 }, server.keys.ada);
    expect(own).toMatchObject({ status: 403, body: { error: 'forbidden', detail: expect.stringMatching(/^NOT_A_PEP: api-key:ada may not settle; only a policy enforcement point listed in authzen\.peps/) } });
    expect(getDecision(server.db, own.body['settle_id'] as string)).toMatchObject({ action: 'settle', caller: 'api-key:ada', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    expect(await settle({ decision_id: decisionId, actual_units: 100 })).toMatchObject({ status: 200, body: { reserved_units: 100, actual_units: 100 } });
  });

  it('refuses what it cannot read with the member named, recorded; an unauthenticated settle is never read', async () => {
    // ada has budget left (dana spent hers above).
    const { decisionId, decision } = await generate(10, 'ada');
    expect(decision).toBe(true);
    for (const [body, detail] of [
      [{ decision_id: decisionId, actualUnits: 5 }, 'actualUnits: not a member of a settle; send decision_id and actual_units'],
      [{ decision_id: decisionId }, 'actual_units: missing; send the units the call really used (0 if it used none)'],
      [{ decision_id: decisionId, actual_units: null }, /^actual_units: expected a number from 0 to/],
      [{ decision_id: decisionId, actual_units: '5' }, /^actual_units: expected a number from 0 to/],
      [{ decision_id: decisionId, actual_units: -1 }, /^actual_units: expected a number from 0 to/],
      [{ decision_id: 'd1', actual_units: 5 }, /^decision_id: expected the decision id/],
      [[decisionId, 5], /^decision_id: expected the decision id/],
    ] as const) {
      const answer = await settle(body);
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.body['detail'], JSON.stringify(body)).toMatch(detail);
      expect(getDecision(server.db, answer.body['settle_id'] as string), JSON.stringify(body)).toMatchObject({ action: 'settle', effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    }
    // A member given twice is refused before anything is read (parsers disagree on which copy counts).
    const twice = await settle(`{"decision_id": "${decisionId}", "actual_units": 0, "actual_units": 9}`);
    expect(twice).toMatchObject({ status: 400, body: { detail: expect.stringContaining('actual_units: given twice') } });
    // An id no decision had.
    expect(await settle({ decision_id: '00000000-0000-4000-8000-000000000000', actual_units: 1 })).toMatchObject({ status: 404 });
    // No credential: 401, recorded as unauthenticated; the decision stays open for its caller.
    expect(await settle({ decision_id: decisionId, actual_units: 0 }, null)).toMatchObject({ status: 401, body: { error: 'unauthenticated' } });
    expect(await settle({ decision_id: decisionId, actual_units: 10 })).toMatchObject({ status: 200, body: { reserved_units: 10, actual_units: 10 } });
  });

  it('answers GET with 405 and is listed among the paths the HTTP port serves', async () => {
    const get = await fetch(`http://127.0.0.1:${server.verdict.httpPort}/access/v1/settle`, { headers: { authorization: `Bearer ${pep.gateway}` } });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
  });
});
