/**
 * The messages between the decision log's writer (log-host.ts, in a worker
 * thread or the cluster primary) and the threads or processes that decide
 * (log-client.ts). Everything here survives structured clone, which both
 * worker_threads and cluster IPC (with `serialization: 'advanced'`) use.
 *
 * A deciding thread sends the rows of one event-loop turn as one `rows`
 * message (flat values, see row.ts), and the writer answers each such message
 * exactly once.
 */
import type { MessagePort } from 'node:worker_threads';
import { VerdictError, type ErrorCode } from '../errors.js';
import type { AlertRow } from './alerts-table.js';
import type { CommitStats, HealthState } from './events.js';
import type { AuditStatus } from './writer.js';

/** A VerdictError as it crosses a thread or process boundary. */
export interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
}

export type ClientMessage =
  | { readonly t: 'hello' }
  /** `acknowledged`: these decisions were already answered (async mode); see LogWriter.write. */
  | { readonly t: 'rows'; readonly id: number; readonly acknowledged: boolean; readonly values: unknown[] }
  | { readonly t: 'flush' | 'probe' | 'status' | 'close'; readonly id: number }
  /** Anomaly alerts to store (alerts-table.ts); answered by a `reply`. */
  | { readonly t: 'alerts'; readonly id: number; readonly rows: readonly AlertRow[] };

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

/** One end of a MessageChannel, or a writer thread's parentPort. */
export function portChannel(port: MessagePort): LogChannel {
  return {
    post: (message) => port.postMessage(message),
    listen: (handler) => port.on('message', handler),
    onGone: (handler) => port.once('close', () => handler('the channel was closed')),
  };
}
