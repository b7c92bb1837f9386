import { InvalidRequest, RequestFieldError } from '../../decide/index.js';

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
