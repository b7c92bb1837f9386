import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { ApiKeyStore } from '../../src/authn/api-keys.js';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import * as schema from '../fixtures/authzen/schemas.js';
import { loadValid } from '../helpers/policies.js';
import { ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

// The AuthZEN Authorization API 1.0 of the real server, asked over HTTP the way a
// policy enforcement point asks, every request and response checked against the
// specification's schemas (test/fixtures/authzen/schemas.ts).

const TODO_POLICIES = join(ROOT, 'test', 'fixtures', 'authzen', 'todo');

// The Todo scenario: users with roles, todos with owners.
const USERS = {
  rick: ['admin'],
  morty: ['editor'],
  summer: ['editor'],
  beth: ['viewer'],
  jerry: [],
} as const satisfies Record<string, readonly string[]>;
type User = keyof typeof USERS;
const TODOS = { t1: 'morty', t2: 'beth', t3: 'rick' } as const;
type Todo = keyof typeof TODOS;
const ACTIONS = ['read', 'create', 'update', 'delete'] as const;
type Action = (typeof ACTIONS)[number];

/** What the scenario says: read for everyone, create for editors and admins, update and delete for owners and admins. */
function expected(user: User, action: Action, todo: Todo): boolean {
  const roles: readonly string[] = USERS[user];
  switch (action) {
    case 'read':
      return true;
    case 'create':
      return roles.includes('editor') || roles.includes('admin');
    case 'update':
    case 'delete':
      return TODOS[todo] === user || roles.includes('admin');
  }
}

const subjectOf = (user: User) => ({ type: 'user', id: user, properties: { roles: [...USERS[user]] } });
const todoOf = (todo: Todo) => ({ type: 'todo', id: todo, properties: { ownerID: TODOS[todo] } });

let verdict: VerdictProcess;
let dir: string;
let db: string;
let base: string;
let pepKey: string;
/** A second PEP's key: another caller, allowed the same questions. */
let otherPepKey: string;
let requestCounter = 0;

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'verdict-authzen-'));
  const keysDb = join(dir, 'keys.db');
  const store = ApiKeyStore.open(keysDb);
  pepKey = store.create({ owner: 'todo-app', name: 'the todo app PEP', roles: [], attributes: {} }).key;
  otherPepKey = store.create({ owner: 'todo-audit', name: 'another PEP', roles: [], attributes: {} }).key;
  store.close();
  const config = join(dir, 'verdict.yaml');
  writeFileSync(config, stringify({ authn: { apiKeys: { db: keysDb } }, authzen: { peps: ['api-key:todo-app', 'api-key:todo-audit'] }, logLevel: 'warn', maxMessageBytes: 64 * 1024 }));
  db = join(dir, 'decisions.db');
  verdict = await startVerdict({ policies: TODO_POLICIES, db, args: ['--config', config, '--no-watch', '--log-level', 'info'] });
  base = `http://127.0.0.1:${verdict.httpPort}`;
});
afterAll(async () => {
  await verdict?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Sent {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Headers;
  readonly requestId: string;
}

/** POSTs a body (a value, sent as JSON, or raw text) with the PEP's key and a fresh X-Request-ID. */
async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Sent> {
  const requestId = `authzen-test-${++requestCounter}`;
  const response = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${pepKey}`, 'x-request-id': requestId, ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? null : (JSON.parse(text) as unknown), headers: response.headers, requestId };
}

/** Checks a value against a schema, failing the test with zod's account of the difference. */
function valid<S extends z.ZodType>(s: S, value: unknown): z.infer<S> {
  const parsed = s.safeParse(value);
  if (!parsed.success) throw new Error(`does not match the AuthZEN schema: ${parsed.error.message}\n${JSON.stringify(value)}`);
  return parsed.data;
}

async function evaluate(request: z.infer<typeof schema.evaluationRequest>): Promise<z.infer<typeof schema.evaluationResponse>> {
  valid(schema.evaluationRequest, request);
  const sent = await post('/access/v1/evaluation', request);
  expect(sent.status, JSON.stringify(sent.body)).toBe(200);
  const response = valid(schema.evaluationResponse, sent.body);
  valid(schema.verdictContext, response.context);
  return response;
}

async function evaluations(request: z.infer<typeof schema.evaluationsRequest>): Promise<{ decisions: boolean[]; contexts: z.infer<typeof schema.verdictContext>[]; requestId: string }> {
  valid(schema.evaluationsRequest, request);
  const sent = await post('/access/v1/evaluations', request);
  expect(sent.status, JSON.stringify(sent.body)).toBe(200);
  const response = valid(schema.evaluationsResponse, sent.body);
  const contexts = response.evaluations.map((e) => valid(schema.verdictContext, e.context));
  return { decisions: response.evaluations.map((e) => e.decision), contexts, requestId: sent.requestId };
}

/** The decision log's rows of one call. */
function rowsOf(requestId: string) {
  return queryDecisions(db, { limit: 1000 }).filter((row) => row.requestId === requestId);
}

describe('the Todo scenario over POST /access/v1/evaluation', () => {
  const cases = (Object.keys(USERS) as User[]).flatMap((user) =>
    ACTIONS.flatMap((action) => (Object.keys(TODOS) as Todo[]).map((todo) => [user, action, todo, expected(user, action, todo)] as const)),
  );
  it.each(cases)('%s %s %s → %s', async (user, action, todo, allowed) => {
    const response = await evaluate({ subject: subjectOf(user), action: { name: action }, resource: todoOf(todo) });
    expect(response.decision).toBe(allowed);
    const row = getDecision(db, response.context!.decision_id as string)!;
    expect(row).toMatchObject({ principalId: user, action, resourceType: 'todo', resourceId: todo, effect: allowed ? 'ALLOW' : 'DENY', caller: expect.stringMatching(/^api-key:todo-app$/) });
    expect(row.request.principal).toEqual({ roles: [...USERS[user]], attributes: { type: 'user' } });
    expect(row.request.resource).toEqual({ attributes: { ownerID: TODOS[todo] } });
  });

  it('names the deciding rules, the policy version and the decision id in the context', async () => {
    const response = await evaluate({ subject: subjectOf('morty'), action: { name: 'delete' }, resource: todoOf('t1'), context: { time: '2026-12-04T06:00:00Z' } });
    expect(response.context).toMatchObject({ reason: 'ALLOWED_BY_RULE', rule_ids: ['owners-change-their-todos'], errors: [], policy_version: loadValid(TODO_POLICIES).policySet.version });
    expect(response.context!.id).toBe(response.context!.decision_id);
    expect(getDecision(db, response.context!.id as string)!.request.context).toEqual({ attributes: { time: '2026-12-04T06:00:00Z' } });
    const denied = await evaluate({ subject: subjectOf('jerry'), action: { name: 'create' }, resource: todoOf('t1') });
    expect(denied).toMatchObject({ decision: false, context: { reason: 'DENIED_BY_DEFAULT', rule_ids: [] } });
    expect((denied.context!.reason_admin as { en: string }).en).toMatch(/^DENIED_BY_DEFAULT/);
  });
});

describe('the Todo scenario over POST /access/v1/evaluations', () => {
  // beth (a viewer who owns t2): read t1 yes, create no, update t2 yes, delete t1 no, read t3 yes.
  const bethsDay = {
    subject: subjectOf('beth'),
    evaluations: [
      { action: { name: 'read' }, resource: todoOf('t1') },
      { action: { name: 'create' }, resource: todoOf('t1') },
      { action: { name: 'update' }, resource: todoOf('t2') },
      { action: { name: 'delete' }, resource: todoOf('t1') },
      { action: { name: 'read' }, resource: todoOf('t3') },
    ],
  };

  it('execute_all (the default): every evaluation, in order, each recorded', async () => {
    for (const options of [undefined, { evaluations_semantic: 'execute_all' as const }]) {
      const { decisions, contexts, requestId } = await evaluations({ ...bethsDay, ...(options ? { options } : {}) });
      expect(decisions).toEqual([true, false, true, false, true]);
      const rows = rowsOf(requestId);
      expect(rows.map((r) => r.decisionId).sort()).toEqual(contexts.map((c) => c.decision_id).sort());
      expect(rows.map((r) => `${r.action}:${r.resourceId}:${r.effect}`).sort()).toEqual(['create:t1:DENY', 'delete:t1:DENY', 'read:t1:ALLOW', 'read:t3:ALLOW', 'update:t2:ALLOW']);
    }
  });

  it('deny_on_first_deny: stops after the first deny; later evaluations are neither answered nor recorded', async () => {
    const { decisions, requestId } = await evaluations({ ...bethsDay, options: { evaluations_semantic: 'deny_on_first_deny' } });
    expect(decisions).toEqual([true, false]);
    expect(rowsOf(requestId).map((r) => `${r.action}:${r.resourceId}`).sort()).toEqual(['create:t1', 'read:t1']);
  });

  it('permit_on_first_permit: stops after the first permit', async () => {
    const { decisions, requestId } = await evaluations({
      subject: subjectOf('morty'),
      options: { evaluations_semantic: 'permit_on_first_permit' },
      evaluations: [
        { action: { name: 'delete' }, resource: todoOf('t2') },
        { action: { name: 'update' }, resource: todoOf('t3') },
        { action: { name: 'update' }, resource: todoOf('t1') },
        { action: { name: 'read' }, resource: todoOf('t1') },
      ],
    });
    expect(decisions).toEqual([false, false, true]);
    expect(rowsOf(requestId)).toHaveLength(3);
  });

  it('all three semantics agree with the single endpoint on the whole scenario', async () => {
    for (const user of Object.keys(USERS) as User[]) {
      const items = ACTIONS.flatMap((action) => (Object.keys(TODOS) as Todo[]).map((todo) => ({ action, todo })));
      const want = items.map(({ action, todo }) => expected(user, action, todo));
      const request = { subject: subjectOf(user), evaluations: items.map(({ action, todo }) => ({ action: { name: action }, resource: todoOf(todo) })) };
      expect((await evaluations({ ...request, options: { evaluations_semantic: 'execute_all' } })).decisions).toEqual(want);
      const firstDeny = want.indexOf(false);
      expect((await evaluations({ ...request, options: { evaluations_semantic: 'deny_on_first_deny' } })).decisions).toEqual(firstDeny === -1 ? want : want.slice(0, firstDeny + 1));
      const firstPermit = want.indexOf(true);
      expect((await evaluations({ ...request, options: { evaluations_semantic: 'permit_on_first_permit' } })).decisions).toEqual(firstPermit === -1 ? want : want.slice(0, firstPermit + 1));
    }
  });

  it('takes defaults from the top level and lets an item override any of them whole', async () => {
    const { decisions, requestId } = await evaluations({
      subject: subjectOf('beth'),
      action: { name: 'update' },
      resource: todoOf('t2'),
      context: { channel: 'web' },
      evaluations: [
        {},
        { subject: subjectOf('morty') },
        { action: { name: 'read' }, subject: subjectOf('jerry') },
        { resource: todoOf('t1'), context: { channel: 'cli' } },
      ],
    });
    expect(decisions).toEqual([true, false, true, false]);
    const rows = rowsOf(requestId);
    expect(rows.map((r) => `${r.principalId}:${r.action}:${r.resourceId}:${JSON.stringify(r.request.context.attributes)}`).sort()).toEqual(
      ['beth:update:t2:{"channel":"web"}', 'morty:update:t2:{"channel":"web"}', 'jerry:read:t2:{"channel":"web"}', 'beth:update:t1:{"channel":"cli"}'].sort(),
    );
  });

  it('without an evaluations array, is one evaluation answered as one decision', async () => {
    const sent = await post('/access/v1/evaluations', { subject: subjectOf('rick'), action: { name: 'delete' }, resource: todoOf('t1') });
    expect(sent.status).toBe(200);
    expect(valid(schema.evaluationResponse, sent.body).decision).toBe(true);
  });

  it('answers an item that cannot be read in its place (decision false, with the error), and records it', async () => {
    const sent = await post('/access/v1/evaluations', {
      subject: subjectOf('rick'),
      evaluations: [{ action: { name: 'read' }, resource: todoOf('t1') }, { action: { name: 'read' } }, { action: { name: 'read' }, resource: { type: 'todo', id: 7 } }],
    });
    expect(sent.status).toBe(200);
    const response = valid(schema.evaluationsResponse, sent.body);
    expect(response.evaluations.map((e) => e.decision)).toEqual([true, false, false]);
    expect(response.evaluations[1]!.context).toMatchObject({ reason: 'DENIED_INVALID_REQUEST', error: { status: 400, message: 'resource is required' } });
    expect(response.evaluations[2]!.context).toMatchObject({ error: { status: 400, message: 'evaluations[2].resource.id: must be a string' } });
    const rows = rowsOf(sent.requestId);
    expect(rows).toHaveLength(3);
    expect(rows.filter((r) => r.reason === 'DENIED_INVALID_REQUEST')).toHaveLength(2);
  });
});

describe('bad requests: 400 naming the field, recorded', () => {
  const cases: [string, string, unknown, RegExp][] = [
    ['not JSON', '/access/v1/evaluation', '{"subject": ', /^\(body\): not JSON/],
    ['not an object', '/access/v1/evaluation', '[1,2]', /^\(body\): must be a JSON object/],
    ['no subject', '/access/v1/evaluation', { action: { name: 'read' }, resource: todoOf('t1') }, /^subject is required$/],
    ['no subject id', '/access/v1/evaluation', { subject: { type: 'user' }, action: { name: 'read' }, resource: todoOf('t1') }, /^subject\.id is required$/],
    ['a numeric subject type', '/access/v1/evaluation', { subject: { type: 1, id: 'x' }, action: { name: 'read' }, resource: todoOf('t1') }, /^subject\.type: must be a string$/],
    ['roles not an array', '/access/v1/evaluation', { subject: { type: 'user', id: 'x', properties: { roles: 'admin' } }, action: { name: 'read' }, resource: todoOf('t1') }, /^subject\.properties\.roles: must be an array/],
    ['an empty role', '/access/v1/evaluation', { subject: { type: 'user', id: 'x', properties: { roles: ['editor', ''] } }, action: { name: 'read' }, resource: todoOf('t1') }, /^subject\.properties\.roles\[1\]: must be a non-empty string$/],
    ['a property called type', '/access/v1/evaluation', { subject: { type: 'user', id: 'x', properties: { type: 'admin' } }, action: { name: 'read' }, resource: todoOf('t1') }, /^subject\.properties\.type: reserved/],
    ['no action name', '/access/v1/evaluation', { subject: subjectOf('rick'), action: {}, resource: todoOf('t1') }, /^action\.name is required$/],
    ['properties not an object', '/access/v1/evaluation', { subject: subjectOf('rick'), action: { name: 'read' }, resource: { type: 'todo', id: 't1', properties: [1] } }, /^resource\.properties: must be a JSON object$/],
    ['context not an object', '/access/v1/evaluation', { subject: subjectOf('rick'), action: { name: 'read' }, resource: todoOf('t1'), context: 'now' }, /^context: must be a JSON object$/],
    ['an unknown member', '/access/v1/evaluation', { subject: subjectOf('rick'), action: { name: 'read' }, resource: todoOf('t1'), evaluations: [] }, /^evaluations: not a member of this request/],
    ['nested too deep', '/access/v1/evaluation', { subject: subjectOf('rick'), action: { name: 'read' }, resource: { type: 'todo', id: 't1', properties: { a: JSON.parse('['.repeat(40) + ']'.repeat(40)) as unknown } } }, /^resource\.properties\.a(\[0\])+: nested deeper than 32 levels$/],
    // Refused before it is parsed: parsing and scanning 500,000 levels held the thread every caller waits on for a quarter of a second.
    ['30,000 levels of nesting', '/access/v1/evaluation', `{"subject": {"type": "user", "id": "x", "properties": {"a": ${'['.repeat(30000)}${']'.repeat(30000)}}}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1"}}`, /^\(body\): nested deeper than 72 levels of arrays and objects$/],
    ['73 levels, brackets inside strings not counted', '/access/v1/evaluation', `{"subject": {"type": "user", "id": "x[[[\\"{{"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1"}, "context": {"a": ${'['.repeat(71)}${']'.repeat(71)}}}`, /^\(body\): nested deeper than 72 levels of arrays and objects$/],
    // Decoding mended these to U+FFFD: dana\xff and dana\xfe were one subject to the rules, the limits and the log.
    ['bytes that are not UTF-8 in a subject id', '/access/v1/evaluation', Buffer.concat([Buffer.from('{"subject": {"type": "user", "id": "dana'), Buffer.from([0xff]), Buffer.from('"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1"}}')]), /^\(body\): not valid UTF-8; send JSON encoded as UTF-8$/],
    ['a lone surrogate encoded as CESU-8', '/access/v1/evaluations', Buffer.concat([Buffer.from('{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "evaluations": [{"resource": {"type": "todo", "id": "t'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}}]}')]), /^\(body\): not valid UTF-8/],
    // JSON.parse reads these as ±Infinity; gRPC refuses the same values, and the log could only record null.
    ['a number past a double (1e999) in the context', '/access/v1/evaluation', `{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1"}, "context": {"max_tokens": 1e999}}`, /^context\.max_tokens: number must be finite/],
    ['-1e999 in a list in subject properties', '/access/v1/evaluation', `{"subject": {"type": "user", "id": "rick", "properties": {"limits": [1, -1e999]}}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1"}}`, /^subject\.properties\.limits\[1\]: number must be finite/],
    // The search APIs read their body through the same reader: the same refusal.
    ['1e999 in the context of a resource search', '/access/v1/search/resource', `{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "resource": {"type": "todo"}, "context": {"n": 1e999}}`, /^context\.n: number must be finite/],
    ['-1e999 in the resource of a subject search', '/access/v1/search/subject', `{"subject": {"type": "user"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1", "properties": {"a": {"b": [-1e999]}}}}`, /^resource\.properties\.a\.b\[0\]: number must be finite/],
    // JSON.parse keeps the last copy of a repeated member, a gateway or WAF in front may have read the first.
    ['a subject given twice', '/access/v1/evaluation', `{"subject": {"type": "user", "id": "morty"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1"}, "subject": {"type": "user", "id": "rick"}}`, /^subject: given twice in one object/],
    ['an id given twice, the second spelled with an escape', '/access/v1/evaluation', `{"subject": {"type": "user", "id": "morty", "\\u0069d": "rick"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1"}}`, /^subject\.id: given twice in one object/],
    ['a resource id given twice in an evaluations item', '/access/v1/evaluations', `{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "evaluations": [{"resource": {"type": "todo", "id": "t1"}}, {"resource": {"type": "todo", "id": "t1", "id": "t2"}}]}`, /^evaluations\[1\]\.resource\.id: given twice in one object/],
    ['a context member given twice in a search', '/access/v1/search/resource', `{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "resource": {"type": "todo"}, "context": {"ticket": "", "ticket": "INC-1"}}`, /^context\.ticket: given twice in one object/],
    // Kept as data by JSON.parse, but a prototype wherever it is copied by assignment; gRPC refuses it too.
    ['__proto__ as a property name', '/access/v1/evaluation', `{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1", "properties": {"meta": {"__proto__": {"ownerID": "rick"}}}}}`, /^resource\.properties\.meta\.__proto__: cannot be an attribute name/],
    // CEL reads an object's type from its `constructor`: with one of its own, every condition reading it would fail.
    ['constructor as a property name', '/access/v1/evaluation', { subject: subjectOf('rick'), action: { name: 'read' }, resource: { type: 'todo', id: 't1', properties: { constructor: 'x' } } }, /^resource\.properties\.constructor: cannot be an attribute name/],
    ['evaluations not an array', '/access/v1/evaluations', { evaluations: { a: 1 } }, /^evaluations: must be an array/],
    ['an unknown semantic', '/access/v1/evaluations', { evaluations: [], options: { evaluations_semantic: 'first_wins' } }, /^options\.evaluations_semantic: must be one of execute_all, deny_on_first_deny, permit_on_first_permit$/],
    ['too many evaluations', '/access/v1/evaluations', { subject: subjectOf('rick'), evaluations: new Array(1001).fill({ action: { name: 'read' }, resource: { type: 'todo', id: 'x' } }) }, /^evaluations: 1001 evaluations exceed the limit of 1000 per call$/],
    // 56 KB of body that would record a 25 KB subject 500 times: 12 MB of log.
    ['a large default subject asked about many times', '/access/v1/evaluations', { subject: { type: 'user', id: 'rick', properties: { pad: 'x'.repeat(25 * 1024) } }, evaluations: new Array(500).fill({ action: { name: 'read' }, resource: { type: 'todo', id: 'x' } }) }, /^evaluations: the principals, resources and contexts of these 500 items are recorded with each item, over 1048576 bytes in all/],
  ];
  it.each(cases)('%s', async (_name, path, body, message) => {
    const sent = await post(path, body);
    expect(sent.status).toBe(400);
    const answer = sent.body as { error: string; detail: string; decision_id: string };
    expect(answer.error).toBe('bad request');
    expect(answer.detail).toMatch(message);
    expect(sent.headers.get('x-request-id')).toBe(sent.requestId);
    const row = getDecision(db, answer.decision_id)!;
    expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', requestId: sent.requestId, caller: 'api-key:todo-app' });
    expect(row.errors[0]!.message).toBe(answer.detail);
  });

  it('counts a top-level resource shared by `{}` items once per item, as it is recorded: over the budget is 400, recorded once; a small one passes', async () => {
    // ~31 KB of body (2,000 properties) that would record the resource 100 times: ~3 MB, over 16 × 64 KiB.
    const properties = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, `v${i}`]));
    const large = await post('/access/v1/evaluations', { subject: subjectOf('rick'), action: { name: 'read' }, resource: { type: 'todo', id: 'not-listed', properties }, evaluations: new Array(100).fill({}) });
    expect(large.status).toBe(400);
    const answer = large.body as { detail: string; decision_id: string };
    expect(answer.detail).toMatch(/^evaluations: the principals, resources and contexts of these 100 items are recorded with each item, over 1048576 bytes in all/);
    const rows = rowsOf(large.requestId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ decisionId: answer.decision_id, reason: 'DENIED_INVALID_REQUEST' });
    expect(rows[0]!.request.resource).toEqual({ attributes: {} });
    const small = await post('/access/v1/evaluations', { subject: subjectOf('rick'), action: { name: 'read' }, resource: todoOf('t1'), evaluations: new Array(100).fill({}) });
    expect(small.status).toBe(200);
    expect(rowsOf(small.requestId)).toHaveLength(100);
  });

  it('answers an evaluations item with an infinite number in its place (400 error), and decides the others', async () => {
    const sent = await post(
      '/access/v1/evaluations',
      `{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "evaluations": [{"resource": {"type": "todo", "id": "t1", "properties": {"n": {"m": 1e999}}}}, {"resource": {"type": "todo", "id": "t1"}}]}`,
    );
    expect(sent.status).toBe(200);
    const items = (sent.body as { evaluations: { decision: boolean; context: { reason: string; error?: { status: number; message: string } } }[] }).evaluations;
    expect(items[0]).toMatchObject({ decision: false, context: { reason: 'DENIED_INVALID_REQUEST', error: { status: 400, message: expect.stringMatching(/^evaluations\[0\]\.resource\.properties\.n\.m: number must be finite/) } } });
    expect(items[1]!.context.reason).not.toBe('DENIED_INVALID_REQUEST');
    expect(rowsOf(sent.requestId).filter((r) => r.reason === 'DENIED_INVALID_REQUEST')).toHaveLength(1);
  });

  // JSON's "\ud800" decodes to half a surrogate pair: decided on, it would be recorded as U+FFFD (UTF-8 cannot hold it).
  it('refuses a lone UTF-16 surrogate anywhere in a request, naming the field, so the log holds what was decided', async () => {
    for (const [body, field] of [
      ['{"subject": {"type": "user", "id": "rick\\ud800"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1"}}', 'principal.id'],
      ['{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1", "properties": {"owner": "morty\\udc00"}}}', 'resource.attributes.owner'],
      ['{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1"}, "context": {"\\ud83d": 1}}', 'context.attributes["\\ud83d"]'],
    ] as const) {
      const sent = await post('/access/v1/evaluation', body);
      expect(sent.status, body).toBe(200);
      const answer = sent.body as { decision: boolean; context: { reason: string; decision_id: string } };
      expect(answer, body).toMatchObject({ decision: false, context: { reason: 'DENIED_INVALID_REQUEST' } });
      const row = getDecision(db, answer.context.decision_id)!;
      expect(row.errors[0]!.message, body).toBe(`${field}: holds a lone UTF-16 surrogate (\\uD800-\\uDFFF without its pair), which UTF-8 and the decision log cannot carry; send well-formed text`);
    }
    // A whole pair is a character like any other.
    const paired = await post('/access/v1/evaluation', '{"subject": {"type": "user", "id": "rick"}, "action": {"name": "read"}, "resource": {"type": "todo", "id": "t1", "properties": {"owner": "\\ud83d\\ude00"}}}');
    expect((paired.body as { context: { reason: string } }).context.reason).not.toBe('DENIED_INVALID_REQUEST');
  });

  it('records what could be read of an invalid request', async () => {
    const sent = await post('/access/v1/evaluation', { subject: subjectOf('rick'), action: { name: 'read' }, resource: { type: 'todo' } });
    const row = getDecision(db, (sent.body as { decision_id: string }).decision_id)!;
    expect(row).toMatchObject({ principalId: 'rick', action: 'read', resourceType: 'todo', resourceId: '', reason: 'DENIED_INVALID_REQUEST' });
  });

  it('refuses a body larger than maxMessageBytes with 413, recorded, and another content type with 415', async () => {
    const big = await post('/access/v1/evaluation', { subject: subjectOf('rick'), action: { name: 'read' }, resource: { type: 'todo', id: 'x', properties: { pad: 'x'.repeat(80 * 1024) } } });
    expect(big.status).toBe(413);
    expect(getDecision(db, (big.body as { decision_id: string }).decision_id)).toMatchObject({ reason: 'DENIED_INVALID_REQUEST' });
    const form = await post('/access/v1/evaluation', 'subject=rick', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(form.status).toBe(415);
    expect((form.body as { detail: string }).detail).toMatch(/^content-type: must be application\/json/);
  });

  it('refuses a body sent without a Content-Type with 415, recorded, rather than read it as JSON (a cross-site no-cors POST sends none)', async () => {
    const requestId = `authzen-test-${++requestCounter}`;
    // A byte array is sent with no Content-Type at all, as a no-cors fetch of a Blob is.
    const body = new TextEncoder().encode(JSON.stringify({ subject: subjectOf('rick'), action: { name: 'delete' }, resource: todoOf('t2') }));
    const response = await fetch(`${base}/access/v1/evaluation`, { method: 'POST', headers: { authorization: `Bearer ${pepKey}`, 'x-request-id': requestId }, body });
    expect(response.status).toBe(415);
    const answer = (await response.json()) as { error: string; detail: string; decision_id: string };
    expect(answer.detail).toMatch(/^content-type: missing: send Content-Type: application\/json/);
    expect(getDecision(db, answer.decision_id)).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST', requestId });
    expect(rowsOf(requestId)).toHaveLength(1);
  });

  it('takes a caller that hangs up halfway through its body for no server fault: nothing decided or recorded, no internal error logged', async () => {
    const requestId = `authzen-test-${++requestCounter}`;
    const socket = connect(verdict.httpPort, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`POST /access/v1/evaluation HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${pepKey}\r\nx-request-id: ${requestId}\r\ncontent-length: 400\r\n\r\n{"subject":`);
    // The server has the headers and part of the body when the connection goes.
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.destroy();
    // A request after it is answered, so the first has been dealt with by then.
    expect((await post('/access/v1/evaluation', { subject: { type: 'user', id: 'x' }, action: { name: 'can_read_todos' }, resource: { type: 'todo', id: '1' } })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(verdict.logs.filter((l) => l.msg.startsWith('internal error answering an AuthZEN request'))).toEqual([]);
    expect(rowsOf(requestId)).toEqual([]);
  });

  it('answers another method with 405', async () => {
    const response = await fetch(`${base}/access/v1/evaluation`, { headers: { authorization: `Bearer ${pepKey}` } });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
  });
});

describe('the principals directory (principals.yaml)', () => {
  it('gives a subject sent without roles the roles the directory lists', async () => {
    for (const user of Object.keys(USERS) as User[]) {
      for (const action of ACTIONS) {
        const response = await evaluate({ subject: { type: 'user', id: user }, action: { name: action }, resource: todoOf('t1') });
        expect(response.decision, `${user} ${action}`).toBe(expected(user, action, 't1'));
      }
    }
  });

  it('does not grant a role the caller claims and the directory does not give, over AuthZEN, and records what it ignored', async () => {
    const response = await evaluate({ subject: { type: 'user', id: 'beth', properties: { roles: ['admin'] } }, action: { name: 'delete' }, resource: todoOf('t1') });
    expect(response).toMatchObject({ decision: false, context: { reason: 'DENIED_BY_DEFAULT' } });
    const row = getDecision(db, response.context!.decision_id as string)!;
    expect(row.request.principal.roles).toEqual(['viewer']);
    expect(row.details).toMatchObject({ directory: { principal: { roles: 'directory', ignoredRoles: ['admin'], attributes: [] } } });
    // In a batch too.
    const batch = await evaluations({ subject: { type: 'user', id: 'jerry', properties: { roles: ['editor', 'admin'] } }, evaluations: [{ action: { name: 'create' }, resource: todoOf('t1') }, { action: { name: 'read' }, resource: todoOf('t1') }] });
    expect(batch.decisions).toEqual([false, true]);
  });

  it('does not grant it over gRPC Check either', async () => {
    const client = verdictClient(verdict.grpcPort);
    try {
      const answer = await client.call<{ effect: string; reason: string; decisionId: string }>(
        'Authorization',
        'Check',
        checkRequest({ principal: { id: 'summer', roles: ['admin'] }, action: 'delete', resource: { type: 'todo', id: 't3', attributes: { ownerID: 'rick' } } }),
        { deadline: Date.now() + 10_000 },
      );
      expect(answer.effect).toMatch(/DENY/);
      const row = getDecision(db, answer.decisionId)!;
      expect(row.request.principal.roles).toEqual(['editor']);
      expect(row.details).toMatchObject({ directory: { principal: { ignoredRoles: ['admin'] } } });
      const allowed = await client.call<{ effect: string }>('Authorization', 'Check', checkRequest({ principal: { id: 'rick' }, action: 'delete', resource: { type: 'todo', id: 't3' } }));
      expect(allowed.effect).toMatch(/ALLOW/);
    } finally {
      client.close();
    }
  });
});

describe('the Search APIs over the directories', () => {
  type Kind = 'subject' | 'resource' | 'action';
  const schemas = {
    subject: [schema.searchSubjectRequest, schema.searchSubjectResponse],
    resource: [schema.searchResourceRequest, schema.searchResourceResponse],
    action: [schema.searchActionRequest, schema.searchActionResponse],
  } as const;

  async function search(kind: Kind, request: Record<string, unknown>): Promise<{ results: Record<string, string>[]; next: string; decisionId: string }> {
    valid(schemas[kind][0], request);
    const sent = await post(`/access/v1/search/${kind}`, request);
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    const response = valid(schemas[kind][1], sent.body) as unknown as { results: Record<string, string>[]; page?: { next_token: string }; context?: { decision_id?: string } };
    return { results: response.results, next: response.page!.next_token, decisionId: response.context!.decision_id! };
  }

  /** Every page of a search, following next_token. */
  async function everyPage(kind: Kind, request: Record<string, unknown>, limit: number): Promise<Record<string, string>[][]> {
    const pages: Record<string, string>[][] = [];
    let token = '';
    do {
      const page = await search(kind, { ...request, page: { limit, ...(token ? { token } : {}) } });
      expect(page.results.length).toBeLessThanOrEqual(limit);
      pages.push(page.results);
      token = page.next;
    } while (token !== '' && pages.length < 50);
    expect(token).toBe('');
    return pages;
  }

  it('subject search: who may do an action on a todo; every result evaluates to true, every other user to false', async () => {
    for (const action of ACTIONS) {
      for (const todo of Object.keys(TODOS) as Todo[]) {
        const { results } = await search('subject', { subject: { type: 'user' }, action: { name: action }, resource: { type: 'todo', id: todo } });
        const found = results.map((r) => r.id).sort();
        expect(found, `${action} ${todo}`).toEqual((Object.keys(USERS) as User[]).filter((u) => expected(u, action, todo)).sort());
        for (const result of results) {
          expect(result.type).toBe('user');
          expect((await evaluate({ subject: { type: 'user', id: result.id! }, action: { name: action }, resource: { type: 'todo', id: todo } })).decision).toBe(true);
        }
      }
    }
  });

  it('resource search: which todos a user may act on; action search: what a user may do to a todo', async () => {
    for (const user of Object.keys(USERS) as User[]) {
      for (const action of ACTIONS) {
        const { results } = await search('resource', { subject: { type: 'user', id: user }, action: { name: action }, resource: { type: 'todo' } });
        expect(results.map((r) => r.id).sort(), `${user} ${action}`).toEqual((Object.keys(TODOS) as Todo[]).filter((t) => expected(user, action, t)).sort());
      }
      for (const todo of Object.keys(TODOS) as Todo[]) {
        const { results } = await search('action', { subject: { type: 'user', id: user }, resource: { type: 'todo', id: todo } });
        expect(results.map((r) => r.name).sort(), `${user} ${todo}`).toEqual(ACTIONS.filter((a) => expected(user, a, todo)).sort());
        for (const result of results) expect((await evaluate({ subject: { type: 'user', id: user }, action: { name: result.name! }, resource: { type: 'todo', id: todo } })).decision).toBe(true);
      }
    }
  });

  it('pages: every result exactly once, pages no larger than asked', async () => {
    const request = { subject: { type: 'user' }, action: { name: 'read' }, resource: { type: 'todo', id: 't1' } };
    for (const limit of [1, 2, 3, 5, 1000]) {
      const pages = await everyPage('subject', request, limit);
      const ids = pages.flat().map((r) => r.id);
      expect(ids.length).toBe(new Set(ids).size);
      expect([...ids].sort()).toEqual(Object.keys(USERS).sort());
    }
  });

  it('is recorded as one row per page with what it found', async () => {
    const { results, decisionId } = await search('resource', { subject: { type: 'user', id: 'rick' }, action: { name: 'delete' }, resource: { type: 'todo' } });
    const row = getDecision(db, decisionId)!;
    expect(row).toMatchObject({ principalId: 'rick', action: 'delete', resourceType: 'todo', resourceId: '', effect: 'ALLOW', caller: 'api-key:todo-app' });
    expect(row.details).toMatchObject({ http: { method: 'POST', path: '/access/v1/search/resource' }, search: { kind: 'resource', count: results.length, more: false, results: ['t1', 't2', 't3'] } });
  });

  it('refuses unbounded pages and bad tokens with 400 naming the field, and records them', async () => {
    const request = { subject: { type: 'user' }, action: { name: 'read' }, resource: { type: 'todo', id: 't1' } };
    for (const limit of [0, -1, 1.5, 1001, '10']) {
      const sent = await post('/access/v1/search/subject', { ...request, page: { limit } });
      expect(sent.status).toBe(400);
      expect((sent.body as { detail: string }).detail).toMatch(/^page\.limit: /);
      expect(getDecision(db, (sent.body as { decision_id: string }).decision_id)).toMatchObject({ reason: 'DENIED_INVALID_REQUEST' });
    }
    const first = await search('subject', { ...request, page: { limit: 2 } });
    expect(first.next).not.toBe('');
    const [payload, tag] = first.next.split('.');
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), o: 0 })).toString('base64url');
    for (const token of ['nonsense', 'a.b', `${forged}.${tag}`, `${payload}.${tag}x`, 'x'.repeat(600), 42]) {
      const sent = await post('/access/v1/search/subject', { ...request, page: { limit: 2, token } });
      expect(sent.status, String(token)).toBe(400);
      expect((sent.body as { detail: string }).detail).toMatch(/^page\.token: /);
    }
    // A token is bound to its search.
    const elsewhere = await post('/access/v1/search/subject', { ...request, action: { name: 'delete' }, page: { limit: 2, token: first.next } });
    expect(elsewhere.status).toBe(400);
    expect((elsewhere.body as { detail: string }).detail).toMatch(/^page\.token: belongs to another search/);
    // And to its caller: another PEP sending the same search with it is refused, recorded; its own caller goes on.
    const taken = await post('/access/v1/search/subject', { ...request, page: { limit: 2, token: first.next } }, { authorization: `Bearer ${otherPepKey}` });
    expect(taken.status).toBe(400);
    expect((taken.body as { detail: string }).detail).toBe('page.token: was issued to another caller; a page token is good only for the caller that started the search, so start it again without the token');
    expect(getDecision(db, (taken.body as { decision_id: string }).decision_id)).toMatchObject({ reason: 'DENIED_INVALID_REQUEST', caller: 'api-key:todo-audit' });
    expect((await post('/access/v1/search/subject', { ...request, page: { limit: 2, token: first.next } })).status).toBe(200);
    const missing = await post('/access/v1/search/resource', { subject: { type: 'user', id: 'rick' }, action: { name: 'read' } });
    expect(missing.status).toBe(400);
    expect((missing.body as { detail: string }).detail).toBe('resource is required');
  });

  it('asks the caller to authenticate', async () => {
    const sent = await post('/access/v1/search/action', { subject: { type: 'user', id: 'rick' }, resource: { type: 'todo', id: 't1' } }, { authorization: '' });
    expect(sent.status).toBe(401);
  });
});

