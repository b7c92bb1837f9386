import type { Decision } from '../types.js';

/** What the decide core adds to a decision: never set by the engine itself. */
export type DecisionExtras = Pick<Decision, 'schemaViolations' | 'suspension' | 'limit' | 'shadow'>;

type Built = { -readonly [K in keyof Decision]: Decision[K] };

/**
 * `decision` with `extras` set (replacing those it had), built member by member.
 * `{ ...decision, shadow }` would say the same, but an object spread followed by a
 * member takes a slow path in V8 11 (Node 20): about 0.65 µs a time against 0.02 µs
 * here, paid on every check under a rate limit and every check in shadow mode. The
 * extras come in the order the decide core adds them (schema, suspension, limit, shadow),
 * the order the spreads gave.
 */
export function decisionWith(decision: Decision, extras: DecisionExtras): Decision {
  const out: Built = { effect: decision.effect, reason: decision.reason, ruleIds: decision.ruleIds, errors: decision.errors, policyVersion: decision.policyVersion };
  const schemaViolations = extras.schemaViolations ?? decision.schemaViolations;
  if (schemaViolations !== undefined) out.schemaViolations = schemaViolations;
  const suspension = extras.suspension ?? decision.suspension;
  if (suspension !== undefined) out.suspension = suspension;
  const limit = extras.limit ?? decision.limit;
  if (limit !== undefined) out.limit = limit;
  const shadow = extras.shadow ?? decision.shadow;
  if (shadow !== undefined) out.shadow = shadow;
  return out;
}
