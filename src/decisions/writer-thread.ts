import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { messageOf } from '../errors.js';
import { loadOrCreateSigningKey } from './keys.js';
import { DecisionLog, type DecisionLogMode } from './log.js';
import { DecisionLogClient } from './log-client.js';
import { serveDecisionLog } from './log-host.js';
import { toWire, type LogChannel } from './log-protocol.js';
import type { SensitiveAttributes } from './sensitive.js';

/**
 * How to open the decision log, in a form that can be handed to another thread
 * or process (file paths rather than key objects).
 */
export interface WriterSettings {
  readonly path: string;
  readonly mode: DecisionLogMode;
  /** BENCHMARKING ONLY when false (see DecisionLogOptions.chain). */
  readonly chain: boolean;
  readonly checkpoints: {
    readonly signingKey: string;
    readonly publicKey: string;
    readonly everyRows: number;
    readonly everySeconds: number;
  } | null;
}

/**
 * Open the log these settings describe, in this thread.
 * @throws VerdictError as DecisionLog.open, or CONFIG_INVALID for an unreadable key
 */
export function openLog(settings: WriterSettings): DecisionLog {
  const checkpoints = settings.checkpoints;
  return DecisionLog.open(settings.path, {
    mode: settings.mode,
    chain: settings.chain,
    checkpoints:
      checkpoints === null
        ? undefined
        : {
            signer: loadOrCreateSigningKey({ signingKey: checkpoints.signingKey, publicKey: checkpoints.publicKey }).signer,
            everyRows: checkpoints.everyRows,
            everySeconds: checkpoints.everySeconds,
          },
  });
}

// Compiled next to this file; absent when running from the TypeScript sources (tests), see below.
const ENTRY = fileURLToPath(new URL('./writer-thread-entry.js', import.meta.url));

/**
 * Start the decision log's writer in a worker thread and connect to it. The
 * event loop that answers checks then never waits for SQLite, the hash chain
 * or fsync; it hands each turn's rows over in one message.
 *
 * Where the compiled thread entry is not available (running from the
 * TypeScript sources), the writer runs in this thread behind the same
 * message channel, so the behaviour is the same, only not in parallel.
 * @throws VerdictError when the log cannot be opened (before any check is served)
 */
export async function startWriterThread(settings: WriterSettings, sensitive: SensitiveAttributes | null): Promise<DecisionLogClient> {
  if (!fs.existsSync(ENTRY)) return startInThisThread(settings, sensitive);
  let worker: Worker | null = null;
  const spawn = async (): Promise<LogChannel> => {
    worker = new Worker(ENTRY, { workerData: settings });
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

async function startInThisThread(settings: WriterSettings, sensitive: SensitiveAttributes | null): Promise<DecisionLogClient> {
  const log = openLog(settings);
  const { port1, port2 } = new MessageChannel();
  serveDecisionLog(log, portChannel(port2), { forwardCommits: true, closable: true });
  return DecisionLogClient.connect(portChannel(port1), {
    path: settings.path,
    mode: settings.mode,
    sensitive,
    ownsLog: true,
    release: async () => {
      port1.close();
      port2.close();
    },
  });
}

/** The main thread's side of a writer thread. */
function workerChannel(worker: Worker): LogChannel {
  return {
    post: (message) => worker.postMessage(message),
    listen: (handler) => worker.on('message', handler),
    onGone: (handler) => {
      worker.once('error', (error) => handler(`writer thread failed: ${messageOf(error)}`));
      worker.once('exit', (code) => handler(`writer thread exited with code ${code}`));
    },
  };
}

/** One end of a MessageChannel, or a writer thread's parentPort. */
export function portChannel(port: MessagePort): LogChannel {
  return {
    post: (message) => port.postMessage(message),
    listen: (handler) => port.on('message', handler),
    onGone: (handler) => port.once('close', () => handler('the channel was closed')),
  };
}

