// verdict.v1.Authorization over gRPC: Check and CheckBatch as adapters of the
// decide core, with invalid, oversized and malformed requests recorded before they are refused.

import { Metadata, status, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { BatchRefused, InvalidRequest, REQUEST_RULE_ID, RequestFieldError, type CheckResult } from '../../decide/index.js';
import { VerdictError } from '../../errors.js';
import { callMeta, unary, type CallOptions } from './call.js';
import { toBatchInputs, toCheckInput, toCheckResponse } from './convert/verdict.js';
import type { AuthorizationHandlers } from './handlers.js';
import { isUnreadable, refusedWhole, type UnreadableMessage } from './oversized.js';
import type { CheckBatchRequest__Output } from './generated/verdict/v1/CheckBatchRequest.js';
import type { CheckBatchResponse } from './generated/verdict/v1/CheckBatchResponse.js';
import type { CheckRequest__Output } from './generated/verdict/v1/CheckRequest.js';
import type { CheckResponse } from './generated/verdict/v1/CheckResponse.js';
import type { SettleRequest__Output } from './generated/verdict/v1/SettleRequest.js';
import type { SettleResponse } from './generated/verdict/v1/SettleResponse.js';
import { StatusError } from './status.js';

export const AUTHORIZATION_SERVICE = 'verdict.v1.Authorization';

/** Trailer carrying the id under which a rejected request was recorded. */
export const DECISION_ID_TRAILER = 'verdict-decision-id';

export interface AuthorizationOptions extends CallOptions {
  /** Batches with more items are refused whole, before any item is decided or recorded. */
  readonly maxBatchItems: number;
}

/** verdict.v1.Authorization over the decide core (or any AuthorizationHandlers). */
export function authorizationService(handlers: AuthorizationHandlers, options: AuthorizationOptions): UntypedServiceImplementation {
  return {
    Check: unary<CheckRequest__Output | UnreadableMessage, CheckResponse>('Check', options, async (call) => {
      const message = call.request;
      if (isUnreadable(message)) return refuseUnreadable(message, call, handlers, options);
      const meta = callMeta(call, message.requestId, options);
      const input = toCheckInput(message);
      const result = await handlers.check(input, meta);
      // Recorded first (as an error decision), refused second.
      if (input instanceof InvalidRequest) throw invalidArgument(input.error, result.decisionId);
      const overLimit = refusedOverLimit(result);
      if (overLimit !== null) throw invalidArgument(overLimit, result.decisionId);
      return toCheckResponse(result, meta.requestId);
    }),

    CheckBatch: unary<CheckBatchRequest__Output | UnreadableMessage, CheckBatchResponse>('CheckBatch', options, async (call) => {
      const message = call.request;
      if (isUnreadable(message)) return refuseUnreadable(message, call, handlers, options);
      const count = message.items.length;
      const meta = callMeta(call, message.requestId, options);
      if (count > options.maxBatchItems) {
        // Refused whole, and recorded once, as bad input is.
        const refused = refusedWhole(RequestFieldError.invalid('items', `${count} items exceed the limit of ${options.maxBatchItems} per batch`));
        const result = await handlers.check(refused, meta);
        throw invalidArgument(refused.error, result.decisionId);
      }
      const { inputs, shared } = toBatchInputs(message);
      if (shared !== null && inputs.length === 0) {
        // No item records the refusal of the shared principal: it is recorded once, as bad input is.
        const result = await handlers.check(refusedWhole(shared), meta);
        throw invalidArgument(shared, result.decisionId);
      }
      // A batch over the pipeline's record budget is refused whole, its refusal recorded once (BatchRefused).
      const results = await Promise.resolve(handlers.checkBatch(inputs, meta, { cancelled: () => call.cancelled })).catch((error: unknown) => {
        throw error instanceof BatchRefused ? invalidArgument(error.error, error.result.decisionId) : error;
      });
      if (results.length !== inputs.length) {
        throw new VerdictError('INTERNAL', `checkBatch answered ${results.length} results for ${inputs.length} items`);
      }
      if (shared) throw invalidArgument(shared, null);
      const out = new Array<CheckResponse>(results.length);
      for (let i = 0; i < results.length; i++) {
        const result: CheckResult = results[i]!;
        if (inputs[i] instanceof InvalidRequest && result.decision.effect === 'ALLOW') {
          throw new VerdictError('INTERNAL', `checkBatch allowed invalid item ${i}`);
        }
        out[i] = toCheckResponse(result, meta.requestId);
      }
      return { results: out };
    }),

    Settle: unary<SettleRequest__Output | UnreadableMessage, SettleResponse>('Settle', options, async (call) => {
      if (handlers.settle === undefined) throw new StatusError(status.UNIMPLEMENTED, 'Settle is not served here');
      const message = call.request;
      const unreadable = isUnreadable(message);
      const meta = callMeta(call, unreadable ? '' : message.requestId, options);
      // An unreadable message is recorded as a refused Settle like any malformed one.
      const outcome = await handlers.settle(unreadable ? '' : message.decisionId, unreadable ? Number.NaN : message.actualUnits, meta);
      if (outcome.kind !== 'settled') {
        const trailers = new Metadata();
        trailers.set(DECISION_ID_TRAILER, outcome.settleId);
        throw new StatusError(SETTLE_STATUS[outcome.kind], outcome.message, trailers);
      }
      return { settleId: outcome.settleId, reservedUnits: outcome.reservedUnits, actualUnits: outcome.actualUnits, limitIds: [...outcome.limitIds], remaining: String(Math.max(0, Math.floor(outcome.remaining))) };
    }),
  };
}

const SETTLE_STATUS = { invalid: status.INVALID_ARGUMENT, unknown: status.NOT_FOUND, expired: status.FAILED_PRECONDITION, 'settled-already': status.ALREADY_EXISTS, settling: status.ABORTED, unavailable: status.UNAVAILABLE } as const;

/** Records an oversized or malformed message as one error decision, then refuses it. */
async function refuseUnreadable(
  message: UnreadableMessage,
  call: Parameters<typeof callMeta>[0],
  handlers: AuthorizationHandlers,
  options: CallOptions,
): Promise<never> {
  const input = message.toInvalidRequest();
  const result = await handlers.check(input, callMeta(call, '', options));
  throw invalidArgument(input.error, result.decisionId);
}

/** A request the pipeline refused for breaking a cap on its size (decide/bounds.ts), as the field error it names. */
function refusedOverLimit(result: CheckResult): RequestFieldError | null {
  const { decision } = result;
  if (decision.reason !== 'DENIED_INVALID_REQUEST') return null;
  const error = decision.errors[0];
  if (error === undefined || error.ruleId !== REQUEST_RULE_ID) return null;
  return new RequestFieldError('(request)', error.message);
}

function invalidArgument(error: RequestFieldError, decisionId: string | null): StatusError {
  if (decisionId === null) return new StatusError(status.INVALID_ARGUMENT, error.message);
  const trailers = new Metadata();
  trailers.set(DECISION_ID_TRAILER, decisionId);
  return new StatusError(status.INVALID_ARGUMENT, error.message, trailers);
}
