import { inspect } from 'node:util';

/**
 * Every error verdict raises on purpose is a VerdictError: it carries a stable
 * machine-readable code and a message that tells the reader what to do next.
 */
export type ErrorCode =
  | 'USAGE'
  | 'INPUT_UNREADABLE'
  | 'INPUT_INVALID'
  | 'POLICY_INVALID'
  | 'POLICY_DIR_MISSING'
  | 'DECISION_LOG_UNAVAILABLE'
  | 'DECISION_LOG_CORRUPT'
  /** The decision log records another replica id than this server's (decisions/replica.ts). */
  | 'DECISION_LOG_REPLICA_MISMATCH'
  | 'CONFIG_INVALID'
  | 'ADDRESS_UNAVAILABLE'
  | 'NOT_FOUND'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'CANCELLED'
  | 'INTERNAL';

export class VerdictError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VerdictError';
    this.code = code;
  }
}

/** The message of anything thrown, without a stack trace. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  try {
    return String(error);
  } catch {
    // An object without a prototype (or whose toString throws) has no string of its own.
    return inspect(error, { depth: 2, breakLength: Infinity });
  }
}
