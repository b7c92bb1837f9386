// Bounds the answers the gRPC port holds for callers that do not read them. HTTP/2
// lets a client keep its receive window shut: every answer the server writes then
// stays in the server's memory, as long as the connection lasts (keepalive pings are
// still answered). A hundred CheckBatch calls on one such connection, their request id
// echoed in each of a thousand results, held most of a gigabyte.
//
// Three bounds, from the cheapest:
// - per connection, node's own session memory (grpc-js `grpc-node.max_session_memory`),
//   which counts the answer bytes not yet sent: past it, a new stream on that connection
//   is refused before it is read (RST_STREAM ENHANCE_YOUR_CALM, which gRPC clients
//   report as RESOURCE_EXHAUSTED), so nothing more is decided for it;
// - a connection holding unsent answers that has sent less than 16 KiB (one full DATA
//   frame) in `sendTimeoutMs` is closed (its calls still being decided stop at their
//   turn: call.cancelled);
// - all connections together: past `maxUnsentBytes`, the connections holding the most
//   are closed, the largest first, until the rest fit.
// The last two are checked by a sweep about once a second, which reads each open
// stream's unsent bytes (its writable length: written by the server, not yet taken by
// the peer's window) and the bytes each connection has written; nothing is added to a
// check's own path.

import type http2 from 'node:http2';
import { openStreams } from './stream-table.js';

export interface UnreadAnswerLimits {
  /** Answer bytes not yet sent, all connections together, past which the largest holders are closed. */
  readonly maxUnsentBytes: number;
  /** Answer bytes one connection may hold unsent before its new streams are refused (node's session memory). */
  readonly maxUnsentBytesPerConnection: number;
  /** How long a connection may hold unsent answers without sending any of them. */
  readonly sendTimeoutMs: number;
}

export const DEFAULT_UNREAD_ANSWER_LIMITS: UnreadAnswerLimits = Object.freeze({
  maxUnsentBytes: 256 * 1024 * 1024,
  maxUnsentBytesPerConnection: 64 * 1024 * 1024,
  sendTimeoutMs: 30_000,
});

/** The connections closed for answers they did not read, and the bytes held now, for status and metrics. */
export interface UnreadAnswerCounts {
  /** Connections closed for holding unsent answers past sendTimeoutMs while taking less than 16 KiB of them. */
  readonly closedStalled: number;
  /** Connections closed because all unsent answers together were past maxUnsentBytes. */
  readonly closedOverBudget: number;
  /** Answer bytes written and not yet sent, all connections together, at the last sweep. */
  readonly unsentBytes: number;
}

/** One closed connection, for the log. */
export interface UnreadAnswersClosed {
  readonly reason: 'send_timeout' | 'over_budget';
  readonly peer: string;
  readonly unsentBytes: number;
}

/** grpc-js's option for node's session memory is in whole megabytes. */
export function sessionMemoryMegabytes(limits: UnreadAnswerLimits): number {
  return Math.max(1, Math.ceil(limits.maxUnsentBytesPerConnection / (1024 * 1024)));
}

/** Bytes a connection must have sent since the last mark to count as taking its answers: one full DATA frame. */
const PROGRESS_BYTES = 16 * 1024;

interface Progress {
  /** The connection's bytes written when it last held nothing, or last sent PROGRESS_BYTES. */
  written: number;
  /** When that was. */
  since: number;
}

export class UnreadAnswers implements UnreadAnswerCounts {
  private readonly sessions = new Map<http2.ServerHttp2Session, Progress>();
  private readonly watched = new WeakSet<object>();
  private sweeper: NodeJS.Timeout | null = null;
  closedStalled = 0;
  closedOverBudget = 0;
  unsentBytes = 0;

  constructor(
    readonly limits: UnreadAnswerLimits,
    private readonly onClosed: (closed: UnreadAnswersClosed) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** Follows the sessions of each HTTP/2 server a grpc-js server has bound, and starts the sweep. */
  install(servers: Iterable<unknown>): void {
    for (const candidate of servers) {
      if (this.watched.has(candidate as object) || typeof (candidate as { on?: unknown }).on !== 'function') continue;
      this.watched.add(candidate as object);
      (candidate as http2.Http2Server).on('session', (session: http2.ServerHttp2Session) => {
        this.sessions.set(session, { written: 0, since: this.now() });
        session.once('close', () => this.sessions.delete(session));
      });
    }
    if (this.sweeper === null) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, this.limits.sendTimeoutMs / 4)));
      this.sweeper.unref();
    }
  }

  stop(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  /** Closes the connections that hold unsent answers too long, then, while all together hold too much, the largest. */
  sweep(): void {
    const now = this.now();
    const holders: Array<{ session: http2.ServerHttp2Session; unsent: number }> = [];
    let total = 0;
    for (const [session, progress] of this.sessions) {
      if (session.destroyed) {
        this.sessions.delete(session);
        continue;
      }
      const unsent = this.measure(session, progress, now);
      if (unsent === 0) continue;
      if (now - progress.since >= this.limits.sendTimeoutMs) {
        this.closedStalled += 1;
        this.close(session, 'send_timeout', unsent);
        continue;
      }
      holders.push({ session, unsent });
      total += unsent;
    }
    if (total > this.limits.maxUnsentBytes) {
      holders.sort((a, b) => b.unsent - a.unsent);
      for (const { session, unsent } of holders) {
        if (total <= this.limits.maxUnsentBytes) break;
        this.closedOverBudget += 1;
        this.close(session, 'over_budget', unsent);
        total -= unsent;
      }
    }
    this.unsentBytes = total;
  }

  /**
   * The session's unsent answer bytes now; moves its mark on when it holds none, or
   * when it has sent PROGRESS_BYTES since the mark. Progress is counted in bytes the
   * connection wrote, not in what each stream still holds: one answer is written as
   * one chunk, whose count stays whole until its last byte has been taken.
   */
  private measure(session: http2.ServerHttp2Session, progress: Progress, now: number): number {
    let unsent = 0;
    openStreams(session)?.forEach((stream) => {
      const pending = (stream as http2.ServerHttp2Stream).writableLength;
      if (pending > 0) unsent += pending;
    });
    const written = (session.socket as { bytesWritten?: number } | undefined)?.bytesWritten ?? 0;
    if (unsent === 0 || written - progress.written >= PROGRESS_BYTES) {
      progress.written = written;
      progress.since = now;
    }
    return unsent;
  }

  private close(session: http2.ServerHttp2Session, reason: UnreadAnswersClosed['reason'], unsentBytes: number): void {
    const socket = session.socket as { remoteAddress?: string; remotePort?: number } | undefined;
    const peer = socket?.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort ?? ''}` : 'unknown';
    this.sessions.delete(session);
    session.destroy();
    this.onClosed({ reason, peer, unsentBytes });
  }
}
