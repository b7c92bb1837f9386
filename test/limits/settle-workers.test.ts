import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictProcess } from '../helpers/verdict-process.js';
import { SETTLE_POLICIES } from './settle-policies.js';

// Settle under `verdict serve --workers 2`: what a decision reserved is held by the
// worker that decided it, and a gateway's Settle may come over another connection,
// to the other worker. The primary hands connections to the workers in turn, so a
// Check and a Settle each on a fresh connection reach different workers.

const POLICIES = SETTLE_POLICIES;

type Answer = { effect: string; decisionId: string; remaining: string };
type Settled = { settleId: string; reservedUnits: number; actualUnits: number; remaining: string };

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
});