describe('authentication of the caller', () => {
  const request = { subject: subjectOf('rick'), action: { name: 'read' }, resource: todoOf('t1') };

  it('answers 401 without a credential, or with a wrong one, and records the refusal', async () => {
    for (const authorization of [undefined, 'Bearer vk_notakey_notakey', 'Basic cmljazpyaWNr']) {
      for (const path of ['/access/v1/evaluation', '/access/v1/evaluations']) {
        const sent = await post(path, path.endsWith('s') ? { evaluations: [request] } : request, authorization === undefined ? { authorization: '' } : { authorization });
        expect(sent.status).toBe(401);
        expect(sent.headers.get('www-authenticate')).toBe('Bearer');
        const answer = sent.body as { error: string; detail: string; decision_id: string };
        expect(answer.error).toBe('unauthenticated');
        const row = getDecision(db, answer.decision_id)!;
        expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED', principalId: '', requestId: sent.requestId });
        // The body of an unauthenticated caller is not read: nothing of it is recorded.
        expect(row.action).toBe('');
      }
    }
  });
});

describe('GET /.well-known/authzen-configuration', () => {
  it('names the endpoints on the host asked for, without authentication', async () => {
    const response = await fetch(`${base}/.well-known/authzen-configuration`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    const document = valid(schema.metadata, await response.json());
    expect(document).toEqual({
      policy_decision_point: base,
      access_evaluation_endpoint: `${base}/access/v1/evaluation`,
      access_evaluations_endpoint: `${base}/access/v1/evaluations`,
      search_subject_endpoint: `${base}/access/v1/search/subject`,
      search_resource_endpoint: `${base}/access/v1/search/resource`,
      search_action_endpoint: `${base}/access/v1/search/action`,
    });
  });

  it('does not echo a Host that is not a host name', async () => {
    const { request } = await import('node:http');
    const body = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: verdict.httpPort, path: '/.well-known/authzen-configuration', headers: { host: 'evil.example/"><script>' } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
    const document = valid(schema.metadata, JSON.parse(body));
    expect(document.policy_decision_point).toBe(`http://127.0.0.1:${verdict.httpPort}`);
  });
});
