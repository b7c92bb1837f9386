import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision } from '../../src/decisions/query.js';
import { startGatewayVerdict, type GatewayVerdict } from '../gateway/support.js';
import { checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';

// CEL answers `==` and `in` with false for values of different types, so the shipped deny
// `resource.attributes.env == "production"` was lifted by sending `env: ["production"]`,
// and `classification in ["restricted", "secret"]` by `classification: ["restricted"]`:
// both allowed. Against a real `verdict serve` on the shipped policies (no schema), such a
// comparison is an error, and the deny fails closed.

type Answer = { effect: string; reason: string; ruleIds: string[]; decisionId: string };

describe('attributes of another type than a condition compares', () => {
  let server: GatewayVerdict;
  let client: VerdictClient;
  beforeAll(async () => {
    server = await startGatewayVerdict();
    client = verdictClient(server.verdict.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  const breakGlass = (env: unknown) =>
    client.call<Answer>('Authorization', 'Check', checkRequest({ principal: { id: 'ops-bot', roles: ['admin'] }, action: 'delete', resource: { type: 'model', id: 'new-model', attributes: { env } }, context: { ticket: 'INC-1' } }));
  const contractorPredict = (classification: unknown) =>
    client.call<Answer>('Authorization', 'Check', checkRequest({ principal: { id: 'c1', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'contractor' } }, action: 'predict', resource: { type: 'model', id: 'other', attributes: { org: 'acme', classification } } }));

  it('a production delete is denied however env is wrapped', async () => {
    expect(await breakGlass('production')).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RULE', ruleIds: ['no-delete-production-models'] });
    for (const env of [['production'], { name: 'production' }, 1, true, [['production']]]) {
      const answer = await breakGlass(env);
      expect(answer, JSON.stringify(env)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR', ruleIds: ['no-delete-production-models'] });
      const row = getDecision(server.db, answer.decisionId)!;
      expect(row.errors[0]?.message, JSON.stringify(env)).toMatch(/^cannot compare a (list|map|number|bool) with a string \(==\): the request holds another type/);
    }
    // The types the policy expects still decide as before.
    expect(await breakGlass('staging')).toMatchObject({ effect: 'EFFECT_ALLOW' });
  });

  it('a contractor is kept off a restricted model however the classification is wrapped', async () => {
    expect(await contractorPredict('restricted')).toMatchObject({ effect: 'EFFECT_DENY', ruleIds: ['restricted-models-employees-only'] });
    for (const classification of [['restricted'], { restricted: true }, 7]) {
      expect(await contractorPredict(classification), JSON.stringify(classification)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR', ruleIds: ['restricted-models-employees-only'] });
    }
    expect(await contractorPredict('internal')).toMatchObject({ effect: 'EFFECT_ALLOW' });
  });
});
