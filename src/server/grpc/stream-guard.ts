// Bounds what unfinished request bodies may hold on the gRPC port. A caller could
// open streams, declare a 4 MiB message, send all of it but the last byte and
// wait: with no deadline nothing ended such a stream, and every one held its
// bytes (400 of them on one connection took the server from 0.5 to 1.9 GiB).
// The guard counts every stream until its request body has arrived, whichever
// code then answers it, through `opened`, `take` and `arrived`: the direct lane
// calls them from its own listeners, so a check costs no more listeners, and one small
// object (its ArrivingBody, which links it into its host's list for sharing the budget);
// for grpc-js's streams, `watch` adds listeners that call them. It ends a stream whose body
// takes longer than `bodyTimeoutMs`, or whose bytes would take the bodies still
// arriving, all streams together, past `maxBufferedBytes`. The number of streams
// one connection may hold open is HTTP/2's own setting (SETTINGS_MAX_CONCURRENT_STREAMS).
//
// A method whose client sends a stream of messages (server reflection, a bidi stream
// grpcurl and Postman keep open between lookups) has no body that arrives: its client
// half-closes when it is done, which may be minutes later. Timed as a body, every such
// stream was cut at `bodyTimeoutMs` however well its client behaved. For those methods (`streamsRequests`)
// each message is counted instead, from its first byte to its last, as one body: a
// message dripped a byte at a time is ended as a unary body is, and its bytes count
// against the budget, while a stream between messages holds no bytes and is not timed.
// What bounds a stream held open between messages is what bounds any open stream (a
// WatchAlerts or health Watch): the streams per connection and the connection caps.
//
// The budget is shared by host (or IPv6 /64) only when it is full. A fixed share per
// host cannot tell a gateway's burst of large checks from one client's slow bodies (both
// are many large unfinished bodies from one host), so a host alone may hold all of it.
// When bytes arrive that the budget has no room for, and their host holds no more
// than its fair share (the budget over the hosts holding bytes of bodies arriving), the
// host holding the most gives up its newest unfinished bodies (newest by their first
// byte: one that holds none would free nothing) until they fit; otherwise
// they are refused as before. One client holding the budget with slow bodies then
// keeps no other host's checks out, and a gateway alone is never cut for its size.

import http2 from 'node:http2';
import { status } from '@grpc/grpc-js';
import { callerGroup } from '../../decisions/caller-group.js';
import { InFlight, type InFlightEntry } from '../in-flight.js';
import { grpcMessageHeader } from './status.js';

export interface StreamGuardLimits {
  /** Streams one HTTP/2 connection may have open at once. */
  readonly maxStreamsPerConnection: number;
  /**
   * How long a request body may take to arrive, from the stream's headers to its end; for a
   * method whose client streams messages, how long each message may take, from its first byte to its last.
   */
  readonly bodyTimeoutMs: number;
  /** Bytes all request bodies still arriving may hold together; once full, shared by host (StreamGuard.take). */
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
  /** Streams ended, the budget being full, because their host held the most of it while another host under its fair share needed room. */
  readonly overShare: number;
  /** Bytes held by bodies still arriving, now. */
  readonly bufferedBytes: number;
  /** Whether it watches any HTTP/2 server (false when grpc-js did not have the expected shape). */
  readonly installed: boolean;
}

/** How long a stream ended after it has answered waits for its trailers to be asked for before it is reset without them. */
const TRAILERS_GRACE_MS = 1000;

const GRPC_HEADERS = Object.freeze({ ':status': 200, 'content-type': 'application/grpc+proto' });

/** How the reader of a stream refuses it: answers the status, resets the stream and lets its bytes go. */
export type RefuseStream = (code: status, message: string) => void;

/** The bodies one host (or IPv6 /64) has arriving that hold bytes, newest (by first byte) first, and the bytes they hold. */
class HostBodies {
  bytes = 0;
  /** Its streams whose body is still arriving, those holding no bytes yet included: while any, the entry is kept. */
  streams = 0;
  newest: ArrivingBody | null = null;

  constructor(readonly group: string) {}
}

/** One stream whose body is still arriving, as the guard counts it: handed to its reader by `opened`. */
export class ArrivingBody {
  taken = 0;
  /** Still counted: false once arrived, refused or gone. */
  counted = true;
  older: ArrivingBody | null = null;
  newer: ArrivingBody | null = null;
  /** Its place among the bodies the sweep looks at. */
  entry: InFlightEntry | null = null;

