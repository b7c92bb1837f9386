import type { Decision } from '../types.js';
import type { AuthnFailure } from './types.js';

/** The rule id under which an authentication failure appears in a decision's errors. */
export const AUTHN_RULE_ID = 'authn';

/**
 * The decision to record (and answer, as 401) for a refused credential: a deny
 * with reason DENIED_UNAUTHENTICATED, and the failure in `errors` so the decision
 * log says why — `EXPIRED: token expired at 2025-01-01T00:00:00.000Z`.
 *
 * @example
 * const result = await authenticator.authenticate({ headers });
 * if (!result.ok) return record(authnFailureDecision(result, store.current.version));
 */
export function authnFailureDecision(failure: AuthnFailure, policyVersion: string): Decision {
  return {
    effect: 'DENY',
    reason: 'DENIED_UNAUTHENTICATED',
    ruleIds: [],
    errors: [{ ruleId: AUTHN_RULE_ID, message: `${failure.reason}: ${failure.message}` }],
    policyVersion,
  };
}
