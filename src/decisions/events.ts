/**
 * The decision log's health and events, one implementation for both sides:
 * the writer (writer.ts) is their source, each deciding thread's client
 * (log-client.ts) mirrors them from the writer's messages, and the server
 * listens to the client (the cluster primary, to the writer).
 */
import type { VerdictError } from '../errors.js';

export interface HealthState {
  readonly healthy: boolean;
  /** Why the last write failed, with what to do; null while healthy. */
  readonly lastError: string | null;
}

/** One committed transaction. */
export interface CommitStats {
  readonly rows: number;
  readonly durationMs: number;
}

/** A batch that could not be written, or rows the database refused. */
export interface WriteFailure {
  readonly error: VerdictError;
  /** Rows in the failed batch (or refused rows). */
  readonly rows: number;
  /**
   * Of those, rows whose append had already resolved (async mode). After a batch
   * failure they are kept and retried; rows the database refused (a duplicate
   * decision id) are not, and this is the only report of them.
   */
  readonly acknowledgedRows: number;
}

/** Someone waiting for a write (an append, a flush) to be confirmed or refused. */
export interface Waiter {
  resolve(): void;
  reject(error: VerdictError): void;
}

/** What an operation with nothing to wait for returns. */
export const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Observers of one kind of event. An observer that throws never breaks the
 * emitter or the other observers: metrics and logging must not be able to stop
 * the decision log.
 */
class Listeners<T> {
  private readonly listeners = new Set<(value: T) => void>();

  add(listener: (value: T) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(value: T): void {
    for (const listener of this.listeners) {
      try {
        listener(value);
      } catch {
        // See the class comment.
      }
    }
  }
}

/**
 * The health of a decision log and its three kinds of events, as the writer
 * (writer.ts) knows them and as each deciding thread's client (log-client.ts)
 * mirrors them from the writer's messages.
 */
export class LogEvents {
  private health: HealthState = { healthy: true, lastError: null };
  private readonly healthListeners = new Listeners<HealthState>();
  protected readonly commits = new Listeners<CommitStats>();
  protected readonly writeErrors = new Listeners<WriteFailure>();

  /** False from a failed write until a write (or probe) succeeds again. */
  get healthy(): boolean {
    return this.health.healthy;
  }

  /** Why the last write failed, with what to do; null while healthy. */
  get lastError(): string | null {
    return this.health.lastError;
  }

  /** Called when `healthy` or `lastError` changes. Returns an unsubscribe function. */
  onHealthChange(listener: (state: HealthState) => void): () => void {
    return this.healthListeners.add(listener);
  }

  /** Called after every committed transaction, e.g. to feed batch-size and commit-time metrics. */
  onCommit(listener: (stats: CommitStats) => void): () => void {
    return this.commits.add(listener);
  }

  /** Called for every failed batch and for rows the database refused, including rows already acknowledged in async mode. */
  onWriteError(listener: (failure: WriteFailure) => void): () => void {
    return this.writeErrors.add(listener);
  }

  protected setHealth(healthy: boolean, lastError: string | null): void {
    if (this.health.healthy === healthy && this.health.lastError === lastError) return;
    this.health = { healthy, lastError };
    this.healthListeners.emit(this.health);
  }
}
