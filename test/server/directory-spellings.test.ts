import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import { startVerdictWithPep, type GatewayVerdict } from '../gateway/support.js';
import { checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';

// An id the shipped directories list under another spelling (`LEO` for leo, a contractor
// the directory makes an analyst; `CREDIT-RISK-V2 ` for a restricted model) was decided
// as an unknown principal or model, without the directory's facts: over AuthZEN and
// gRPC, leo claiming data_scientist read the restricted model (ALLOW). Refused now in
// the decide core, on every transport, against a real `verdict serve`.

type Answer = { effect: string; reason: string; ruleIds: string[]; decisionId: string };

describe('ids the directories list under another spelling', () => {
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

  const claimed = { roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
  const grpcRead = (principalId: string, modelId: string) =>
    client.call<Answer>('Authorization', 'Check', checkRequest({ principal: { id: principalId, ...claimed }, action: 'read', resource: { type: 'model', id: modelId, attributes: { org: 'acme', classification: 'internal' } } }));
  const authzenRead = async (principalId: string, modelId: string) => {
    const response = await fetch(`http://127.0.0.1:${server.verdict.httpPort}/access/v1/evaluation`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${pepKey}` },
      body: JSON.stringify({ subject: { type: 'user', id: principalId, properties: { roles: claimed.roles, ...claimed.attributes } }, action: { name: 'read' }, resource: { type: 'model', id: modelId, properties: { org: 'acme', classification: 'internal' } } }),
    });
    return { status: response.status, body: (await response.json()) as { decision?: boolean; context?: { reason: string; decision_id: string } } };
  };

  it('over gRPC: leo as listed is denied the restricted model, and every other spelling is refused, recorded', async () => {
    expect(await grpcRead('leo', 'credit-risk-v2')).toMatchObject({ effect: 'EFFECT_DENY', ruleIds: ['restricted-models-employees-only'] });
    for (const [principal, model, sent, listed] of [
      ['LEO', 'credit-risk-v2', 'principal "LEO"', '"leo"'],
      ['leo ', 'credit-risk-v2', 'principal "leo "', '"leo"'],
      ['l\u200Beo', 'credit-risk-v2', 'principal "l\u200Beo"', '"leo"'],
      ['newcomer-1', 'CREDIT-RISK-V2', 'model "CREDIT-RISK-V2"', '"credit-risk-v2"'],
      ['newcomer-2', 'credit-risk-v2 ', 'model "credit-risk-v2 "', '"credit-risk-v2"'],
      ['newcomer-3', '\uFF43redit-risk-v2', 'model "\uFF43redit-risk-v2"', '"credit-risk-v2"'],
    ] as const) {
      const refusal = `the ${sent} differs from the directory's ${listed} only in case, spacing or Unicode form: whatever reads it leniently would act on ${listed}, decided without its directory facts; send the id as the directory spells it`;
      const error = await grpcRead(principal, model).then(
        () => null,
        (e: ServiceError) => e,
      );
      expect(error?.code, `${principal} ${model}`).toBe(3); // INVALID_ARGUMENT
      expect(error?.details).toBe(refusal);
      const [row] = queryDecisions(server.db, { principalId: principal, limit: 1 });
      expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', errors: [{ message: refusal }] });
    }
    // An id no entry folds to is decided as sent.
    expect(await grpcRead('newcomer', 'fresh-model')).toMatchObject({ effect: 'EFFECT_ALLOW' });
    expect(await grpcRead('newcomer', 'CREDIT-RISK-V2-next')).toMatchObject({ effect: 'EFFECT_ALLOW' });
  });

  it('over AuthZEN: the same refusals, a deny carrying the refusal', async () => {
    expect((await authzenRead('leo', 'credit-risk-v2')).body).toMatchObject({ decision: false, context: { reason: 'DENIED_BY_RULE' } });
    for (const [principal, model] of [['LEO', 'credit-risk-v2'], ['newcomer-4', 'CREDIT-RISK-V2'], ['newcomer-5', 'credit-risk-v2 ']] as const) {
      const answer = await authzenRead(principal, model);
      expect(answer.status, `${principal} ${model}`).toBe(200);
      expect(answer.body, `${principal} ${model}`).toMatchObject({ decision: false, context: { reason: 'DENIED_INVALID_REQUEST', errors: [{ message: expect.stringMatching(/differs from the directory's "(leo|credit-risk-v2)" only in case, spacing or Unicode form/) }] } });
      expect(getDecision(server.db, answer.body.context!.decision_id)).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    }
  });
});
