import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, checkRequest, shippedAllowedCheck, startVerdict, verdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

// A batch's rows live in memory from its decisions until the writer has them, each with
// the call's request id: a hundred large batches sent at once on one connection held
// 235,000 such rows (1.4 GB). Batches wait for room among those being decided
// (maxBatchBytesInFlight), so what they hold stays bounded. A real server, a small budget.

const MiB = 1024 * 1024;
const ITEMS = 1000;
/** Recorded with each item: a batch records about 2 MB, so one caller (half of 4 MiB) has one batch decided at a time. */
const REQUEST_ID = 'r'.repeat(2000);
const BATCHES = 10;

/** A CheckBatch of ITEMS items for `principalId`, recording about 2 MB (REQUEST_ID with each item). */
function largeBatch(principalId: string): Record<string, unknown> {
  return {
    principal: checkRequest({ principal: { id: principalId, roles: ['data_scientist'] }, action: 'read', resource: { type: 'model' } })['principal'],
    requestId: REQUEST_ID,
    items: Array.from({ length: ITEMS }, (_, i) => ({ action: 'read', resource: { type: 'model', id: `m${i}` } })),
  };
}

/** Every value of each metric line, read from /metrics every few milliseconds until `done` settles. */
async function sampleWhile(httpPort: number, lines: readonly string[], done: Promise<unknown>): Promise<Record<string, number[]>> {
  const seen: Record<string, number[]> = Object.fromEntries(lines.map((line) => [line, []]));
  let finished = false;
  void done.finally(() => (finished = true));
  while (!finished) {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    for (const line of lines) {
      const value = new RegExp(`^${line} (\\d+)$`, 'm').exec(text)?.[1];
      if (value !== undefined) seen[line]!.push(Number(value));
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return seen;
}

describe('batches wait for room among those being decided', () => {
  let verdict: VerdictProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-batches-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `maxBatchBytesInFlight: ${4 * MiB}\n`);
    verdict = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch'] });
  });
  afterAll(async () => {
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ten large batches at once: every one answered, one decided at a time, its rows all that wait for the writer', async () => {
    const client = verdictClient(verdict.grpcPort, { ownConnection: true });
    try {
      const request = largeBatch('dana');
      const answers = Promise.all(Array.from({ length: BATCHES }, () => client.call<{ results: unknown[] }>('Authorization', 'CheckBatch', request, { deadline: Date.now() + 60_000 })));
      const seen = await sampleWhile(verdict.httpPort, ['verdict_batch_bytes_in_flight', 'verdict_batches_waiting', 'verdict_decision_log_rows_pending'], answers);
      for (const answer of await answers) expect(answer.results).toHaveLength(ITEMS);
      // Durable: a batch's room comes back once its rows are committed, so no more than one batch's rows wait at once.
      expect(Math.max(...seen['verdict_decision_log_rows_pending']!)).toBeLessThanOrEqual(ITEMS);
      expect(Math.max(...seen['verdict_batches_waiting']!)).toBeGreaterThanOrEqual(1);
      expect(Math.max(...seen['verdict_batch_bytes_in_flight']!)).toBeGreaterThan(ITEMS * REQUEST_ID.length);
      expect(Math.max(...seen['verdict_batch_bytes_in_flight']!)).toBeLessThanOrEqual(4 * MiB);
      expect(seen['verdict_batch_bytes_in_flight']!.at(-1)).toBe(0);
      expect(await shippedAllowedCheck(verdict.grpcPort)).toBe('EFFECT_ALLOW');
    } finally {
      client.close();
    }
  }, 60_000);

  it('a batch whose caller gives up while it waits is neither decided nor recorded', async () => {
    const client = verdictClient(verdict.grpcPort, { ownConnection: true });
    try {
      // Ten batches ahead of it in its caller's line, decided one at a time (about a second in all, see above).
      const ahead = Promise.all(Array.from({ length: BATCHES }, () => client.call('Authorization', 'CheckBatch', largeBatch('dana'), { deadline: Date.now() + 60_000 })));
      // With a deadline that passes while it waits.
      const behind = client.call('Authorization', 'CheckBatch', largeBatch('waits-and-goes'), { deadline: Date.now() + 300 });
      await expect(behind).rejects.toMatchObject({ code: 4 });
      await ahead;
      const listed = await client.call<{ decisions: unknown[] }>('Admin', 'ListDecisions', { principalId: 'waits-and-goes', limit: 10 });
      expect(listed.decisions).toHaveLength(0);
    } finally {
      client.close();
    }
  }, 60_000);
});
