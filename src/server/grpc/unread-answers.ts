// Bounds the answers the gRPC port holds for callers that do not read them. HTTP/2
// lets a client keep its receive window shut: every answer the server writes then
// stays in the server's memory, as long as the connection lasts (keepalive pings are
// still answered). A hundred CheckBatch calls on one such connection, their request id
// echoed in each of a thousand results, held most of a gigabyte.
//
// A sweep about once a second reads each open stream's unsent bytes (its writable
// length, written by the server and not yet taken by the peer's window, and the pieces
// of a large answer not yet written: direct-lane.ts answerBytesHeld), and:
// - marks a connection holding more than `maxUnsentBytesPerConnection`: until a later
//   sweep finds it under, its new streams are refused before they are read
//   (RESOURCE_EXHAUSTED), so nothing more is decided for it; and closes it when the
//   next sweep finds it still over, having taken none of its answers in between
//   (calls admitted earlier may go on writing past the limit);
// - closes a connection holding unsent answers that has taken none of them for
//   `sendTimeoutMs` (its calls still being decided stop at their turn: call.cancelled);
// - closes the connections holding the most, the largest first, while all together
//   hold more than `maxUnsentBytes`.
// node's own per-session memory limit (grpc-js `grpc-node.max_session_memory`) would
// refuse new streams too, but node 20 never credits back the unsent bytes of a stream
// the client resets: a long-lived gateway connection whose callers give up now and
// then would one day have every new stream refused. The sweep measures afresh each time.
// A check's own path adds one map lookup (refusesNewStreams).

import type http2 from 'node:http2';
import { answerBytesHeld } from './direct-lane.js';
import { openStreams } from './stream-table.js';

export interface UnreadAnswerLimits {
  /** Answer bytes not yet sent, all connections together, past which the largest holders are closed. */
  readonly maxUnsentBytes: number;
  /** Answer bytes one connection may hold unsent before its new streams are refused. */
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
  /** Connections closed for holding unsent answers for sendTimeoutMs while taking none of them. */
  readonly closedStalled: number;
  /** Connections closed because all unsent answers together were past maxUnsentBytes. */
  readonly closedOverBudget: number;
  /** Connections closed for holding more than maxUnsentBytesPerConnection at two sweeps running, taking none in between. */
  readonly closedConnectionBudget: number;
  /** Streams refused unread because their connection held more than maxUnsentBytesPerConnection. */
  readonly refusedStreams: number;
  /** Answer bytes written and not yet sent, all connections together, at the last sweep. */
  readonly unsentBytes: number;
}

/** One closed connection, for the log. */
export interface UnreadAnswersClosed {
  readonly reason: 'send_timeout' | 'over_budget' | 'connection_budget';
  readonly peer: string;
  readonly unsentBytes: number;
}

interface Progress {
  /** Unsent answer bytes at the last sweep. */
  unsent: number;
  /** Unsent bytes of each stream holding some, at the last sweep. */
  streams: Map<unknown, number>;
  /** When the connection last sent some of its answers, or last held none. */
  since: number;
  /** Whether the sweep before the last found it over maxUnsentBytesPerConnection. */
  wasOver: boolean;
}

export class UnreadAnswers implements UnreadAnswerCounts {
  private readonly sessions = new Map<http2.ServerHttp2Session, Progress>();
  private readonly watched = new WeakSet<object>();
  private sweeper: NodeJS.Timeout | null = null;
  closedStalled = 0;
  closedOverBudget = 0;
  closedConnectionBudget = 0;
  refusedStreams = 0;
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
        this.sessions.set(session, { unsent: 0, streams: new Map(), since: this.now(), wasOver: false });
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

  /** Whether a new stream on `session` is refused unread: the last sweep found it holding more than maxUnsentBytesPerConnection. */
  refusesNewStreams(session: http2.Http2Session | undefined): boolean {
    if (session === undefined) return false;
    const progress = this.sessions.get(session as http2.ServerHttp2Session);
    if (progress === undefined || progress.unsent <= this.limits.maxUnsentBytesPerConnection) return false;
    this.refusedStreams += 1;
    return true;
  }

  /** The refusal such a stream gets. */
  get refusalMessage(): string {
    return `this connection holds more than ${this.limits.maxUnsentBytesPerConnection} bytes of answers it has not read (grpcStreams.maxUnsentBytesPerConnection); read them, then ask again`;
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
      // Its new streams are refused already; calls admitted before may still have written past the limit.
      if (unsent > this.limits.maxUnsentBytesPerConnection && progress.wasOver && progress.since !== now) {
        this.closedConnectionBudget += 1;
        this.close(session, 'connection_budget', unsent);
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
   * The session's unsent answer bytes now; moves `since` on when it holds none, or when
   * a stream holds less than at the last sweep or has gone since. Progress is counted
   * per stream, never in bytes the connection wrote: a client sending PINGs gets their
   * acknowledgements written without reading a byte of its answers. The direct lane
   * writes large answers in 64 KiB pieces, so a stream's count falls as they are read.
   */
  private measure(session: http2.ServerHttp2Session, progress: Progress, now: number): number {
    const before = progress.streams;
    const after = new Map<unknown, number>();
    let unsent = 0;
    let sent = false;
    openStreams(session)?.forEach((stream) => {
      const pending = answerBytesHeld(stream as http2.ServerHttp2Stream);
      if (!(pending > 0)) return;
      unsent += pending;
      after.set(stream, pending);
      const last = before.get(stream);
      if (last !== undefined && pending < last) sent = true;
    });
    for (const stream of before.keys()) if (!after.has(stream)) sent = true;
    progress.wasOver = progress.unsent > this.limits.maxUnsentBytesPerConnection;
    progress.streams = after;
    progress.unsent = unsent;
    if (unsent === 0 || sent) progress.since = now;
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
