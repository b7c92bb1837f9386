import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../../src/authn/api-keys.js';
import { ROOT, ensureBuilt, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

// A search answers as the checks it stands for would: under `enforcement: reject` a
// question that breaks the attribute schema is refused by a check, so a search must not
// find it either — otherwise a caller learns (and a PEP that trusts search results
// grants) what every evaluation of the same question refuses.

let verdict: VerdictProcess;
let dir: string;
let base: string;
let pepKey: string;

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'verdict-search-schema-'));
  const policies = join(dir, 'policies');
  cpSync(join(ROOT, 'test', 'fixtures', 'authzen', 'todo'), policies, { recursive: true });
  // Every principal must name its tenant; of the directory's users only rick does.
  writeFileSync(
    join(policies, 'schema.yaml'),
    stringify({ kind: 'schema', enforcement: 'reject', schemas: [{ for: 'principal', attributes: { tenant: { type: 'string', required: true }, roles: { type: 'list', items: 'string' } } }] }),
  );
  writeFileSync(
    join(policies, 'principals.yaml'),
    stringify({ kind: 'principals', principals: [{ id: 'rick', roles: ['admin'], attributes: { tenant: 'acme' } }, { id: 'morty', roles: ['editor'] }, { id: 'beth', roles: ['viewer'] }] }),
  );
  const keysDb = join(dir, 'keys.db');
  const store = ApiKeyStore.open(keysDb);
  pepKey = store.create({ owner: 'todo-app', name: 'the todo app PEP', roles: [], attributes: {} }).key;
  store.close();
  const config = join(dir, 'verdict.yaml');
  writeFileSync(config, stringify({ authn: { apiKeys: { db: keysDb } }, authzen: { peps: ['api-key:todo-app'] }, logLevel: 'warn' }));
  verdict = await startVerdict({ policies, db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch', '--log-level', 'info'] });
  base = `http://127.0.0.1:${verdict.httpPort}`;
});
afterAll(async () => {
  await verdict?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function post(path: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${pepKey}` }, body: JSON.stringify(body) });
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return JSON.parse(text) as Record<string, unknown>;
}

const ids = (results: unknown): string[] => (results as { id?: string; name?: string }[]).map((r) => r.id ?? r.name ?? '').sort();

describe('AuthZEN search under an attribute schema that rejects', () => {
  it('a subject the schema refuses: evaluation false, and no resource or action search finds anything for it', async () => {
    const subject = { type: 'user', id: 'jerry' };
    const evaluation = await post('/access/v1/evaluation', { subject, action: { name: 'read' }, resource: { type: 'todo', id: 't1' } });
    expect(evaluation.decision).toBe(false);
    expect(ids((await post('/access/v1/search/resource', { subject, action: { name: 'read' }, resource: { type: 'todo' } })).results)).toEqual([]);
    expect(ids((await post('/access/v1/search/action', { subject, resource: { type: 'todo', id: 't1' } })).results)).toEqual([]);
  });

  it('the same subject with a well-typed tenant: evaluation true, and the searches find what it may do', async () => {
    const subject = { type: 'user', id: 'jerry', properties: { tenant: 'acme' } };
    expect((await post('/access/v1/evaluation', { subject, action: { name: 'read' }, resource: { type: 'todo', id: 't1' } })).decision).toBe(true);
    expect(ids((await post('/access/v1/search/resource', { subject, action: { name: 'read' }, resource: { type: 'todo' } })).results)).toEqual(['t1', 't2', 't3']);
    expect(ids((await post('/access/v1/search/action', { subject, resource: { type: 'todo', id: 't1' } })).results)).toEqual(['read']);
  });

  it('a tenant of the wrong type is refused by both', async () => {
    const subject = { type: 'user', id: 'jerry', properties: { tenant: 7 } };
    expect((await post('/access/v1/evaluation', { subject, action: { name: 'read' }, resource: { type: 'todo', id: 't1' } })).decision).toBe(false);
    expect(ids((await post('/access/v1/search/resource', { subject, action: { name: 'read' }, resource: { type: 'todo' } })).results)).toEqual([]);
  });

  it('subject search finds only the directory users the schema accepts, and each evaluates as found', async () => {
    const found = ids((await post('/access/v1/search/subject', { subject: { type: 'user' }, action: { name: 'read' }, resource: { type: 'todo', id: 't1' } })).results);
    expect(found).toEqual(['rick']);
    for (const id of ['rick', 'morty', 'beth']) {
      const evaluation = await post('/access/v1/evaluation', { subject: { type: 'user', id }, action: { name: 'read' }, resource: { type: 'todo', id: 't1' } });
      expect(evaluation.decision, id).toBe(found.includes(id));
    }
  });
});
