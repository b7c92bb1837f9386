import type { RowValue } from './columns.js';
import { checkAlertRows } from './alerts-table.js';
import { checkBatch } from './row.js';
import { toWire, type ClientMessage, type HostMessage, type LogChannel } from './log-protocol.js';
import type { AuditStatus, LogWriter } from './writer.js';

export interface HostOptions {
  /**
   * Forward commit statistics to this client (for its batch metrics). Off for
   * cluster workers, whose commits are shared and counted once by the primary.
   */
  readonly forwardCommits: boolean;
  /**
   * Whether this client may close the log: its own writer thread's client may;
   * one cluster worker among several may not (its `close` only flushes).
   */
  readonly closable: boolean;
  /**
   * Told of each batch of rows once the writer answers it: committed (all rows
   * but the indexes in `refused`), or, for rows already answered (async mode),
   * lost when the log closed, as a single process's observers would have seen
   * them. Not told of a durable batch that failed: its callers were refused.
   * The `--workers` primary shows these rows to the anomaly detectors.
   */
  readonly onWritten?: (values: readonly RowValue[], refused: ReadonlySet<number>) => void;
}

const NONE_REFUSED: ReadonlySet<number> = new Set();

/**
 * Serve one client (log-client.ts) from the writer this thread or process
 * owns: each `rows` message becomes one LogWriter.write and gets one answer.
 * Several clients may share one writer: their batches join the same
 * transactions and the same chain. Returns a function that stops serving.
 */
export function serveWriter(writer: LogWriter, channel: LogChannel, options: HostOptions): () => void {
  const post = (message: HostMessage): void => {
    try {
      channel.post(message);
    } catch {
      // The client is gone; its channel's onGone stops this host.
    }
  };
  const unsubscribe = [
    writer.onHealthChange((health) => post({ t: 'health', health })),
    writer.onWriteError((failure) => post({ t: 'write-error', error: toWire(failure.error), rows: failure.rows, acknowledgedRows: failure.acknowledgedRows })),
  ];
  if (options.forwardCommits) unsubscribe.push(writer.onCommit((stats) => post({ t: 'commit', stats })));
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    for (const off of unsubscribe) off();
  };
  channel.onGone(stop);

  channel.listen((raw) => {
    if (stopped) return;
    const message = raw as ClientMessage;
    switch (message?.t) {
      case 'hello':
        post({ t: 'ready', health: { healthy: writer.healthy, lastError: writer.lastError } });
        return;
      case 'rows': {
        const id = message.id;
        let rows: number;
        try {
          rows = checkBatch(message.values);
        } catch (error) {
          post({ t: 'rows', id, refused: [], failed: toWire(error) });
          return;
        }
        const values = message.values as RowValue[];
        const acknowledged = message.acknowledged;
        writer.write(values, rows, acknowledged, ({ refused, failed }) => {
          if (options.onWritten !== undefined && (failed === null || acknowledged)) {
            written(options.onWritten, values, refused === null || refused.length === 0 ? NONE_REFUSED : new Set(refused.map(([index]) => index)));
          }
          post(
            failed === null
              ? { t: 'rows', id, refused: refused.map(([index, error]) => [index, toWire(error)] as const), failed: null }
              : { t: 'rows', id, refused: [], failed: toWire(failed) },
          );
        });
        return;
      }
      case 'alerts':
        reply(post, message.id, Promise.resolve().then(() => writer.writeAlerts(checkAlertRows(message.rows))).then(() => null));
        return;
      case 'flush':
        reply(post, message.id, writer.flush().then(() => null));
        return;
      case 'probe':
        reply(post, message.id, Promise.resolve(writer.probe()));
        return;
      case 'status':
        reply(post, message.id, Promise.resolve(writer.auditStatus()));
        return;
      case 'close':
        if (!options.closable) {
          reply(post, message.id, writer.flush().then(() => null));
          return;
        }
        stop();
        reply(post, message.id, writer.close().then(() => null));
        return;
      default:
      // Not ours (cluster IPC also carries other messages); ignore.
    }
  });
  return stop;
}

/** Calls `onWritten`; whatever it throws stays there: the batch's answer must still go out. */
function written(onWritten: NonNullable<HostOptions['onWritten']>, values: readonly RowValue[], refused: ReadonlySet<number>): void {
  try {
    onWritten(values, refused);
  } catch {
    // See the function comment.
  }
}

function reply(post: (message: HostMessage) => void, id: number, result: Promise<boolean | AuditStatus | null>): void {
  result.then(
    (value) => post({ t: 'reply', id, value, error: null }),
    (error: unknown) => post({ t: 'reply', id, value: null, error: toWire(error) }),
  );
}
