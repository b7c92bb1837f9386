import { messageOf } from '../errors.js';
import type { AuditStatus, DecisionLog } from './log.js';
import { readRows, toWire, type ClientMessage, type HostMessage, type LogChannel, type WireError } from './log-protocol.js';

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
}

/**
 * Serve one client (log-client.ts) from the decision log this thread or
 * process owns. Several clients may share one log: their rows join the same
 * group commit and the same chain. Returns a function that stops serving.
 */
export function serveDecisionLog(log: DecisionLog, channel: LogChannel, options: HostOptions): () => void {
  const post = (message: HostMessage): void => {
    try {
      channel.post(message);
    } catch {
      // The client is gone; its channel's onGone stops this host.
    }
  };
  const unsubscribe = [
    log.onHealthChange((health) => post({ t: 'health', health })),
    log.onWriteError((failure) => post({ t: 'write-error', error: toWire(failure.error), rows: failure.rows, acknowledgedRows: failure.acknowledgedRows })),
  ];
  if (options.forwardCommits) unsubscribe.push(log.onCommit((stats) => post({ t: 'commit', stats })));
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
        post({ t: 'ready', health: { healthy: log.healthy, lastError: log.lastError } });
        return;
      case 'rows':
        appendBatch(log, message.id, message.acknowledged, message.values, post);
        return;
      case 'flush':
        reply(post, message.id, log.flush().then(() => null));
        return;
      case 'probe':
        reply(post, message.id, Promise.resolve(log.probe()));
        return;
      case 'status':
        reply(post, message.id, Promise.resolve(log.auditStatus()));
        return;
      case 'close':
        if (!options.closable) {
          reply(post, message.id, log.flush().then(() => null));
          return;
        }
        stop();
        reply(post, message.id, log.close().then(() => null));
        return;
      default:
      // Not ours (cluster IPC also carries other messages); ignore.
    }
  });
  return stop;
}

function appendBatch(log: DecisionLog, id: number, acknowledged: boolean, values: unknown[], post: (message: HostMessage) => void): void {
  let rows;
  try {
    rows = readRows(values);
  } catch (error) {
    post({ t: 'rows', id, refused: [], failed: toWire(error) });
    return;
  }
  const refused: Array<readonly [number, WireError]> = [];
  let failed: WireError | null = null;
  const pending = rows.map((row, index) =>
    log.appendRow(row, acknowledged).catch((error: unknown) => {
      const wire = toWire(error);
      // A failed batch rejects every row with the same error; a refused row alone has its own.
      if (wire.code === 'DECISION_LOG_UNAVAILABLE') failed ??= wire;
      else refused.push([index, wire]);
    }),
  );
  Promise.all(pending).then(
    () => post({ t: 'rows', id, refused, failed }),
    (error: unknown) => post({ t: 'rows', id, refused: [], failed: { code: 'INTERNAL', message: messageOf(error) } }),
  );
}

function reply(post: (message: HostMessage) => void, id: number, result: Promise<boolean | AuditStatus | null>): void {
  result.then(
    (value) => post({ t: 'reply', id, value, error: null }),
    (error: unknown) => post({ t: 'reply', id, value: null, error: toWire(error) }),
  );
}
