import {
  status,
  type Metadata,
  type ServerUnaryCall,
  type handleUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { CallMeta } from '../../decide/index.js';
import { StatusError, toStatus } from './status.js';

/** What the service wrappers need from the server's options. */
export interface CallOptions {
  /** The caller identity recorded with each decision. */
  readonly callerOf: (call: ServerUnaryCall<unknown, unknown>) => string;
  /** Where unexpected errors go (their details never reach the caller). */
  readonly report: (error: unknown, method: string) => void;
}

export function deadlineOf(call: Pick<ServerUnaryCall<unknown, unknown>, 'getDeadline'>): number {
  const deadline = call.getDeadline();
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

export function callMeta(call: ServerUnaryCall<unknown, unknown>, requestId: string, options: CallOptions): CallMeta {
  return {
    caller: options.callerOf(call),
    requestId: requestId !== '' ? requestId : headerOf(call.metadata, 'x-request-id'),
  };
}

function headerOf(metadata: Metadata, name: string): string | null {
  const value = metadata.get(name)[0];
  if (value === undefined) return null;
  return typeof value === 'string' ? value : value.toString('utf8');
}

/**
 * A unary method from an async function of the call: what it returns is the
 * response, what it throws becomes a status (see toStatus). A call whose
 * deadline has already passed is refused before any work, since its answer
 * could not reach anyone; grpc-js itself ends a call whose deadline passes later.
 */
export function unary<Request, Response>(
  method: string,
  options: CallOptions,
  run: (call: ServerUnaryCall<Request, Response>) => Response | PromiseLike<Response>,
): handleUnaryCall<Request, Response> {
  const report = (error: unknown): void => options.report(error, method);
  const fail = (callback: sendUnaryData<Response>, error: unknown): void => callback(toStatus(error, report));
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
    Promise.resolve(pending).then(
      (response) => callback(null, response),
      (error: unknown) => fail(callback, error),
    );
  };
}
