/**
 * The vocabulary every part of verdict shares: a decision request and the decision
 * made of it. Pure types, no behaviour, so any folder may import them.
 */
/** A JSON value as it arrives in a request's attributes. */
export type AttributeValue =
  | null
  | boolean
  | number
  | string
  | readonly AttributeValue[]
  | { readonly [key: string]: AttributeValue };

export type Attributes = { readonly [key: string]: AttributeValue };

export interface Principal {
  readonly id: string;
  readonly roles: readonly string[];
  readonly attributes: Attributes;
}

export interface Resource {
  readonly type: string;
  readonly id: string;
  readonly attributes: Attributes;
}

export interface RequestContext {
  readonly attributes: Attributes;
}

/** "May principal P do action A on resource R, in context C?" */
export interface DecisionRequest {
  readonly principal: Principal;
  readonly action: string;
  readonly resource: Resource;
  readonly context: RequestContext;
}

export type Effect = 'ALLOW' | 'DENY';

export type Reason =
  | 'ALLOWED_BY_RULE'
  | 'DENIED_BY_RULE'
  | 'DENIED_BY_DEFAULT'
  | 'DENIED_BY_RATE_LIMIT'
  | 'DENIED_BY_ERROR'
  | 'DENIED_INVALID_REQUEST'
  /** The caller's credential was missing or not accepted; see the decision's errors (rule id `authn`). */
  | 'DENIED_UNAUTHENTICATED';

export interface ConditionError {
  readonly ruleId: string;
  readonly message: string;
}

/** The engine's answer. A decision id is added by whoever records it. */
export interface Decision {
  readonly effect: Effect;
  readonly reason: Reason;
  /** Ids of the rules that decided: the matching denies for a deny, the matching allows for an allow. */
  readonly ruleIds: readonly string[];
  readonly errors: readonly ConditionError[];
  readonly policyVersion: string;
}
