import { describe, expect, it } from 'vitest';
import { checkRequest, metricValue, shippedAllowedCheck, useShippedServer, verdictClient } from '../helpers/verdict-process.js';

// Each Check within the limits may carry about a megabyte of context, and its row
// records it. The writer used to be handed up to 256 rows at once whatever their
// size: one connection's hundred such checks put about 100 MB in one transaction,
// in front of every other caller's next commit (another caller's checks went from
// 3 ms to 850 ms at the median). Now it is handed at most about a megabyte of rows
// at once, so a transaction holds one such row and the small rows beside it.

const STRINGS = 110;
/** About 880,000 characters of context, each string under the 8,192 allowed. */
const context = Object.fromEntries(Array.from({ length: STRINGS }, (_, i) => [`note${i}`, `${i}:`.padEnd(8000, 'abcdefghij')]));
const LARGE_CHECKS = 40;

describe('checks carrying a megabyte of context each', () => {
  const shipped = useShippedServer();

  it('forty at once on one connection: every one answered, and no decision-log transaction holds more than one of their rows and a small one', async () => {
    const { grpcPort, httpPort } = shipped.server;
    const bucket = (le: string): Promise<number> => metricValue(httpPort, `verdict_decision_log_batch_rows_bucket{le="${le}"}`);
    const transactions = (): Promise<number> => metricValue(httpPort, 'verdict_decision_log_batch_rows_count');
    const before = { twoOrFewer: await bucket('2'), all: await transactions() };
    const client = verdictClient(grpcPort, { ownConnection: true });
    try {
      const request = checkRequest({
        principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
        action: 'read',
        resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } },
        context,
      });
      const answers = await Promise.all(
        Array.from({ length: LARGE_CHECKS }, () => client.call<{ effect: string }>('Authorization', 'Check', request, { deadline: Date.now() + 60_000 })),
      );
      expect(answers.map((answer) => answer.effect)).toEqual(Array.from({ length: LARGE_CHECKS }, () => 'EFFECT_ALLOW'));
    } finally {
      client.close();
    }
    expect(await shippedAllowedCheck(grpcPort)).toBe('EFFECT_ALLOW');
    const after = { twoOrFewer: await bucket('2'), all: await transactions() };
    // At least one transaction per large row, and every transaction since held two rows or fewer.
    expect(after.all - before.all).toBeGreaterThanOrEqual(LARGE_CHECKS);
    expect(after.all - before.all).toBe(after.twoOrFewer - before.twoOrFewer);
  }, 60_000);
});
