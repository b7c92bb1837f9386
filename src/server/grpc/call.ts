// What every unary gRPC method shares: the call's meta for the decision log,
// deadlines, errors turned into statuses, and the calls in flight for shutdown.

import {
  status,
  type Metadata,
  type ServerUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { CallMeta } from '../../decide/index.js';
import { InFlight, type InFlightEntry } from '../in-flight.js';
import { StatusError, toStatus } from './status.js';

/**
 * What verdict's unary handlers may read of a call: the same fields whether
 * grpc-js or the direct lane (direct-lane.ts) is answering it.
 */
export type UnaryCall<Request = unknown> = Pick<ServerUnaryCall<Request, unknown>, 'request' | 'metadata' | 'getDeadline' | 'getAuthContext' | 'getPeer' | 'cancelled'> & {
  /**
   * One request header's first value, read without building the whole metadata (the
   * direct lane has the raw headers; most checks only look up x-request-id).
   */
  readonly requestHeader?: (name: string) => string | null;
};

/** What the service wrappers need from the server's options. */
export interface CallOptions {
  /** The caller identity recorded with each decision. */
  readonly callerOf: (call: UnaryCall) => string;
  /** Where unexpected errors go (their details never reach the caller). */
  readonly report: (error: unknown, method: string) => void;
  /** The calls being answered, so a shutdown can end those still running when its grace is over. */
  readonly inFlight: InFlightCalls;
}

/**
 * The unary calls being answered, each with the callback that answers it. A call
 * is answered once: by its handler, or by endAll at the end of a shutdown's grace,
 * whichever comes first. (grpc-js's forceShutdown cannot be relied on for this:
 * it only tracks the sessions it cuts while channelz is on, which verdict turns off.)
 */
export class InFlightCalls {
  private readonly calls = new InFlight<sendUnaryData<unknown>>();

  add(callback: sendUnaryData<unknown>): InFlightEntry {
    return this.calls.add(callback);
  }

  /** Takes the call off; false when it was already answered (ended by endAll). */
  take(entry: InFlightEntry): boolean {
    return this.calls.take(entry);
  }

  /** Answers every call still running with `error`'s status. */
  endAll(error: StatusError): void {
    for (const callback of this.calls.takeAll()) callback(toStatus(error));
  }
}

export function deadlineOf(call: Pick<UnaryCall, 'getDeadline'>): number {
  const deadline = call.getDeadline();
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

export function callMeta(call: UnaryCall, requestId: string, options: CallOptions): CallMeta {
  return {
    caller: options.callerOf(call),
    requestId: requestId !== '' ? requestId : call.requestHeader !== undefined ? call.requestHeader('x-request-id') : headerOf(call.metadata, 'x-request-id'),
  };
}

function headerOf(metadata: Metadata, name: string): string | null {
  const value = metadata.get(name)[0];
  if (value === undefined) return null;
  return typeof value === 'string' ? value : value.toString('utf8');
}

/** A unary method as verdict registers it: callable by grpc-js and by the direct lane alike. */
export type UnaryHandler<Request, Response> = (call: UnaryCall<Request>, callback: sendUnaryData<Response>) => void;

/**
 * A unary method from an async function of the call: what it returns is the
 * response, what it throws becomes a status (see toStatus). A call whose
 * deadline has already passed is refused before any work, since its answer
 * could not reach anyone; grpc-js itself ends a call whose deadline passes later.
 */
export function unary<Request, Response>(
  method: string,
  options: CallOptions,
  run: (call: UnaryCall<Request>) => Response | PromiseLike<Response>,
): UnaryHandler<Request, Response> {
  const report = (error: unknown): void => options.report(error, method);
  const fail = (callback: sendUnaryData<Response>, error: unknown): void => callback(toStatus(error, report));
  const inFlight = options.inFlight;
  return (call, callback) => {
    if (deadlineOf(call) <= Date.now()) {
      fail(callback, new StatusError(status.DEADLINE_EXCEEDED, 'deadline exceeded before the call started'));
      return;
    }
    let pending: Response | PromiseLike<Response>;
    try {
      pending = run(call);
    } catch (error) {
      fail(callback, error);
      return;
    }
    const entry = inFlight.add(callback as sendUnaryData<unknown>);
    Promise.resolve(pending).then(
      (response) => {
        if (inFlight.take(entry)) callback(null, response);
      },
      (error: unknown) => {
        if (inFlight.take(entry)) fail(callback, error);
      },
    );
  };
}
