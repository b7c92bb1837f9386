import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import { ApiKeyStore } from '../../src/authn/api-keys.js';
import { join } from 'node:path';
import { PEP, startGatewayVerdict, type GatewayVerdict } from '../gateway/support.js';
import { checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';

// Three ways a deny used to become an allow on a real `verdict serve`, over gRPC and AuthZEN:
// - a value an attribute matcher cannot compare: `classification: ["secret"]` (a list) slipped past a deny
//   matching `classification: secret`, and `employment: ["contractor"]` passed an allow's
//   `notAnyOf: [contractor]`; a limit matching `tier: free` let `["free"]` through unlimited;
// - an action or resource type spelled otherwise than the policies name it: `DELETE` reached only the
//   rules for every action, so an admin's `*` allowed what `no-delete-production-models` denies;
// - a control character in an id: `leo\u0000` was decided as an unknown principal, without the
//   directory's facts for leo (a contractor), while code reading C strings acts on `leo`.

const DOCS = `kind: rules
rules:
  - id: docs-view
    effect: allow
    actions: [view]
    resource: { type: doc }
  - id: docs-no-view-secret
    effect: deny
    actions: [view]
    resource: { type: doc, attributes: { classification: secret } }
  - id: docs-no-view-team-x
    effect: deny
    actions: [view]
    resource: { type: doc, attributes: { owner: { glob: "team-x*" } } }
  - id: docs-employees-edit
    effect: allow
    actions: [edit]
    resource: { type: doc }
    principal: { attributes: { employment: { notAnyOf: [contractor] } } }
`;

const DOC_LIMITS = `kind: limits
limits:
  - id: docs-free-tier
    actions: [view]
    resource: { type: doc }
    principal: { attributes: { tier: free } }
    rate: 1/hour
    burst: 1
`;

type Answer = { effect: string; reason: string; ruleIds: string[]; decisionId: string };

describe('names spelled otherwise and values a matcher cannot compare', () => {
  let server: GatewayVerdict;
  let client: VerdictClient;
  let pepKey: string;
  beforeAll(async () => {
    server = await startGatewayVerdict({ config: { authzen: { peps: [PEP] } }, extraPolicies: { 'docs.yaml': DOCS, 'docs-limits.yaml': DOC_LIMITS } });
    const store = ApiKeyStore.open(join(server.dir, 'keys.db'));
    pepKey = store.create({ owner: 'model-gateway', name: 'the gateway asking AuthZEN' }).key;
    store.close();
    client = verdictClient(server.verdict.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  const check = (principal: { id: string; roles?: string[]; attributes?: Record<string, unknown> }, action: string, resource: { type: string; id: string; attributes?: Record<string, unknown> }, context: Record<string, unknown> = {}) =>
    client.call<Answer>('Authorization', 'Check', checkRequest({ principal, action, resource, context })).then(
      (answer) => ({ answer, error: null }),
      (error: ServiceError) => ({ answer: null, error }),
    );
  const authzen = async (subject: { id: string; properties: Record<string, unknown> }, action: string, resource: { type: string; id: string; properties?: Record<string, unknown> }, context: Record<string, unknown> = {}) => {
    const response = await fetch(`http://127.0.0.1:${server.verdict.httpPort}/access/v1/evaluation`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${pepKey}` },
      body: JSON.stringify({ subject: { type: 'user', ...subject }, action: { name: action }, resource, context }),
    });
    expect(response.status).toBe(200);
    return (await response.json()) as { decision: boolean; context: { reason: string; decision_id: string; errors?: { message: string }[] } };
  };
  const row = (decisionId: string) => getDecision(server.db, decisionId)!;

  it('a deny matcher that meets a list, a map or a boolean where it compares text denies by error, over gRPC and AuthZEN', async () => {
    const reader = { id: 'rita', roles: ['viewer'], attributes: {} };
    expect((await check(reader, 'view', { type: 'doc', id: 'd1', attributes: { classification: 'public' } })).answer).toMatchObject({ effect: 'EFFECT_ALLOW', ruleIds: ['docs-view'] });
    expect((await check(reader, 'view', { type: 'doc', id: 'd1', attributes: { classification: 'secret' } })).answer).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RULE', ruleIds: ['docs-no-view-secret'] });
    for (const [sent, kind] of [[['secret'], 'a list'], [{ level: 'secret' }, 'a map'], [true, 'a boolean'], [7, 'a number']] as const) {
      const { answer } = await check(reader, 'view', { type: 'doc', id: 'd1', attributes: { classification: sent } });
      expect(answer, JSON.stringify(sent)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR', ruleIds: ['docs-no-view-secret'] });
      expect(row(answer!.decisionId).errors[0]).toEqual({ ruleId: 'docs-no-view-secret', message: `resource.attributes.classification is ${kind}, where the rule compares it with text: the deny cannot tell whether it applies, so it denies` });
      const over = await authzen({ id: 'rita', properties: { roles: ['viewer'] } }, 'view', { type: 'doc', id: 'd1', properties: { classification: sent } });
      expect(over, JSON.stringify(sent)).toMatchObject({ decision: false, context: { reason: 'DENIED_BY_ERROR' } });
    }
    // A glob compares text only.
    expect((await check(reader, 'view', { type: 'doc', id: 'd2', attributes: { owner: 'team-y' } })).answer).toMatchObject({ effect: 'EFFECT_ALLOW' });
    const globbed = (await check(reader, 'view', { type: 'doc', id: 'd2', attributes: { owner: ['team-x-1'] } })).answer!;
    expect(globbed).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR', ruleIds: ['docs-no-view-team-x'] });
    expect(row(globbed.decisionId).errors[0]!.message).toBe('resource.attributes.owner is a list, where the rule matches it against a glob (text): the deny cannot tell whether it applies, so it denies');
  });

  it('a deny another part of which rules it out does not deny by error for a value it cannot compare', async () => {
    // docs-no-view-secret is for `view` only: an edit with a list classification is decided by docs-employees-edit.
    const { answer } = await check({ id: 'erin', attributes: { employment: 'employee' } }, 'edit', { type: 'doc', id: 'd3', attributes: { classification: ['secret'] } });
    expect(answer).toMatchObject({ effect: 'EFFECT_ALLOW', ruleIds: ['docs-employees-edit'] });
  });

  it("an allow's notAnyOf does not pass a value it cannot compare", async () => {
    const edit = (employment: unknown) => check({ id: 'erin', attributes: { employment } }, 'edit', { type: 'doc', id: 'd3' });
    expect((await edit('employee')).answer).toMatchObject({ effect: 'EFFECT_ALLOW', ruleIds: ['docs-employees-edit'] });
    expect((await edit('contractor')).answer).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_DEFAULT' });
    expect((await edit(['contractor'])).answer).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_DEFAULT' });
    expect((await edit({ kind: 'contractor' })).answer).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_DEFAULT' });
    const over = await authzen({ id: 'erin', properties: { employment: ['contractor'] } }, 'edit', { type: 'doc', id: 'd3' });
    expect(over).toMatchObject({ decision: false, context: { reason: 'DENIED_BY_DEFAULT' } });
  });

  it('a limit matching `tier: free` refuses a tier it cannot compare instead of letting it through unlimited', async () => {
    const view = (id: string, tier: unknown) => check({ id, attributes: { tier } }, 'view', { type: 'doc', id: 'd4', attributes: { classification: 'public' } });
    expect((await view('fay', 'free')).answer).toMatchObject({ effect: 'EFFECT_ALLOW' });
    expect((await view('fay', 'free')).answer).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_RATE_LIMIT' });
    for (let i = 0; i < 3; i++) {
      const { answer } = await view('gil', ['free']);
      expect(answer, `call ${i + 1}`).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_ERROR' });
      expect(row(answer!.decisionId).errors[0]!.message).toMatch(/^limit docs-free-tier: principal\.attributes\.tier is a list, where the rule compares it with text, so the limit cannot tell whether it applies/);
    }
    // A tier the limit does not name is not limited by it.
    expect((await view('hal', 'premium')).answer).toMatchObject({ effect: 'EFFECT_ALLOW' });
    expect((await view('hal', 'premium')).answer).toMatchObject({ effect: 'EFFECT_ALLOW' });
  });

  it('an action or resource type spelled otherwise than the policies name it is refused, recorded, over gRPC and AuthZEN', async () => {
    const admin = { id: 'zed', roles: ['admin'], attributes: { org: 'acme' } };
    const model = { type: 'model', id: 'credit-risk-v2' };
    const ticket = { ticket: 'INC-1' };
    expect((await check(admin, 'delete', model, ticket)).answer).toMatchObject({ effect: 'EFFECT_DENY', ruleIds: ['no-delete-production-models'] });
    for (const action of ['DELETE', 'Delete', 'delete ', 'delete\u200B', '\uFF44\uFF45\uFF4C\uFF45\uFF54\uFF45']) {
      const { error } = await check(admin, action, model, ticket);
      const refusal = `the action ${JSON.stringify(action)} differs from "delete", which the policies name, only in case, spacing or Unicode form: only the rules for every action would be asked, while whatever reads it leniently would act on "delete"; send the action as the policies spell it`;
      expect(error?.code, action).toBe(3); // INVALID_ARGUMENT
      expect(error?.details).toBe(refusal);
      const over = await authzen({ id: 'zed', properties: { roles: ['admin'], org: 'acme' } }, action, model, ticket);
      expect(over, action).toMatchObject({ decision: false, context: { reason: 'DENIED_INVALID_REQUEST' } });
      expect(row(over.context.decision_id)).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', action, errors: [{ message: refusal }] });
    }
    // An action no policy names is decided as sent (by the rules for every action).
    expect((await check(admin, 'retrain', model, ticket)).answer).toMatchObject({ effect: 'EFFECT_ALLOW', ruleIds: expect.arrayContaining(['admin-break-glass']) });
    const { error } = await check(admin, 'read', { type: 'MODEL', id: 'fraud-v3' }, ticket);
    expect(error?.code).toBe(3);
    expect(error?.details).toMatch(/^the resource type "MODEL" differs from "model", which the policies name, only in case, spacing or Unicode form: only the rules for every type would be asked/);
  });

  it('a control character in a principal id, action, resource type or id is refused, recorded', async () => {
    const claimed = { roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
    // leo is a contractor in the directory: as listed, the restricted model is denied him.
    expect((await check({ id: 'leo', ...claimed }, 'predict', { type: 'model', id: 'credit-risk-v2' })).answer).toMatchObject({ effect: 'EFFECT_DENY', ruleIds: ['restricted-models-employees-only'] });
    for (const [field, principal, action, type, id, code] of [
      ['principal.id', 'leo\u0000', 'predict', 'model', 'credit-risk-v2', 'U+0000'],
      ['principal.id', 'l\u001Feo', 'predict', 'model', 'credit-risk-v2', 'U+001F'],
      ['principal.id', 'leo\u0085', 'predict', 'model', 'credit-risk-v2', 'U+0085'],
      ['action', 'leo', 'predict\u0000', 'model', 'credit-risk-v2', 'U+0000'],
      ['resource.type', 'leo', 'predict', 'model\t', 'credit-risk-v2', 'U+0009'],
      ['resource.id', 'leo', 'predict', 'model', 'credit-risk-v2\u007F', 'U+007F'],
    ] as const) {
      const { error } = await check({ id: principal, ...claimed }, action, { type, id });
      expect(error?.code, `${field} ${JSON.stringify(principal + action + type + id)}`).toBe(3);
      expect(error?.details).toMatch(new RegExp(`^${field.replace('.', '\\.')} ".*" holds a control character \\(${code.replace('+', '\\+')}\\): whatever reads it as a C string`));
    }
    const over = await authzen({ id: 'leo\u0000', properties: { roles: claimed.roles, ...claimed.attributes } }, 'predict', { type: 'model', id: 'credit-risk-v2' });
    expect(over).toMatchObject({ decision: false, context: { reason: 'DENIED_INVALID_REQUEST' } });
    expect(queryDecisions(server.db, { principalId: 'leo\u0000', limit: 10 }).every((r) => r.reason === 'DENIED_INVALID_REQUEST')).toBe(true);
  });
});
