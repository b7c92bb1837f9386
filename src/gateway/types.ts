import type { Decision, Reason } from '../types.js';

// The gateway adapter's terms: an HTTP request as a gateway describes it, and the
// answer as an HTTP status, headers and body, whatever the gateway's protocol.

/** Header naming the decision record of every gateway answer, allow or deny. */
export const DECISION_ID_HEADER = 'x-verdict-decision-id';
/** Header telling the upstream who the caller is, on an allow. */
export const PRINCIPAL_HEADER = 'x-verdict-principal';

/** An HTTP request as a gateway describes it, before anything is decided. */
export interface GatewayRequest {
  /** The original request's method: `POST`. */
  readonly method: string;
  /** The original request target: path and query, as sent (`/v1/models/m1/predict?x=1`). */
  readonly uri: string;
  /** The original request's headers, by lower-case name (several values joined with `, `). */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** Lower-case names of the headers sent more than once; a route that reads one refuses the request. */
  readonly repeatedHeaders?: ReadonlySet<string>;
  /** The client's address and, when the gateway authenticated its connection, its identity. */
  readonly source: { readonly address: string | null; readonly principal: string | null };
  /** Values the gateway's configuration attached (Envoy `context_extensions`); `{}` for forward-auth. */
  readonly extensions: Readonly<Record<string, string>>;
  /** The gateway's id for the request (Envoy's request id, `x-request-id`). */
  readonly requestId: string | null;
  /** Why the transport already refuses the request (a forward-auth header only a client can have sent); recorded as a refusal. */
  readonly refusal?: string | null;
}

/** How a gateway answer reads in HTTP terms. */
export type GatewayStatus = 200 | 401 | 403 | 429 | 503;

/** The decision for one gateway request, ready to be put in the gateway's own terms. */
export interface GatewayAnswer {
  readonly status: GatewayStatus;
  readonly decision: Decision;
  readonly decisionId: string;
  /** The authenticated principal's id; null when authentication failed. */
  readonly principalId: string | null;
  /**
   * Headers of the answer. On an allow they are for the upstream (`x-verdict-principal`,
   * `x-verdict-decision-id`); on a deny, for the client (`x-verdict-decision-id`).
   */
  readonly headers: Readonly<Record<string, string>>;
  /** A short JSON body for a deny; '' on an allow. */
  readonly body: string;
}

/** The HTTP status for a decision: allow 200, failed authentication 401, rate limit 429, any other deny 403. */
export function statusFor(reason: Reason, effect: Decision['effect']): GatewayStatus {
  if (effect === 'ALLOW') return 200;
  if (reason === 'DENIED_UNAUTHENTICATED') return 401;
  if (reason === 'DENIED_BY_RATE_LIMIT') return 429;
  return 403;
}
