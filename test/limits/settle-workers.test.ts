import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { stringify } from 'yaml';
import { REDIS_SERVER, startRedis, type RedisProcess } from '../helpers/redis.js';
import { checkRequest, ensureBuilt, startVerdict, verdictClient, workersByClientPort, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';
import { SETTLE_POLICIES } from './settle-policies.js';

// Settle under `verdict serve --workers 2`: what a decision reserved is held by the
// worker that decided it, and a gateway's Settle may come over another connection,
// to the other worker. The primary hands connections to the workers in turn, so a
// Check and a Settle each on a fresh connection reach different workers.

const POLICIES = SETTLE_POLICIES;

type Answer = { effect: string; decisionId: string; remaining: string };
type Settled = { settleId: string; reservedUnits: number; actualUnits: number; remaining: string };

/** A connection of its own to `port`, opened by `request`'s Check, and the pid of the worker serving it. */
async function connectedCheck(port: number, request: unknown): Promise<{ client: VerdictClient; pid: number; answer: Answer }> {
  const before = workersByClientPort(port);
  const client = verdictClient(port, { ownConnection: true });
  const answer = await client.call<Answer>('Authorization', 'Check', request);
  const fresh = [...workersByClientPort(port)].filter(([clientPort]) => !before.has(clientPort));
  expect(fresh).toHaveLength(1);
  return { client, pid: fresh[0]![1], answer };
}

const generateRequest = (principal: string, maxTokens = 8000) => checkRequest({ principal: { id: principal }, action: 'generate', resource: { type: 'model', id: 'llm' }, context: { max_tokens: maxTokens } });

/** A decision taken over a connection of its own, and a connection to the other worker (both to close). */
async function heldAndOther(port: number, clients: VerdictClient[]): Promise<{ held: { client: VerdictClient; pid: number; answer: Answer }; other: { client: VerdictClient; pid: number } }> {
  const held = await connectedCheck(port, generateRequest(`holder-${Date.now()}`));
  clients.push(held.client);
  expect(held.answer).toMatchObject({ effect: 'EFFECT_ALLOW', remaining: '2000' });
  let other = await connectedCheck(port, generateRequest(`other-${Date.now()}`, 0));
  clients.push(other.client);
  if (other.pid === held.pid) {
    other = await connectedCheck(port, generateRequest(`other-${Date.now()}-2`, 0));
    clients.push(other.client);
  }
  expect(other.pid).not.toBe(held.pid);
  return { held, other };
}

const settleRows = (db: string, decisionId: string) => queryDecisions(db, { action: 'settle', limit: 100 }).filter((r) => (r.details as { settle: { decisionId: string } }).settle.decisionId === decisionId);

describe('Settle under --workers 2', () => {
  let dir: string;
  let verdict: VerdictProcess;
  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'verdict-settle-workers-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'policies.yaml'), POLICIES);
    verdict = await startVerdict({ policies: join(dir, 'policies'), db: join(dir, 'decisions.db'), args: ['--no-watch', '--workers', '2'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** One call on a connection of its own. */
  async function once<T>(method: string, request: unknown): Promise<T> {
    const client = verdictClient(verdict.grpcPort, { ownConnection: true });
    try {
      return await client.call<T>('Authorization', method, request);
    } finally {
      client.close();
    }
  }
  const generate = (principal: string, maxTokens: number): Promise<Answer> => once<Answer>('Check', checkRequest({ principal: { id: principal }, action: 'generate', resource: { type: 'model', id: 'llm' }, context: { max_tokens: maxTokens } }));
  const settle = (decisionId: string, actualUnits: number): Promise<Settled> => once<Settled>('Settle', { decisionId, actualUnits });
  const settleError = async (decisionId: string, actualUnits: number): Promise<ServiceError> => {
    try {
      await settle(decisionId, actualUnits);
    } catch (error) {
      return error as ServiceError;
    }
    throw new Error('Settle succeeded');
  };

  it('settles a decision over any connection, where its budget was taken, once, in one row', async () => {
    const decided: string[] = [];
    for (let i = 0; i < 4; i++) {
      const call = await generate(`p${i}`, 8000);
      expect(call).toMatchObject({ effect: 'EFFECT_ALLOW', remaining: '2000' });
      decided.push(call.decisionId);
      // The 7000 not used come back to the budget the Check took them from.
      expect(await settle(call.decisionId, 1000)).toMatchObject({ reservedUnits: 8000, actualUnits: 1000, remaining: '9000' });
    }
    // Settled once, whichever worker the second Settle reaches.
    for (const id of decided.slice(0, 2)) expect((await settleError(id, 0)).code).toBe(6); // ALREADY_EXISTS

    const rows = queryDecisions(join(dir, 'decisions.db'), { action: 'settle', limit: 100 });
    const settled = rows.filter((r) => r.effect === 'ALLOW').map((r) => (r.details as { settle: { decisionId: string } }).settle.decisionId);
    expect(settled.sort()).toEqual([...decided].sort());
    expect(rows.filter((r) => r.effect === 'DENY').map((r) => r.errors[0]?.message)).toEqual([expect.stringContaining('already settled'), expect.stringContaining('already settled')]);
  });

  it('refuses a decision no worker holds as NOT_FOUND, recorded once', async () => {
    const unknown = '0190c6a8-0000-7000-8000-0000000000aa';
    expect((await settleError(unknown, 10)).code).toBe(5); // NOT_FOUND
    const rows = queryDecisions(join(dir, 'decisions.db'), { action: 'settle', limit: 100 }).filter((r) => (r.details as { settle: { decisionId: string } }).settle.decisionId === unknown);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ effect: 'DENY' });
  });

  it('does not settle a decision after answering UNAVAILABLE: a holder that was paused past the wait leaves it open, to settle again', async () => {
    const clients: VerdictClient[] = [];
    try {
      const { held, other } = await heldAndOther(verdict.grpcPort, clients);
      const decisionId = held.answer.decisionId;
      // The worker that decided stops answering for longer than the others are waited for.
      process.kill(held.pid, 'SIGSTOP');
      let answered: ServiceError | null = null;
      try {
        await other.client.call<Settled>('Authorization', 'Settle', { decisionId, actualUnits: 1000 });
      } catch (error) {
        answered = error as ServiceError;
      } finally {
        process.kill(held.pid, 'SIGCONT');
      }
      expect(answered?.code).toBe(14); // UNAVAILABLE
      expect(answered?.details).toContain('settle it again');
      // Back, the holder finds the question it was asked while stopped: it must not act on it now.
      await new Promise((r) => setTimeout(r, 1000));
      const db = join(dir, 'decisions.db');
      expect(settleRows(db, decisionId).map((r) => r.effect)).toEqual(['DENY']);
      // Settled again, as the answer said: the decision was left open.
      expect(await other.client.call<Settled>('Authorization', 'Settle', { decisionId, actualUnits: 1000 })).toMatchObject({ reservedUnits: 8000, actualUnits: 1000, remaining: '9000' });
      expect(settleRows(db, decisionId).map((r) => r.effect).sort()).toEqual(['ALLOW', 'DENY']);
    } finally {
      for (const client of clients) client.close();
    }
  }, 60_000);
});

describe.skipIf(REDIS_SERVER === null)('Settle under --workers 2 with a slow Redis', () => {
  let dir: string;
  let redis: RedisProcess;
  let verdict: VerdictProcess;
  beforeAll(async () => {
    ensureBuilt();
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), 'verdict-settle-workers-redis-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'policies.yaml'), POLICIES);
    // Redis is waited for longer than a worker is given to say whether it holds a decision (5 s).
    writeFileSync(join(dir, 'verdict.yaml'), stringify({ limits: { backend: 'redis', redis: { url: redis.url, keyPrefix: `settle-workers-${Date.now()}:` }, timeoutMs: 7000 } }));
    verdict = await startVerdict({ policies: join(dir, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', join(dir, 'verdict.yaml'), '--no-watch', '--workers', '2'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    await redis?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('waits for the worker settling the decision however long its correction takes, and answers its outcome, in one row', async () => {
    const clients: VerdictClient[] = [];
    try {
      const { held, other } = await heldAndOther(verdict.grpcPort, clients);
      const decisionId = held.answer.decisionId;
      redis.pause();
      let answered: ServiceError | null = null;
      try {
        await other.client.call<Settled>('Authorization', 'Settle', { decisionId, actualUnits: 1000 }, { deadline: Date.now() + 20_000 });
      } catch (error) {
        answered = error as ServiceError;
      } finally {
        redis.resume();
      }
      // The holder's answer (Redis timed out: the correction may have been made), not "settle it again".
      expect(answered?.code).toBe(14); // UNAVAILABLE
      expect(answered?.details).toContain(`it may have been made, so decision ${decisionId} is not settled again`);
      await new Promise((r) => setTimeout(r, 500));
      expect(settleRows(join(dir, 'decisions.db'), decisionId)).toHaveLength(1);
      expect((await other.client.call('Authorization', 'Settle', { decisionId, actualUnits: 1000 }).catch((error: ServiceError) => error) as ServiceError).code).toBe(6); // ALREADY_EXISTS
    } finally {
      for (const client of clients) client.close();
    }
  }, 60_000);
});
