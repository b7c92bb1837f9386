import type { DecisionDetails } from '../decisions/record.js';
import { VerdictError } from '../errors.js';
import type { Decision, DecisionRequest } from '../types.js';
import { invalidRequest, type Refusal } from './refusals.js';

/**
 * What a transport hands the decision pipeline for one question, and what it gets
 * back. The transports (gRPC, Envoy ext_authz, forward-auth) turn their own
 * messages into these, and answer from a CheckResult in their own terms.
 */

/** What the transport knows about a call, beyond its message. */
export interface CallMeta {
  /** Who asked, for the decision log: the peer address unless an identity was established. */
  readonly caller: string;
  /** The caller's id for the request (a message's `request_id`, else an `x-request-id` header). */
  readonly requestId: string | null;
  /** Extras recorded with the decision (a gateway request's `{http: {method, path}}`); none when absent. */
  readonly details?: DecisionDetails | null;
}

/** A recorded decision: the request as recorded, what was decided, and where the log keeps it. */
export interface CheckResult {
  readonly request: DecisionRequest;
  readonly decision: Decision;
  readonly decisionId: string;
}

/**
 * A request field that is missing or not valid. The message names the field
 * first (`principal.id is required`, `principal.attributes.tier: ...`) because
 * it is what the caller reads.
 */
export class RequestFieldError extends VerdictError {
  /** Path of the offending field, e.g. `items[2].resource.type`. */
  readonly field: string;

  constructor(field: string, message: string) {
    super('INPUT_INVALID', message);
    this.name = 'RequestFieldError';
    this.field = field;
  }

  static required(field: string): RequestFieldError {
    return new RequestFieldError(field, `${field} is required`);
  }

  static invalid(field: string, problem: string): RequestFieldError {
    return new RequestFieldError(field, `${field}: ${problem}`);
  }
}

/**
 * A request refused before the engine (see refusals.ts): recorded as a deny with
 * the refusal's reason and error, never evaluated. `request` holds whatever could
 * be read of it (empty strings and attributes elsewhere), which is what the
 * decision log shows.
 */
export class RefusedRequest {
  constructor(
    readonly request: DecisionRequest,
    readonly refusal: Refusal,
  ) {}
}

/**
 * A request that failed validation. It is recorded like any refusal; the
 * transport then tells the caller which field was wrong (gRPC INVALID_ARGUMENT).
 */
export class InvalidRequest extends RefusedRequest {
  constructor(
    readonly error: RequestFieldError,
    request: DecisionRequest,
  ) {
    super(request, invalidRequest(error.message));
  }
}

/** One question for the pipeline: a request to decide, or one already refused. */
export type CheckInput = DecisionRequest | RefusedRequest;
