// Errors as gRPC statuses: what a caller may see, and what stays inside.

import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { VerdictError, type ErrorCode } from '../../errors.js';

/** A failure the transport itself decides, with its gRPC code (and trailers, if any). */
export class StatusError extends Error {
  readonly code: status;
  readonly metadata: Metadata | undefined;

  constructor(code: status, details: string, metadata?: Metadata) {
    // grpc-js percent-encodes the message with encodeURI, which throws on half a surrogate pair.
    super(details.toWellFormed());
    this.name = 'StatusError';
    this.code = code;
    this.metadata = metadata;
  }
}

/**
 * A status message as the `grpc-message` header carries it: percent-encoded, and well-formed
 * first (encodeURI throws on half a surrogate pair, and a throw there answered nothing).
 */
export function grpcMessageHeader(details: string): string {
  return encodeURI(details.toWellFormed());
}

const CODES: Readonly<Record<ErrorCode, status>> = {
  USAGE: status.INVALID_ARGUMENT,
  INPUT_UNREADABLE: status.INVALID_ARGUMENT,
  INPUT_INVALID: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  // Fail closed and say so: the caller may retry on another replica.
  DECISION_LOG_UNAVAILABLE: status.UNAVAILABLE,
  DECISION_LOG_CORRUPT: status.DATA_LOSS,
  DECISION_LOG_REPLICA_MISMATCH: status.FAILED_PRECONDITION,
  POLICY_INVALID: status.FAILED_PRECONDITION,
  POLICY_DIR_MISSING: status.FAILED_PRECONDITION,
  CONFIG_INVALID: status.FAILED_PRECONDITION,
  ADDRESS_UNAVAILABLE: status.UNAVAILABLE,
  // The caller went away; nobody reads this answer.
  CANCELLED: status.CANCELLED,
  INTERNAL: status.INTERNAL,
};

/**
 * The status a caller sees for an error thrown while serving it. A VerdictError's
 * message is written for people and goes out as is; anything else is a bug whose
 * message and stack stay inside (handed to `report`, e.g. to log) and the caller
 * gets a bare INTERNAL.
 */
export function toStatus(error: unknown, report?: (error: unknown) => void): Partial<StatusObject> {
  if (error instanceof StatusError) {
    return error.metadata ? { code: error.code, details: error.message, metadata: error.metadata } : { code: error.code, details: error.message };
  }
  if (error instanceof VerdictError) {
    const code = CODES[error.code] ?? status.INTERNAL;
    if (code === status.INTERNAL) report?.(error);
    return { code, details: error.message.toWellFormed() };
  }
  report?.(error);
  return { code: status.INTERNAL, details: 'internal error' };
}
