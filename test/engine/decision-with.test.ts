import { describe, expect, it } from 'vitest';
import { decisionWith } from '../../src/engine/decision-with.js';
import type { Decision, LimitState, ShadowDecision, SuspensionState } from '../../src/types.js';

// decisionWith stands in for `{ ...decision, extra }` on the per-check path: it must give the same
// members, in the same order (the CLI prints decisions as JSON), for every sequence the decide core uses.

const base: Decision = { effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['r1'], errors: [], policyVersion: 'v1' };
const limit: LimitState = { limitId: 'l', quota: 10, windowSeconds: 60, remaining: 9, retryAfterMs: 0, resetMs: 6000, backend: 'memory' };
const shadow: ShadowDecision = { effect: 'DENY', reason: 'DENIED_BY_RULE', ruleIds: ['s1'], policyVersion: 'v2' };
const suspension: SuspensionState = { principalId: 'p', since: 1, until: 2, alertId: 'a', alertType: 'volume', note: 'n' };

describe('decisionWith', () => {
  it('gives what the spreads gave, members and order, for each sequence the decide core uses', () => {
    const cases: [Decision, Decision][] = [
      [decisionWith(base, { shadow }), { ...base, shadow }],
      [decisionWith(base, { limit }), { ...base, limit }],
      [decisionWith(decisionWith(base, { limit }), { shadow }), { ...{ ...base, limit }, shadow }],
      [decisionWith(base, { schemaViolations: ['x'] }), { ...base, schemaViolations: ['x'] }],
      [decisionWith(decisionWith(decisionWith(base, { schemaViolations: ['x'] }), { limit }), { shadow }), { ...{ ...{ ...base, schemaViolations: ['x'] }, limit }, shadow }],
      [decisionWith({ ...base, effect: 'DENY', reason: 'DENIED_BY_SUSPENSION' }, { suspension }), { ...base, effect: 'DENY', reason: 'DENIED_BY_SUSPENSION', suspension }],
    ];
    for (const [built, spread] of cases) expect(JSON.stringify(built)).toBe(JSON.stringify(spread));
  });

  it('replaces an extra the decision already had, and leaves the decision itself as it was', () => {
    const first = decisionWith(base, { limit });
    const again = decisionWith(first, { limit: { ...limit, remaining: 3 } });
    expect(again.limit?.remaining).toBe(3);
    expect(first.limit?.remaining).toBe(9);
    expect(base).not.toHaveProperty('limit');
  });
});