  constructor(
    readonly stream: http2.ServerHttp2Stream,
    readonly openedAt: number,
    readonly host: HostBodies,
    readonly refuse: RefuseStream,
  ) {}
}

export class StreamGuard implements StreamGuardCounts {
  /**
   * Streams whose body is still arriving: a linked list, not a Map keyed by stream. Every
   * check is added and taken off once, and a Map that churns so keeps its outgrown hash
   * tables, which held every check's stream alive into the old generation (in-flight.ts).
   */
  private readonly arriving = new InFlight<ArrivingBody>();
  /**
   * Hosts with a body arriving, and those that had one since the last sweep: a host's
   * entry is kept while it has none, so a gateway's checks one at a time do not insert
   * and delete it each time (a Map that does keeps replacing its hash table).
   */
  private readonly hosts = new Map<string, HostBodies>();
  /** Hosts holding bytes of a body arriving now. */
  private activeHosts = 0;
  /** Each connection's host, worked out once per connection rather than per stream. */
  private readonly groupOf = new WeakMap<object, string>();
  private readonly guarded = new WeakSet<object>();
  /** Paths of methods whose client sends a stream of messages: each message is timed, not the body. */
  private readonly messageStreams = new Set<string>();
  private sweeper: NodeJS.Timeout | null = null;
  slowBodies = 0;
  overBudget = 0;
  overShare = 0;
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
      if (ownListener) (candidate as http2.Http2Server).prependListener('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => this.watch(stream, headers[':path']));
      this.installed = true;
    }
    if (this.sweeper === null) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, this.limits.bodyTimeoutMs / 4)));
      this.sweeper.unref();
    }
  }

  /** `path` is a method whose client sends a stream of messages (client-streaming or bidi): each of them is timed, not its body. */
  streamsRequests(path: string): void {
    this.messageStreams.add(path);
  }

  stop(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  /**
   * A stream whose body starts arriving; its reader reports the bytes with `take` and
   * the end with `arrived`. `refuse` is how the guard ends it when its time is up, or
   * when its host must make room for another's.
   */
  opened(stream: http2.ServerHttp2Stream, refuse: RefuseStream): ArrivingBody {
    const group = this.hostOf(stream.session);
    let host = this.hosts.get(group);
    if (host === undefined) {
      host = new HostBodies(group);
      this.hosts.set(group, host);
    }
    const body = new ArrivingBody(stream, this.now(), host, refuse);
    host.streams += 1;
    body.entry = this.arriving.add(body);
    return body;
  }

  /**
   * Counts bytes a stream received; false when the budget has no room for them (the
   * reader then refuses the stream). Before refusing, a host under its fair share has
   * room made by the host holding the most.
   */
  take(body: ArrivingBody, bytes: number): boolean {
    if (!body.counted) return false;
    // A body joins its host's list with its first bytes: ended to make room, one that holds none would free nothing.
    if (body.taken === 0 && bytes > 0) this.link(body);
    body.taken += bytes;
    body.host.bytes += bytes;
    this.bufferedBytes += bytes;
    if (this.bufferedBytes <= this.limits.maxBufferedBytes || this.makeRoom(body.host)) return true;
    this.overBudget += 1;
    return false;
  }

  /** A stream's body has arrived, or the stream has gone: its bytes no longer count. Once per stream; later calls do nothing. */
  arrived(body: ArrivingBody): void {
    if (!body.counted) return;
    body.counted = false;
    if (body.entry !== null) this.arriving.take(body.entry);
    body.entry = null;
    this.bufferedBytes -= body.taken;
    const host = body.host;
    host.streams -= 1;
    if (body.taken === 0) return;
    host.bytes -= body.taken;
    if (body.newer !== null) body.newer.older = body.older;
    else host.newest = body.older;
    if (body.older !== null) body.older.newer = body.newer;
    body.older = body.newer = null;
    if (host.newest === null) this.activeHosts -= 1;
  }

  /** Puts a body first in its host's list, newest first. */
  private link(body: ArrivingBody): void {
    const host = body.host;
    body.older = host.newest;
    if (host.newest !== null) host.newest.newer = body;
    else this.activeHosts += 1;
    host.newest = body;
  }

  /**
   * The budget is full: when `host` holds no more than its fair share, ends the newest
   * bodies of the host holding the most until the bytes fit. Whenever the budget is
   * over, some host holds more than its fair share, and it is not `host`; so each call
   * that does not give up at once ends at least one stream, and the scan of the hosts
   * is paid for by a stream ended.
   */
  private makeRoom(host: HostBodies): boolean {
    const fair = this.limits.maxBufferedBytes / this.activeHosts;
    if (host.bytes > fair) return false;
    while (this.bufferedBytes > this.limits.maxBufferedBytes) {
      let largest: HostBodies | null = null;
      for (const candidate of this.hosts.values()) if (largest === null || candidate.bytes > largest.bytes) largest = candidate;
      if (largest === null || largest === host || largest.newest === null) return false;
      const newest = largest.newest;
      this.overShare += 1;
      this.arrived(newest);
      newest.refuse(status.RESOURCE_EXHAUSTED, this.overShareMessage);
    }
    return true;
  }

  private hostOf(session: http2.Http2Session | undefined): string {
    if (session === undefined) return 'unknown';
    let group = this.groupOf.get(session);
    if (group === undefined) {
      const socket = session.socket;
      group = socket?.remoteAddress ? callerGroup(socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress) : 'unknown';
      this.groupOf.set(session, group);
    }
    return group;
  }

  /** The refusal a stream ended to make room for another host's gets. */
  get overShareMessage(): string {
    return `verdict is holding ${this.limits.maxBufferedBytes} bytes of request bodies still arriving (grpcStreams.maxBufferedBytes), the most of them from this host, and another host's message needed room; send fewer large messages at once, and each promptly`;
  }

  /** The refusal a stream over the budget gets. */
  get overBudgetMessage(): string {
    return `verdict is holding ${this.limits.maxBufferedBytes} bytes of request bodies still arriving (grpcStreams.maxBufferedBytes); send the whole message promptly, or retry`;
  }

  /**
   * Counts a stream grpc-js answers, with listeners of the guard's, until its body has arrived
   * (each message, for a method whose client streams them); and resets one grpc-js has
   * answered before its body arrived (`answeredEarly`).
   */
  watch(stream: http2.ServerHttp2Stream, path: string | undefined): void {
    if (stream.readableEnded) return;
    if (path !== undefined && this.messageStreams.has(path)) {
      this.watchMessages(stream);
      return;
    }
    const body = this.opened(stream, (code, message) => this.end(stream, code, message));
    const onData = (chunk: Buffer): void => {
      // Ended by the guard: what still arrives before the close is dropped by node, not held.
      if (stream.closed) return;
      if (!this.take(body, chunk.length)) this.end(stream, status.RESOURCE_EXHAUSTED, this.overBudgetMessage);
    };
    const onAnswered = (): void => this.answeredEarly(stream, body);
    const done = (): void => {
      stream.removeListener('data', onData);
      stream.removeListener('finish', onAnswered);
      this.arrived(body);
    };
    stream.on('data', onData);
    stream.once('end', done);
    stream.once('close', done);
    stream.once('finish', onAnswered);
  }

  /**
   * Counts each message of a stream whose client sends many, from its first byte (its
   * 5-byte prefix begins) to its last, as a body of its own; between messages the stream
   * is not counted. Messages are followed by their prefixes, as grpc-js frames them.
   */
  private watchMessages(stream: http2.ServerHttp2Stream): void {
    const refuse: RefuseStream = (code, message) => this.end(stream, code, message);
    /** The message arriving, from its first byte to its last; null between messages. */
    let body: ArrivingBody | null = null;
    let prefixSeen = 0;
    /** Bytes of the message still to come, once its prefix is whole. */
    let left = 0;
    const onData = (chunk: Buffer): void => {
      // Ended by the guard, or answered by grpc-js: what still arrives before the reset is not held.
      if (stream.closed || stream.writableEnded) return;
      let at = 0;
      while (at < chunk.length) {
        const start = at;
        body ??= this.opened(stream, refuse);
        // The flag byte, then the length, big-endian.
        for (; prefixSeen < 5 && at < chunk.length; prefixSeen += 1, at += 1) if (prefixSeen > 0) left = left * 256 + chunk[at]!;
        if (prefixSeen === 5) {
          const taken = Math.min(left, chunk.length - at);
          left -= taken;
          at += taken;
        }
        if (!this.take(body, at - start)) {
          this.end(stream, status.RESOURCE_EXHAUSTED, this.overBudgetMessage);
          return;
        }
        if (prefixSeen === 5 && left === 0) {
          this.arrived(body);
          body = null;
          prefixSeen = 0;
        }
      }
    };
    const onAnswered = (): void => this.answeredEarly(stream, body);
    const done = (): void => {
      stream.removeListener('data', onData);
      stream.removeListener('finish', onAnswered);
      if (body !== null) this.arrived(body);
      body = null;
    };
    stream.on('data', onData);
    stream.once('end', done);
    stream.once('close', done);
    stream.once('finish', onAnswered);
  }

  /**
   * grpc-js has written the whole of its answer (its writable side finished) to a stream
   * whose body has not arrived: a refusal (an unknown method, a content type it does not
   * take, a message over the ceiling or a second one, a bad grpc-timeout, a deadline passed).
   * grpc-js then drains the body without end, so the stream stayed open, counted, and held
   * its slot of the connection's streams until the body timeout. It is reset now, as the
   * direct lane resets its own refusals (RST_STREAM NO_ERROR: a complete answer to a request
   * not yet complete), and its bytes let go. An answer that ends with trailers has them
   * written after the writable side finishes (on 'wantTrailers', in an immediate), so such a
   * stream is reset once they have been handed to node.
   */
  private answeredEarly(stream: http2.ServerHttp2Stream, body: ArrivingBody | null): void {
    if (stream.readableEnded || stream.closed || stream.destroyed) return;
    const reset = (): void => {
      if (stream.closed || stream.destroyed) return;
      if (body !== null) this.arrived(body);
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
    };
    const headers = stream.sentHeaders as http2.OutgoingHttpHeaders | undefined;
    // Trailers-only (the status in the headers), or not a gRPC answer (415): nothing more will be written.
    if (headers === undefined || headers['grpc-status'] !== undefined || headers[':status'] !== 200) {
      reset();
      return;
    }
    // node sends trailers in an immediate of its own: this one comes after it.
    if (stream.sentTrailers !== undefined) {
      setImmediate(reset);
      return;
    }
    // Registered after grpc-js's own listener (it registers before ending the stream), which sends the trailers.
    // Trailers not sent by then are left to the body timeout.
    stream.once('wantTrailers', () => {
      if (stream.sentTrailers !== undefined) setImmediate(reset);
    });
  }

  private sweep(): void {
    const cutoff = this.now() - this.limits.bodyTimeoutMs;
    const message = `the request message did not arrive within ${this.limits.bodyTimeoutMs} ms (grpcStreams.bodyTimeoutMs); send it whole, at once`;
    for (const body of this.arriving.values()) {
      if (body.openedAt > cutoff || body.stream.closed) continue;
      this.slowBodies += 1;
      this.arrived(body);
      body.refuse(status.DEADLINE_EXCEEDED, message);
    }
    for (const [group, host] of this.hosts) if (host.streams === 0) this.hosts.delete(group);
  }

  /**
   * Answers the caller with a gRPC status, then resets the stream so it stops sending;
   * its reader lets its bytes go on the close. A stream that has answered messages
   * already (a streaming call) gets the status in trailers, where a client looks for it.
   */
  private end(stream: http2.ServerHttp2Stream, code: status, message: string): void {
    if (stream.destroyed || stream.closed) return;
    if (stream.headersSent) {
      this.endWithTrailers(stream, code, message);
      return;
    }
    try {
      stream.respond({ ...GRPC_HEADERS, 'grpc-status': String(code), 'grpc-message': grpcMessageHeader(message) }, { endStream: true });
    } catch {
      // The stream went while answering; the reset below is all that is left to do.
    }
    stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }

  /**
   * grpc-js answers every call it serves with `waitForTrailers`, so ending its writable side
   * asks for the trailers, and the guard's status goes in them. Without that (an answer
   * already ending, or headers sent otherwise) there is no room for a status: reset only.
   */
  private endWithTrailers(stream: http2.ServerHttp2Stream, code: status, message: string): void {
    const reset = (): void => {
      if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    };
    if (stream.writableEnded) {
      reset();
      return;
    }
    // The handler may still write to the stream ended here (a message that completed meanwhile); node's error is expected.
    stream.on('error', ignore);
    // Trailers wait for the answers queued before them; a client that reads none, or a stream answered without
    // waitForTrailers, never has them asked for, and is reset regardless.
    const regardless = setTimeout(reset, TRAILERS_GRACE_MS);
    regardless.unref();
    stream.once('wantTrailers', () => {
      clearTimeout(regardless);
      try {
        stream.sendTrailers({ 'grpc-status': String(code), 'grpc-message': grpcMessageHeader(message) });
      } catch {
        // The stream went meanwhile: the reset is all that is left.
      }
      // node sends trailers in an immediate of its own: this one comes after it.
      setImmediate(reset);
    });
    stream.end();
  }
}

function ignore(): void {}
