import { VerdictError } from '../../errors.js';
import type { Decision, DecisionRequest } from '../../types.js';

/**
 * A request field that is missing or not valid. The message names the field
 * first (`principal.id is required`, `principal.attributes.tier: ...`) because
 * it is what the caller reads in the INVALID_ARGUMENT status.
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
 * A request that failed validation, handed to the handler anyway so that it can
 * be recorded as an error decision before the caller is told INVALID_ARGUMENT.
 * `request` holds whatever could be read (empty strings and attributes elsewhere),
 * which is what the record shows.
 */
export class InvalidRequest {
  constructor(
    readonly error: RequestFieldError,
    readonly request: DecisionRequest,
  ) {}

  /** The decision to record for it (and to answer, for an item of a batch). */
  decision(policyVersion: string): Decision {
    return {
      effect: 'DENY',
      reason: 'DENIED_INVALID_REQUEST',
      ruleIds: [],
      errors: [{ ruleId: '', message: this.error.message }],
      policyVersion,
    };
  }
}

/** What the transport hands a check handler: a valid request, or an invalid one to record. */
export type CheckInput = DecisionRequest | InvalidRequest;

/**
 * Stands in for a request message larger than the configured limit. The transport
 * accepts messages up to a hard ceiling above the limit so that an oversized one can
 * still be recorded as an error decision before it is refused.
 */
export class OversizedMessage {
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {}

  toInvalidRequest(): InvalidRequest {
    const error = new RequestFieldError('(message)', `message is ${this.bytes} bytes, over the limit of ${this.limit} bytes; send fewer or smaller attributes`);
    const empty = Object.freeze({});
    return new InvalidRequest(error, {
      principal: { id: '', roles: [], attributes: empty },
      action: '',
      resource: { type: '', id: '', attributes: empty },
      context: { attributes: empty },
    });
  }
}
