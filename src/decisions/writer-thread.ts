import type { Worker } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import { startThread } from '../threads.js';
import type { Clock } from './clock.js';
import type { DecisionLogMode } from './connection.js';
import { loadOrCreateSigningKey } from './keys.js';
import { DecisionLogClient } from './log-client.js';
import type { LogChannel } from './log-protocol.js';
import type { SensitiveAttributes } from './sensitive.js';
import { LogWriter } from './writer.js';

/**
 * How to open the decision log's writer, in a form that can be handed to
 * another thread or process (file paths rather than key objects).
 */
export interface WriterSettings {
  readonly path: string;
  readonly mode: DecisionLogMode;
  readonly checkpoints: {
    readonly signingKey: string;
    readonly publicKey: string;
    readonly everyRows: number;
    readonly everySeconds: number;
  } | null;
  /** The replica the log belongs to (replica.ts); none: its name is left as it is. */
  readonly replicaId?: string;
  /** How long a write waits for another connection's lock; default 500 ms. */
  readonly busyTimeoutMs?: number;
  /** Async mode: how soon acknowledged rows of a failed transaction are retried; default 1000 ms. */
  readonly retryDelayMs?: number;
}

/**
 * Open the writer these settings describe, in this thread (the writer
 * thread's entry, and the cluster primary).
 * @throws VerdictError as LogWriter.open, or CONFIG_INVALID for an unreadable key
 */
export function openWriter(settings: WriterSettings, clock?: Clock): LogWriter {
  const checkpoints = settings.checkpoints;
  return LogWriter.open(settings.path, {
    mode: settings.mode,
    busyTimeoutMs: settings.busyTimeoutMs,
    retryDelayMs: settings.retryDelayMs,
    replicaId: settings.replicaId ?? null,
    clock,
    checkpoints:
      checkpoints === null
        ? null
        : {
            signer: loadOrCreateSigningKey({ signingKey: checkpoints.signingKey, publicKey: checkpoints.publicKey }).signer,
            everyRows: checkpoints.everyRows,
            everySeconds: checkpoints.everySeconds,
          },
  });
}

/**
 * Start the decision log's writer in a worker thread and connect to it. The
 * event loop that answers checks then never waits for SQLite, the hash chain
 * or fsync; it hands each turn's rows over in one message. A thread that dies
 * is replaced by the client's next health probe.
 * @throws VerdictError when the log cannot be opened (before any check is served)
 */
export async function startWriterThread(settings: WriterSettings, sensitive: SensitiveAttributes | null): Promise<DecisionLogClient> {
  let worker: Worker | null = null;
  const spawn = async (): Promise<LogChannel> => {
    worker = spawnWriterThread(settings);
    return workerChannel(worker);
  };
  const channel = await spawn();
  return DecisionLogClient.connect(channel, {
    path: settings.path,
    mode: settings.mode,
    sensitive,
    ownsLog: true,
    reconnect: spawn,
    release: async () => {
      await worker?.terminate();
    },
  });
}

/** A new writer thread for these settings; it opens the log and answers a client's `hello` (log-client.ts). */
export function spawnWriterThread(settings: WriterSettings): Worker {
  return startThread(import.meta.url, './writer-thread-entry', { workerData: settings });
}

/** The deciding thread's side of a writer thread. */
export function workerChannel(worker: Worker): LogChannel {
  return {
    post: (message) => worker.postMessage(message),
    listen: (handler) => worker.on('message', handler),
    onGone: (handler) => {
      worker.once('error', (error) => handler(`writer thread failed: ${messageOf(error)}`));
      worker.once('exit', (code) => handler(`writer thread exited with code ${code}`));
    },
  };
}
