import { InvalidRequest, RequestFieldError } from '../../decide/index.js';
import { cutText } from '../../cut-text.js';

/** What stands in for a request message the transport could not read: recorded as an error decision, then refused. */
export type UnreadableMessage = OversizedMessage | MalformedMessage | OverLimitMessage;

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
    return unreadable(`message is ${this.bytes} bytes, over the limit of ${this.limit} bytes; send fewer or smaller attributes`);
  }
}

/** The longest decoder message kept; it is echoed to the caller and recorded. */
const MAX_REASON_CHARS = 200;

const EMPTY_FIELD = 'a field holds nothing where a value must be, such as an attribute map entry sent without its google.protobuf.Value';

/**
 * Stands in for a request whose bytes are not a valid protobuf message of the
 * method's type (a truncated field, an invalid wire type): bad input like any
 * other, so it is recorded and answered INVALID_ARGUMENT rather than INTERNAL.
 */
export class MalformedMessage {
  readonly reason: string;

  constructor(
    readonly type: string,
    readonly bytes: number,
    cause: unknown,
  ) {
    // A TypeError is the decoder meeting nothing where its message type needs a value (a Struct's map entry
    // sent without its Value): its own words (`Cannot read properties of null`) would tell the caller nothing.
    const text = cause instanceof TypeError ? EMPTY_FIELD : cause instanceof Error ? cause.message : String(cause);
    this.reason = cutText(text, MAX_REASON_CHARS);
  }

  toInvalidRequest(): InvalidRequest {
    return unreadable(`the ${this.bytes} bytes sent are not a valid ${this.type} protobuf message (${this.reason}); send a message encoded from verdict's .proto files`);
  }
}

/**
 * Stands in for a request with more elements in a repeated field than any request may
 * hold (a batch's items, a principal's roles): refused before it is decoded, since
 * decoding a megabyte of empty elements holds the thread for a tenth of a second.
 */
export class OverLimitMessage {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {}

  toInvalidRequest(): InvalidRequest {
    return refusedWhole(RequestFieldError.invalid(this.field, this.problem));
  }
}

export function isUnreadable(message: unknown): message is UnreadableMessage {
  return message instanceof OversizedMessage || message instanceof MalformedMessage || message instanceof OverLimitMessage;
}

function unreadable(message: string): InvalidRequest {
  return refusedWhole(new RequestFieldError('(message)', message));
}

/** A request refused as a whole before any of it was read into a question: recorded with nothing of it. */
export function refusedWhole(error: RequestFieldError): InvalidRequest {
  const empty = Object.freeze({});
  return new InvalidRequest(error, {
    principal: { id: '', roles: [], attributes: empty },
    action: '',
    resource: { type: '', id: '', attributes: empty },
    context: { attributes: empty },
  });
}
