// Bounds what unfinished request bodies may hold on the gRPC port. A caller could
// open streams, declare a 4 MiB message, send all of it but the last byte and
// wait: with no deadline nothing ended such a stream, and every one held its
// bytes (400 of them on one connection took the server from 0.5 to 1.9 GiB).
// The guard counts every stream until its request body has arrived, whichever
// code then answers it, through `opened`, `take` and `arrived`: the direct lane
// calls them from its own listeners, so a check costs no more listeners or objects;
// for grpc-js's streams, `watch` adds listeners that call them. It ends a stream whose body
// takes longer than `bodyTimeoutMs`, or whose bytes would take the bodies still
// arriving, all streams together, past `maxBufferedBytes`. The number of streams
// one connection may hold open is HTTP/2's own setting (SETTINGS_MAX_CONCURRENT_STREAMS).

import http2 from 'node:http2';
import { status } from '@grpc/grpc-js';
import { grpcMessageHeader } from './status.js';

export interface StreamGuardLimits {
  /** Streams one HTTP/2 connection may have open at once. */
  readonly maxStreamsPerConnection: number;
  /** How long a request body may take to arrive, from the stream's headers to its end. */
  readonly bodyTimeoutMs: number;
  /** Bytes all request bodies still arriving may hold together. */
  readonly maxBufferedBytes: number;
  /**
   * Bytes all large request messages waiting for their turn to be decided may hold
   * together, one host at most half (read by direct-lane.ts, which decides them in turns).
   */
  readonly maxWaitingBytes: number;
}

export const DEFAULT_STREAM_GUARD_LIMITS: StreamGuardLimits = Object.freeze({
  maxStreamsPerConnection: 100,
  bodyTimeoutMs: 10_000,
  maxBufferedBytes: 64 * 1024 * 1024,
  maxWaitingBytes: 64 * 1024 * 1024,
});

/** Why the guard ended streams, for status and tests. */
export interface StreamGuardCounts {
  /** Streams ended because their body took longer than bodyTimeoutMs. */
  readonly slowBodies: number;
  /** Streams ended because their bytes would go past maxBufferedBytes. */
  readonly overBudget: number;
  /** Bytes held by bodies still arriving, now. */
  readonly bufferedBytes: number;
  /** Whether it watches any HTTP/2 server (false when grpc-js did not have the expected shape). */
  readonly installed: boolean;
}

const GRPC_HEADERS = Object.freeze({ ':status': 200, 'content-type': 'application/grpc+proto' });

export class StreamGuard implements StreamGuardCounts {
  /** Streams whose body is still arriving, with when they opened; whoever reads a stream keeps count of its bytes. */
  private readonly arriving = new Map<http2.ServerHttp2Stream, number>();
  private readonly guarded = new WeakSet<object>();
  private sweeper: NodeJS.Timeout | null = null;
  slowBodies = 0;
  overBudget = 0;
  bufferedBytes = 0;
  installed = false;

  constructor(
    readonly limits: StreamGuardLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Watches the streams of each HTTP/2 server a grpc-js server has bound (found as
   * direct-lane.ts finds them); with the lane installed, the lane hands the guard
   * the streams it does not answer itself instead (`watch`).
   */
  install(servers: Iterable<unknown>, ownListener: boolean): void {
    for (const candidate of servers) {
      if (this.guarded.has(candidate as object) || typeof (candidate as { prependListener?: unknown }).prependListener !== 'function') continue;
      this.guarded.add(candidate as object);
      if (ownListener) (candidate as http2.Http2Server).prependListener('stream', (stream: http2.ServerHttp2Stream) => this.watch(stream));
      this.installed = true;
    }
    if (this.sweeper === null) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, this.limits.bodyTimeoutMs / 4)));
      this.sweeper.unref();
    }
  }

  stop(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  /** A stream whose body starts arriving; its reader reports the bytes with `take` and the end with `arrived`. */
  opened(stream: http2.ServerHttp2Stream): void {
    this.arriving.set(stream, this.now());
  }

  /** Counts bytes a stream received; false when they take the total past the budget (the reader then refuses the stream). */
  take(bytes: number): boolean {
    this.bufferedBytes += bytes;
    if (this.bufferedBytes <= this.limits.maxBufferedBytes) return true;
    this.overBudget += 1;
    return false;
  }

  /** A stream's body has arrived, or the stream has gone: its `taken` bytes no longer count. Once per stream; later calls do nothing. */
  arrived(stream: http2.ServerHttp2Stream, taken: number): void {
    if (this.arriving.delete(stream)) this.bufferedBytes -= taken;
  }

  /** The refusal a stream over the budget gets. */
  get overBudgetMessage(): string {
    return `verdict is holding ${this.limits.maxBufferedBytes} bytes of request bodies still arriving (grpcStreams.maxBufferedBytes); send the whole message promptly, or retry`;
  }

  /** Counts a stream grpc-js answers, with listeners of the guard's, until its body has arrived. */
  watch(stream: http2.ServerHttp2Stream): void {
    if (stream.readableEnded) return;
    let taken = 0;
    this.opened(stream);
    const onData = (chunk: Buffer): void => {
      // Ended by the guard: what still arrives before the close is dropped by node, not held.
      if (stream.closed) return;
      taken += chunk.length;
      if (!this.take(chunk.length)) this.end(stream, status.RESOURCE_EXHAUSTED, this.overBudgetMessage);
    };
    const done = (): void => {
      stream.removeListener('data', onData);
      this.arrived(stream, taken);
    };
    stream.on('data', onData);
    stream.once('end', done);
    stream.once('close', done);
  }

  private sweep(): void {
    const cutoff = this.now() - this.limits.bodyTimeoutMs;
    const message = `the request message did not arrive within ${this.limits.bodyTimeoutMs} ms (grpcStreams.bodyTimeoutMs); send it whole, at once`;
    for (const [stream, openedAt] of this.arriving) {
      if (openedAt > cutoff || stream.closed) continue;
      this.slowBodies += 1;
      // Its bytes are let go when the stream closes: its reader's 'close' listener calls `arrived`.
      this.end(stream, status.DEADLINE_EXCEEDED, message);
    }
  }

  /**
   * Answers the caller with a gRPC status when nothing has been answered yet, then
   * resets the stream so it stops sending; its reader lets its bytes go on the close.
   */
  private end(stream: http2.ServerHttp2Stream, code: status, message: string): void {
    if (stream.destroyed || stream.closed) return;
    if (!stream.headersSent) {
      try {
        stream.respond({ ...GRPC_HEADERS, 'grpc-status': String(code), 'grpc-message': grpcMessageHeader(message) }, { endStream: true });
      } catch {
        // The stream went while answering; the reset below is all that is left to do.
      }
    }
    stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }
}
