import type { ConditionError, Effect, Reason } from '../types.js';

/** One row of the decision log, as the server hands it to the writer. */
export interface DecisionRecord {
  /** Unique, sortable by time (UUIDv7). */
  readonly decisionId: string;
  /** Milliseconds since the Unix epoch, when the decision was made. */
  readonly time: number;
  /** Who asked: a gateway or service identity, or the peer address. */
  readonly caller: string;
  /** The caller's own id for the request, when it sent one. */
  readonly requestId: string | null;
  readonly principalId: string;
  readonly action: string;
  readonly resourceType: string;
  readonly resourceId: string;
  readonly effect: Effect;
  readonly reason: Reason;
  readonly ruleIds: readonly string[];
  readonly errors: readonly ConditionError[];
  readonly policyVersion: string;
  /** The request's roles and attributes, as JSON-ready data. */
  readonly request: {
    readonly principal: { readonly roles: readonly string[]; readonly attributes: unknown };
    readonly resource: { readonly attributes: unknown };
    readonly context: { readonly attributes: unknown };
  };
  /** Time spent deciding, in microseconds (engine plus limits, not the disk). */
  readonly latencyUs: number;
}
