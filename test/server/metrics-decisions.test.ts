import { describe, expect, it } from 'vitest';
import type { CheckResult } from '../../src/decide/index.js';
import { ServerMetrics } from '../../src/server/metrics.js';

/** A decided check as the decide core hands it to its observers; only the effect and reason matter to the counter. */
function resultOf(effect: 'ALLOW' | 'DENY', reason: 'ALLOWED_BY_RULE' | 'DENIED_BY_RULE' | 'DENIED_BY_DEFAULT'): CheckResult {
  return { decision: { effect, reason } } as unknown as CheckResult;
}

const counted = (text: string, effect: string, reason: string): number | null => {
  const match = new RegExp(`^verdict_decisions_total\\{effect="${effect}",reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  return match === null ? null : Number(match[1]);
};

describe('verdict_decisions_total', () => {
  it('adds the decisions answered between scrapes to what earlier scrapes reported', async () => {
    const metrics = new ServerMetrics();
    const meta = { caller: 'test', requestId: null };
    for (let i = 0; i < 3; i++) metrics.decided(resultOf('ALLOW', 'ALLOWED_BY_RULE'), meta, 0.001);
    metrics.decided(resultOf('DENY', 'DENIED_BY_RULE'), meta, 0.001);
    const first = await metrics.registry.metrics();
    expect(counted(first, 'ALLOW', 'ALLOWED_BY_RULE')).toBe(3);
    expect(counted(first, 'DENY', 'DENIED_BY_RULE')).toBe(1);
    expect(counted(first, 'DENY', 'DENIED_BY_DEFAULT')).toBeNull();

    // A scrape with nothing new reports the same totals, not zero and not twice.
    expect(counted(await metrics.registry.metrics(), 'ALLOW', 'ALLOWED_BY_RULE')).toBe(3);

    metrics.decided(resultOf('ALLOW', 'ALLOWED_BY_RULE'), meta, 0.001);
    metrics.decided(resultOf('DENY', 'DENIED_BY_DEFAULT'), meta, 0.001);
    const third = await metrics.registry.metrics();
    expect(counted(third, 'ALLOW', 'ALLOWED_BY_RULE')).toBe(4);
    expect(counted(third, 'DENY', 'DENIED_BY_RULE')).toBe(1);
    expect(counted(third, 'DENY', 'DENIED_BY_DEFAULT')).toBe(1);
  });
});
