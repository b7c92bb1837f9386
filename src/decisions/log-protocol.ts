/**
 * The messages between a decision log's writer (log-host.ts, in a worker
 * thread or the cluster primary) and the processes or threads that decide
 * (log-client.ts). Everything here survives structured clone, which both
 * worker_threads and cluster IPC (with `serialization: 'advanced'`) use.
 *
 * Rows travel as one flat array per batch, ROW_FIELDS values per row, in
 * column order: one array of primitives clones much faster than an array of
 * objects, and the deciding thread's time is what bounds throughput.
 */
import { VerdictError, type ErrorCode } from '../errors.js';
import type { AuditStatus, CommitStats, HealthState } from './log.js';
import type { DecisionRow } from './row.js';

export const ROW_FIELDS = 15;

/** A VerdictError as it crosses a thread or process boundary. */
export interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
}

export type ClientMessage =
  | { readonly t: 'hello' }
  /** `acknowledged`: these decisions were already answered (async mode); see DecisionLog.appendRow. */
  | { readonly t: 'rows'; readonly id: number; readonly acknowledged: boolean; readonly values: unknown[] }
  | { readonly t: 'flush' | 'probe' | 'status' | 'close'; readonly id: number };

export type HostMessage =
  | { readonly t: 'ready'; readonly health: HealthState }
  | { readonly t: 'open-failed'; readonly error: WireError }
  /** Rows of batch `id` the database refused, by their index in the batch; `failed` when none were written. */
  | { readonly t: 'rows'; readonly id: number; readonly refused: ReadonlyArray<readonly [number, WireError]>; readonly failed: WireError | null }
  | { readonly t: 'reply'; readonly id: number; readonly value: boolean | AuditStatus | null; readonly error: WireError | null }
  | { readonly t: 'health'; readonly health: HealthState }
  | { readonly t: 'commit'; readonly stats: CommitStats }
  | { readonly t: 'write-error'; readonly error: WireError; readonly rows: number; readonly acknowledgedRows: number };

/** Where messages go and come from: a MessagePort, a worker thread, or a cluster worker's IPC channel. */
export interface LogChannel {
  post(message: ClientMessage | HostMessage): void;
  /** The one handler for incoming messages. */
  listen(handler: (message: unknown) => void): void;
  /** Called once when the other side is gone (thread exited, process disconnected), with why. */
  onGone(handler: (reason: string) => void): void;
}

export function toWire(error: unknown): WireError {
  if (error instanceof VerdictError) return { code: error.code, message: error.message };
  return { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

export function fromWire(error: WireError): VerdictError {
  return new VerdictError(error.code, error.message);
}

/** Appends one row's values to a batch, in column order. */
export function pushRow(values: unknown[], row: DecisionRow): void {
  values.push(
    row.decisionId, row.timeMs, row.caller, row.requestId, row.principalId, row.action, row.resourceType,
    row.resourceId, row.effect, row.reason, row.ruleIds, row.errors, row.policyVersion, row.request, row.latencyUs,
  );
}

/**
 * The rows of a batch, checked as they are read back: a message from another
 * process is input like any other, and a malformed one must fail its batch
 * with a clear error, not write a half-typed row into the audit trail.
 */
export function readRows(values: unknown): DecisionRow[] {
  if (!Array.isArray(values) || values.length % ROW_FIELDS !== 0) {
    throw new VerdictError('INTERNAL', `a batch of decision rows must be an array of ${ROW_FIELDS} values per row`);
  }
  const rows: DecisionRow[] = [];
  for (let i = 0; i < values.length; i += ROW_FIELDS) {
    const v = values;
    const requestId = v[i + 3];
    if (
      !allStrings(v, i, [0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]) ||
      !Number.isSafeInteger(v[i + 1]) ||
      !Number.isSafeInteger(v[i + 14]) ||
      (requestId !== null && typeof requestId !== 'string')
    ) {
      throw new VerdictError('INTERNAL', `row ${i / ROW_FIELDS} of a batch of decision rows has a value of the wrong type`);
    }
    rows.push({
      decisionId: v[i] as string,
      timeMs: v[i + 1] as number,
      caller: v[i + 2] as string,
      requestId: requestId as string | null,
      principalId: v[i + 4] as string,
      action: v[i + 5] as string,
      resourceType: v[i + 6] as string,
      resourceId: v[i + 7] as string,
      effect: v[i + 8] as string,
      reason: v[i + 9] as string,
      ruleIds: v[i + 10] as string,
      errors: v[i + 11] as string,
      policyVersion: v[i + 12] as string,
      request: v[i + 13] as string,
      latencyUs: v[i + 14] as number,
    });
  }
  return rows;
}

function allStrings(values: readonly unknown[], base: number, offsets: readonly number[]): boolean {
  for (const offset of offsets) if (typeof values[base + offset] !== 'string') return false;
  return true;
}
