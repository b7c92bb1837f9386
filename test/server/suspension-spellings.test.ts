import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { asSchemaV8Log } from '../helpers/decision-log.js';
import { BIN, ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

// A suspension holds for every spelling of its principal id, so a lift by any
// spelling must take off every row stored under a spelling that folds alike:
// a row left behind revives the suspension at the next start, or in a worker
// that reads the table. Real `verdict serve` processes on one SQLite file.

const run = promisify(execFile);
const principal = (id: string): { id: string; roles: string[]; attributes: Record<string, unknown> } => ({ id, roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } });
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };
const SPELLINGS = ['dana', 'Dana', 'DANA', 'dana ', 'da\u200Bna'];

const dirs: string[] = [];
const servers: VerdictProcess[] = [];
beforeAll(ensureBuilt);
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function freshDb(): string {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-suspension-spellings-'));
  dirs.push(dir);
  return join(dir, 'decisions.db');
}

async function serve(db: string, workers = 1): Promise<VerdictProcess> {
  const server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: workers > 1 ? ['--workers', String(workers)] : [] });
  servers.push(server);
  return server;
}

async function stop(server: VerdictProcess): Promise<void> {
  servers.splice(servers.indexOf(server), 1);
  expect(await server.stop()).toBe(0);
}

/** Admin calls on a connection of their own (under --workers, whichever worker it reaches). */
async function admin<T>(server: VerdictProcess, method: string, request: unknown): Promise<T> {
  const client = verdictClient(server.grpcPort, { ownConnection: true });
  try {
    return await client.call<T>('Admin', method, request);
  } finally {
    client.close();
  }
}

/** The effect of a check by each spelling, each on a fresh connection (so under --workers they reach every worker). */
async function effects(server: VerdictProcess, rounds = 1): Promise<string[]> {
  const seen = new Set<string>();
  for (let round = 0; round < rounds; round++) {
    for (const id of SPELLINGS) {
      const client: VerdictClient = verdictClient(server.grpcPort, { ownConnection: true });
      try {
        const answer = await client.call<{ effect: string; reason: string }>('Authorization', 'Check', checkRequest({ principal: principal(id), action: 'predict', resource: fraudModel }));
        seen.add(answer.effect === 'EFFECT_ALLOW' ? 'ALLOW' : answer.reason);
      } finally {
        client.close();
      }
    }
  }
  return [...seen].sort();
}

/** The rows of the suspensions table not marked lifted. */
function inForce(db: string): string[] {
  const conn = new Database(db, { readonly: true });
  try {
    return (conn.prepare('SELECT principal_id FROM suspensions WHERE lifted = 0 ORDER BY principal_id').all() as { principal_id: string }[]).map((r) => r.principal_id);
  } finally {
    conn.close();
  }
}

/** Waits (polling, bounded) until `done` holds; the assertion that follows says what was wanted. */
async function until(done: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** The table keeps no suspension in force, and a server started again on the log allows the principal and lists none. */
async function expectNoneAfterRestart(db: string): Promise<void> {
  expect(inForce(db)).toEqual([]);
  const second = await serve(db);
  expect(await effects(second)).toEqual(['ALLOW']);
  expect(await admin(second, 'ListSuspensions', {})).toMatchObject({ suspensions: [] });
}

describe('a lift by one spelling of a principal id', () => {
  it('suspended as Dana, lifted as dana (verdict suspend lift): allowed, and still allowed after a restart on the same log', async () => {
    const db = freshDb();
    const first = await serve(db);
    await admin(first, 'SuspendPrincipal', { principalId: 'Dana', duration: { seconds: 600 } });
    expect(await effects(first)).toEqual(['REASON_DENIED_BY_SUSPENSION']);
    const lifted = await run(process.execPath, [BIN, 'suspend', 'lift', 'dana', '--server', `127.0.0.1:${first.grpcPort}`], { cwd: ROOT });
    expect(lifted.stdout).toMatch(/^lifted: Dana {2}until /);
    expect(await effects(first)).toEqual(['ALLOW']);
    await stop(first);
    await expectNoneAfterRestart(db);
  });

  it('two suspensions stored under two spellings, one lift: none remains, in this process or after a restart', async () => {
    const db = freshDb();
    const first = await serve(db);
    await admin(first, 'SuspendPrincipal', { principalId: 'Dana', duration: { seconds: 600 } });
    // Ending later, it is the one in force; the table holds a row for each spelling.
    await admin(first, 'SuspendPrincipal', { principalId: 'dana', duration: { seconds: 1200 } });
    await until(() => inForce(db).length === 2);
    expect(inForce(db)).toEqual(['Dana', 'dana']);
    await admin(first, 'LiftSuspension', { principalId: 'DANA' });
    expect(await effects(first)).toEqual(['ALLOW']);
    await stop(first);
    await expectNoneAfterRestart(db);
  });

  it('under --workers 2: suspensions under two spellings (from either worker), one lift through either: every worker allows, the table keeps none, and a restart keeps it so', async () => {
    const db = freshDb();
    const first = await serve(db, 2);
    await admin(first, 'SuspendPrincipal', { principalId: 'Dana', duration: { seconds: 600 } });
    await admin(first, 'SuspendPrincipal', { principalId: 'dana', duration: { seconds: 1200 } });
    await until(() => inForce(db).length === 2);
    expect(inForce(db)).toEqual(['Dana', 'dana']);
    // Every worker denies every spelling before the lift.
    await until(async () => (await effects(first, 2)).join() === 'REASON_DENIED_BY_SUSPENSION');
    await admin(first, 'LiftSuspension', { principalId: 'DANA' });
    await until(() => inForce(db).length === 0);
    expect(inForce(db)).toEqual([]);
    await until(async () => (await effects(first, 2)).join() === 'ALLOW');
    expect(await effects(first, 2)).toEqual(['ALLOW']);
    await stop(first);

    const second = await serve(db, 2);
    expect(await effects(second, 2)).toEqual(['ALLOW']);
  });

  it('on a log of schema v8 holding suspensions under three spellings: the server migrates it, and one lift takes all three, also after a restart', async () => {
    const db = freshDb();
    await stop(await serve(db));
    // Rows a release before the folded-id column (migration 9) wrote: the migration folds them, a lift finds them by their fold.
    asSchemaV8Log(db, ['Dana', 'dana', 'da\u200Bna'], Date.now() + 600_000);
    const first = await serve(db);
    expect(await effects(first)).toEqual(['REASON_DENIED_BY_SUSPENSION']);
    await admin(first, 'LiftSuspension', { principalId: 'DANA' });
    expect(await effects(first)).toEqual(['ALLOW']);
    await stop(first);
    await expectNoneAfterRestart(db);
  });
});
