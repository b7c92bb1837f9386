// The direct lane: the unary decision methods answered straight on their HTTP/2
// stream, beside grpc-js on the same port and the same sessions.
//
// grpc-js stays the server: it owns the listening socket, TLS, sessions,
// keepalive, shutdown, and every method not listed here (Admin, health,
// reflection, streaming). For a check, though, its per-call machinery
// (interceptor chain, stream decoder, metadata and status objects) is work and
// garbage on every call; the README's Benchmarks give what leaving it out saved.
//
// The lane runs the very handlers grpc-js would (call.ts `unary`), with the same
// deserializers (the size-limited ones of server.ts) and serializers, and
// answers with the same statuses and trailers. A stream it does not fully
// understand (another content type, an encoding other than gzip or deflate, not a
// POST) goes to grpc-js untouched, before a byte of its body is read.
//
// Large messages (compressed, or LARGE_MESSAGE_BYTES and more as sent) are decided
// only so many at once (LargeMessages), compressed ones inflated here in their turn: a
// 3.5 KB gzip message becomes a megabyte of request, row and garbage, so a client
// keeping thousands of them in flight (24 connections of 100 streams, 8 MB sent) held
// 6 GB and froze the server; plain ones cost what they were sent, and the same again
// twice over once decided.

import http2 from 'node:http2';
import { TLSSocket } from 'node:tls';
import zlib from 'node:zlib';
import { Metadata, status, type MethodDefinition, type Server, type sendUnaryData } from '@grpc/grpc-js';
import { LAPSED_CERTIFICATE_MESSAGE, certificateLapsed } from '../../authn/certificate-lapse.js';
import { BatchesInFlight } from '../../decide/batch-budget.js';
import { callerGroup } from '../../decisions/caller-group.js';
import { cutSessionIfLapsed } from '../certificate-expiry.js';
import type { UnaryCall, UnaryHandler } from './call.js';
import type { StreamGuard } from './stream-guard.js';
import { useStreamTables } from './stream-table.js';
import { grpcMessageHeader } from './status.js';

type AuthContext = ReturnType<UnaryCall['getAuthContext']>;

/** One unary method served on the lane: how to read its request and write its response, and its handler. */
export interface DirectMethod {
  readonly definition: Pick<MethodDefinition<unknown, unknown>, 'path' | 'requestDeserialize' | 'responseSerialize'>;
  readonly handler: UnaryHandler<unknown, unknown>;
}

type StreamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

const RESPONSE_HEADERS: http2.OutgoingHttpHeaders = Object.freeze({
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity',
  'grpc-encoding': 'identity',
});
/** What gRPC allows in a text metadata value. */
const PRINTABLE_ASCII = /^[ -~]*$/;
const OK_TRAILERS: http2.OutgoingHttpHeaders = Object.freeze({ 'grpc-status': '0', 'grpc-message': 'OK' });
// No `date` header: gRPC does not use it, and node would format and encode one for every answer.
const RESPOND_WITH_TRAILERS = Object.freeze({ waitForTrailers: true, sendDate: false });
const RESPOND_AND_END = Object.freeze({ endStream: true, sendDate: false });
const NO_AUTH_CONTEXT: AuthContext = Object.freeze({});
/** Answers larger than this are written in pieces of this size. */
const ANSWER_PIECE_BYTES = 64 * 1024;

/** Message encodings the lane reads itself, as grpc-js would; any other is grpc-js's to refuse. */
const READ_ENCODINGS = new Set(['identity', 'gzip', 'deflate']);
/**
 * Calls with a large message being decided (inflated, for a compressed one) and not yet
 * answered, all callers together; one host (or IPv6 /64) holds at most half. The rest
 * wait with only the bytes they sent, in turns by host.
 */
export const MAX_LARGE_MESSAGES_AT_ONCE = 64;
/** A plain message this large or larger is a large message; a compressed one always is. */
export const LARGE_MESSAGE_BYTES = 64 * 1024;
/** Content types the lane reads itself; anything else is grpc-js's to answer (415 and the like). */
const GRPC_PROTO = new Set(['application/grpc', 'application/grpc+proto']);
/** A grpc-timeout value: up to 8 digits and a unit (the gRPC over HTTP/2 protocol). */
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
/** The longest delay a node timer keeps (2^31 - 1 ms). */
const MAX_TIMER_MS = 2_147_483_647;
const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/** Headers that describe the transport, not the caller: kept out of the call's metadata, as grpc-js does. */
const TRANSPORT_HEADERS = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type'];

/** Whether the lane is serving, and how many calls it has taken (for status and tests). */
export interface DirectLaneState {
  readonly installed: boolean;
  readonly calls: number;
  /** Sessions that keep their streams in a StreamTable (stream-table.ts) rather than node's Map. */
  readonly streamTableSessions: number;
  /** Calls with a large message being decided and not yet answered, and those waiting for their turn (MAX_LARGE_MESSAGES_AT_ONCE). */
  readonly largeMessages: LargeMessageCounts;
}

/**
 * The methods answered on the lane, and its installation on a grpc-js server's
 * HTTP/2 listeners.
 */
export class DirectLane implements DirectLaneState {
  private readonly methods = new Map<string, DirectMethod>();
  private readonly wrapped = new WeakSet<object>();
  private installedOn = 0;
  calls = 0;
  streamTableSessions = 0;

  /**
   * @param maxFrameBytes the largest message read at all (server.ts hardCeiling); larger ones are refused unread
   * @param guard bounds how long and how large bodies still arriving may be (stream-guard.ts); it is handed the streams grpc-js answers
   * @param unread refuses every new stream, whatever its method, on a connection holding too many unread answers (unread-answers.ts)
   */
  /** Large messages decided at once: each is charged the largest message, MAX_LARGE_MESSAGES_AT_ONCE of them fit. */
  private readonly large: LargeMessages;

  constructor(
    private readonly maxFrameBytes: number,
    private readonly guard: StreamGuard,
    private readonly unread: NewStreamGate | null = null,
  ) {
    this.large = { budget: new BatchesInFlight(MAX_LARGE_MESSAGES_AT_ONCE * maxFrameBytes), charge: maxFrameBytes, waiting: new WaitingMessages(guard.limits.maxWaitingBytes) };
  }

  get largeMessages(): LargeMessageCounts {
    return { inFlight: Math.round(this.large.budget.bytesInFlight / this.large.charge), waiting: this.large.budget.batchesWaiting, waitingBytes: this.large.waiting.bytes, refusedWaiting: this.large.waiting.refused };
  }

  add(method: DirectMethod): void {
    this.methods.set(method.definition.path, method);
  }

  get installed(): boolean {
    return this.installedOn > 0;
  }

  /**
   * Put the lane in front of grpc-js's stream handler on each HTTP/2 server the
   * grpc-js Server has bound. Returns false, changing nothing, when the server
   * does not have the shape this grpc-js release has (one `stream` listener per
   * HTTP/2 server, found in its `http2Servers` map); every call then goes
   * through grpc-js as before.
   */
  install(server: Server): boolean {
    const bound = (server as unknown as { http2Servers?: unknown }).http2Servers;
    if (!(bound instanceof Map) || bound.size === 0) return false;
    const targets: Array<{ http2Server: http2.Http2Server; fallback: StreamListener }> = [];
    for (const candidate of bound.keys()) {
      if (this.wrapped.has(candidate as object)) continue;
      if (typeof (candidate as { listeners?: unknown }).listeners !== 'function') return false;
      const http2Server = candidate as http2.Http2Server;
      const listeners = http2Server.listeners('stream');
      if (listeners.length !== 1) return false;
      targets.push({ http2Server, fallback: listeners[0] as StreamListener });
    }
    for (const { http2Server, fallback } of targets) {
      this.wrapped.add(http2Server);
      http2Server.removeListener('stream', fallback);
      useStreamTables(http2Server, () => {
        this.streamTableSessions += 1;
      });
      http2Server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
        if (this.unread !== null && this.unread.refusesNewStreams(stream.session)) {
          refuseUnread(stream, this.unread.refusalMessage);
          return;
        }
        // Every call, the lane's and grpc-js's: a connection whose client certificate has expired stands for nobody.
        if (certificateLapsed(stream.session) !== null) {
          refuseUnread(stream, LAPSED_CERTIFICATE_MESSAGE, status.UNAUTHENTICATED);
          return;
        }
        const method = this.methods.get(headers[':path'] ?? '');
        if (method === undefined || !readsItself(headers)) {
          this.guard.watch(stream, headers[':path']);
          withholdEndIfLapsed(stream);
          // A decision call grpc-js reads (another application/grpc* type, another method) is framed as strictly
          // as the lane's own, and may carry only a small plain message.
          if (method !== undefined) holdToOneMessage(stream);
          fallback(stream, headers, flags, rawHeaders);
          return;
        }
        this.calls += 1;
        serve(stream, headers, method, this.maxFrameBytes, this.guard, this.large);
      });
      this.installedOn += 1;
    }
    return this.installedOn > 0;
  }
}

const PIECES_HELD = Symbol('answer bytes not yet handed to the stream');
type PiecedStream = http2.ServerHttp2Stream & { [PIECES_HELD]?: number };

/** Answer bytes a stream still holds: written and not yet sent, and pieces not yet written. */
export function answerBytesHeld(stream: http2.ServerHttp2Stream): number {
  return stream.writableLength + ((stream as PiecedStream)[PIECES_HELD] ?? 0);
}

/**
 * Writes `frame` from `at`: an answer larger than ANSWER_PIECE_BYTES goes one piece at
 * a time, each once the last has been taken, so what the caller has read of it shows in
 * the stream's unsent bytes (unread-answers.ts counts progress so). Pieces handed over
 * together would be one write for node, counted whole until its last byte leaves.
 */
function writeInPieces(stream: http2.ServerHttp2Stream, frame: Buffer, at: number): void {
  if (frame.length - at <= ANSWER_PIECE_BYTES) {
    if (at > 0) (stream as PiecedStream)[PIECES_HELD] = 0;
    stream.end(at === 0 ? frame : frame.subarray(at));
    return;
  }
  (stream as PiecedStream)[PIECES_HELD] = frame.length - at - ANSWER_PIECE_BYTES;
  stream.write(frame.subarray(at, at + ANSWER_PIECE_BYTES), (error) => {
    if (error === null || error === undefined) answer(stream, () => writeInPieces(stream, frame, at + ANSWER_PIECE_BYTES));
  });
}

/** What the lane asks before taking a new stream: whether its connection holds too many unread answers. */
export interface NewStreamGate {
  refusesNewStreams(session: http2.Http2Session | undefined): boolean;
  readonly refusalMessage: string;
}

/** Answers `code` without reading the request, and resets the stream so the caller stops sending it. */
function refuseUnread(stream: http2.ServerHttp2Stream, message: string, code: status = status.RESOURCE_EXHAUSTED): void {
  stream.on('error', ignore);
  answer(stream, () => stream.respond({ ...RESPONSE_HEADERS, 'grpc-status': String(code), 'grpc-message': grpcMessageHeader(message) }, RESPOND_AND_END));
  stream.close(http2.constants.NGHTTP2_NO_ERROR);
}

/**
 * grpc-js runs a unary call's handler from its own 'end' listener (the request is
 * whole). A request that became whole after the client certificate expired, before
 * the timer that cuts the connection fired, must not get there: its 'end' is not
 * passed on, and the connection is cut as the timer would have.
 */
function withholdEndIfLapsed(stream: http2.ServerHttp2Stream): void {
  // Kept: a destroyed stream no longer knows its session (another call's request may have cut it).
  const session = stream.session;
  const emit = stream.emit.bind(stream) as (event: string | symbol, ...args: unknown[]) => boolean;
  (stream as { emit: (event: string | symbol, ...args: unknown[]) => boolean }).emit = (event, ...args) => {
    if (event === 'end' && (cutSessionIfLapsed(session) || stream.destroyed)) return false;
    return emit(event, ...args);
  };
}

/**
 * For a decision call grpc-js reads: its body must be exactly one message whose flag
 * is 0 or 1, as on the lane (serve). grpc-js would decide the first of two messages,
 * or a message followed by stray bytes, and take any other flag for "compressed".
 * Such a stream is reset before grpc-js has its end, so nothing is decided.
 */
function holdToOneMessage(stream: http2.ServerHttp2Stream): void {
  const prefix = Buffer.alloc(5);
  let seen = 0;
  let whole = -1;
  const refuse = (): void => {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
  };
  const onData = (chunk: Buffer): void => {
    if (seen < 5) chunk.copy(prefix, seen, 0, Math.min(chunk.length, 5 - seen));
    seen += chunk.length;
    if (whole < 0 && seen >= 5) {
      // A compressed or large message is only ever decided on the lane, in its turn (LargeMessages):
      // grpc-js would inflate and decide any number at once.
      if (prefix[0] !== 0 || prefix.readUInt32BE(1) >= LARGE_MESSAGE_BYTES) return refuse();
      whole = 5 + prefix.readUInt32BE(1);
    }
    if (whole >= 0 && seen > whole) refuse();
  };
  const onEnd = (): void => {
    stream.off('data', onData);
    if (seen !== whole) refuse();
  };
  stream.on('data', onData);
  stream.once('end', onEnd);
}

/** A gRPC POST whose message is plain or compressed with gzip or deflate: what the lane reads itself. */
function readsItself(headers: http2.IncomingHttpHeaders): boolean {
  if (headers[':method'] !== 'POST') return false;
  const type = headers['content-type'];
  if (type === undefined || !GRPC_PROTO.has(type)) return false;
  const encoding = headers['grpc-encoding'];
  return encoding === undefined || (typeof encoding === 'string' && READ_ENCODINGS.has(encoding));
}

/** The budget large messages are decided against, what each is charged, and what those waiting hold. */
interface LargeMessages {
  readonly budget: BatchesInFlight;
  readonly charge: number;
  readonly waiting: WaitingMessages;
}

/** The large-message calls now: being decided, waiting, and the bytes those waiting hold; and how many were refused for want of room to wait. */
export interface LargeMessageCounts {
  readonly inFlight: number;
  readonly waiting: number;
  readonly waitingBytes: number;
  readonly refusedWaiting: number;
}

/**
 * The bytes large messages waiting for their turn hold, all hosts together and by
 * host. A waiting call holds what it sent, so without a bound a host that sends
 * large messages faster than they are decided makes the server hold all of them.
 */
class WaitingMessages {
  bytes = 0;
  refused = 0;
  private readonly byGroup = new Map<string, number>();

  constructor(readonly maxBytes: number) {}

  /** Holds `bytes` for `group`; false (counted as refused) when that would take all waiting past maxBytes, or the group past half. */
  hold(group: string, bytes: number): boolean {
    const held = this.byGroup.get(group) ?? 0;
    if (this.bytes + bytes > this.maxBytes || held + bytes > Math.floor(this.maxBytes / 2)) {
      this.refused += 1;
      return false;
    }
    this.bytes += bytes;
    this.byGroup.set(group, held + bytes);
    return true;
  }

  release(group: string, bytes: number): void {
    this.bytes -= bytes;
    const left = (this.byGroup.get(group) ?? 0) - bytes;
    if (left > 0) this.byGroup.set(group, left);
    else this.byGroup.delete(group);
  }
}

/** One call on the lane: read the one request message, run the handler, answer once. */
function serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, method: DirectMethod, maxFrameBytes: number, guard: StreamGuard, largeMessages: LargeMessages): void {
  let answered = false;
  let deadlineTimer: NodeJS.Timeout | null = null;
  // Kept: a destroyed stream no longer knows its session, and with it whether its certificate lapsed.
  const session = stream.session;
  // A large message's turn, given back once it is answered: a client that does not read its answer keeps no turn.
  let releaseTurn: (() => void) | null = null;
  const finish = (): boolean => {
    guard.arrived(arriving);
    releaseTurn?.();
    if (answered || stream.destroyed || stream.closed) {
      answered = true;
      return false;
    }
    answered = true;
    if (deadlineTimer !== null) clearTimeout(deadlineTimer);
    return true;
  };
  const fail = (code: status, details: string, metadata?: Metadata | null): void => {
    if (!finish()) return;
    const trailers: http2.OutgoingHttpHeaders = { ...RESPONSE_HEADERS, 'grpc-status': String(code), 'grpc-message': grpcMessageHeader(details) };
    if (metadata) Object.assign(trailers, metadata.toHttp2Headers());
    answer(stream, () => stream.respond(trailers, RESPOND_AND_END));
    // Refused before its body had all come: the stream is reset once the answer has gone (RST_STREAM NO_ERROR,
    // which HTTP/2 provides for a complete response to an incomplete request). Drained instead, with the guard
    // no longer counting it, it stayed open, and kept its slot of the connection's streams, as long as its client
    // went on sending, or sent nothing more.
    if (!stream.readableEnded) stream.close(http2.constants.NGHTTP2_NO_ERROR);
  };
  // The guard counts this body's bytes while it arrives, and gives them back once it has arrived, is answered,
  // or the stream goes; it refuses the stream itself when the body is too slow, or its host must make room.
  const arriving = guard.opened(stream, fail);
  // An error here always comes with a close; the close is what ends the call.
  stream.on('error', ignore);
  // `once` for 'close' and 'end' (each is emitted once anyway): a listener left on the stream would keep the whole call
  // (this closure's body, guard and callbacks) alive for as long as node keeps the stream object, past the young generation.
  stream.once('close', () => {
    guard.arrived(arriving);
    answered = true;
    if (deadlineTimer !== null) clearTimeout(deadlineTimer);
    // The stream object can outlive the call (node lets go of it on its own schedule);
    // the body this listener closes over need not.
    stream.removeListener('data', onData);
  });

  let deadline = Infinity;
  // Given twice, node hands it over as one value (`5S, 1n`), which is no timeout.
  const timeout = headers['grpc-timeout'] as string | undefined;
  if (timeout !== undefined) {
    const match = TIMEOUT.exec(timeout);
    if (match === null) {
      fail(status.INTERNAL, `Invalid grpc-timeout value "${timeout}"`);
      return;
    }
    const ms = Number(match[1]) * TIMEOUT_UNIT_MS[match[2]!]!;
    deadline = Date.now() + ms;
    // Past about 24.8 days node would fire a timer at once (and warn): such a deadline is no deadline.
    if (ms <= MAX_TIMER_MS) deadlineTimer = setTimeout(() => fail(status.DEADLINE_EXCEEDED, 'Deadline exceeded'), ms);
  }

  const body = new UnaryBody(maxFrameBytes);
  function onData(chunk: Buffer): void {
    if (answered) return;
    if (!guard.take(arriving, chunk.length)) {
      fail(status.RESOURCE_EXHAUSTED, guard.overBudgetMessage);
      return;
    }
    const refusal = body.push(chunk);
    if (refusal !== null) fail(refusal.code, `${refusal.details} ${method.definition.path}`);
  }
  stream.on('data', onData);
  stream.once('end', () => {
    guard.arrived(arriving);
    if (answered) return;
    // The request may have been started before the certificate expired and finished after it; or its
    // connection was cut meanwhile (another call's request found the certificate lapsed), and nobody would get the answer.
    if (stream.destroyed || certificateLapsed(session) !== null) {
      fail(status.UNAUTHENTICATED, LAPSED_CERTIFICATE_MESSAGE);
      return;
    }
    const message = body.finish();
    if (typeof message === 'string') {
      fail(message === NO_MESSAGE ? status.UNIMPLEMENTED : status.INTERNAL, `${message} ${method.definition.path}`);
      return;
    }
    const compressed = body.compressed;
    if (!compressed && message.length < LARGE_MESSAGE_BYTES) {
      decide(message);
      return;
    }
    const encoding = headers['grpc-encoding'];
    if (compressed && encoding !== 'gzip' && encoding !== 'deflate') {
      fail(status.INTERNAL, `${COMPRESSED} ${method.definition.path}`);
      return;
    }
    // Decided (inflated) only in its turn: until then the call holds the bytes it sent and nothing more.
    const group = callerGroup(peerOf(session));
    const admitted = largeMessages.budget.admit(group, largeMessages.charge, () => answered || stream.destroyed || stream.closed);
    // What it sent, until decided: dropped if the stream goes while it waits, so a waiter whose caller left holds nothing.
    let sent: Buffer | null = message;
    const decideInTurn = (release: () => void): void => {
      const body = sent;
      sent = null;
      if (answered || stream.destroyed || stream.closed || body === null) {
        release();
        return;
      }
      releaseTurn = release;
      stream.once('close', release);
      // It may have waited past the certificate's expiry.
      if (certificateLapsed(session) !== null) {
        fail(status.UNAUTHENTICATED, LAPSED_CERTIFICATE_MESSAGE);
        return;
      }
      if (!compressed) {
        decide(body);
        return;
      }
      const inflated = inflate(body, encoding as 'gzip' | 'deflate', maxFrameBytes);
      if (Buffer.isBuffer(inflated)) decide(inflated);
      else fail(inflated.code, inflated.details);
    };
    if (typeof admitted === 'function') {
      decideInTurn(admitted);
      return;
    }
    const held = message.length;
    if (!largeMessages.waiting.hold(group, held)) {
      sent = null;
      const max = largeMessages.waiting.maxBytes;
      fail(status.RESOURCE_EXHAUSTED, `too many large messages are waiting to be decided (more than ${max} bytes of them, or ${Math.floor(max / 2)} from one host: grpcStreams.maxWaitingBytes); retry later, or send fewer at once`);
      void admitted.then((release) => release?.());
      return;
    }
    let waiting = true;
    const stopWaiting = (): void => {
      if (!waiting) return;
      waiting = false;
      largeMessages.waiting.release(group, held);
    };
    stream.once('close', () => {
      stopWaiting();
      sent = null;
    });
    void admitted.then((release) => {
      stopWaiting();
      if (release !== null) decideInTurn(release);
    });
  });

  /** Deserializes the request, runs the handler and answers. */
  function decide(message: Buffer): void {
    let request: unknown;
    try {
      request = method.definition.requestDeserialize(message);
    } catch {
      fail(status.INTERNAL, 'Error deserializing request');
      return;
    }
    const call = new DirectCall(stream, headers, request, deadline);
    const callback: sendUnaryData<unknown> = (error, value, trailer) => {
      if (error) {
        const code = typeof error.code === 'number' && Number.isInteger(error.code) ? (error.code as status) : status.UNKNOWN;
        fail(code, typeof error.details === 'string' ? error.details : 'message' in error && typeof error.message === 'string' ? error.message : 'Unknown Error', trailer ?? error.metadata ?? null);
        return;
      }
      let bytes: Buffer;
      try {
        bytes = method.definition.responseSerialize(value);
      } catch {
        fail(status.INTERNAL, 'Error serializing response');
        return;
      }
      if (!finish()) return;
      const frame = Buffer.allocUnsafe(5 + bytes.length);
      frame[0] = 0;
      frame.writeUInt32BE(bytes.length, 1);
      bytes.copy(frame, 5);
      answer(stream, () => {
        stream.respond(RESPONSE_HEADERS, RESPOND_WITH_TRAILERS);
        stream.on('wantTrailers', sendOkTrailers);
        writeInPieces(stream, frame, 0);
      });
    };
    try {
      method.handler(call, callback);
    } catch {
      fail(status.UNKNOWN, 'Unknown error');
    }
  }
}

/** Each session's peer, as peerOf last read it: a session's remote end does not change. */
const peerBySession = new WeakMap<http2.Http2Session, string>();

/** The remote end of a session as the lane's calls name it (DirectCall.getPeer). */
function peerOf(session: http2.Http2Session | undefined): string {
  if (session === undefined) return 'unknown';
  const known = peerBySession.get(session);
  if (known !== undefined) return known;
  // Read through the session's socket proxy (three trapped lookups and a string), hence once per session.
  const socket = session.socket;
  if (!socket?.remoteAddress) return 'unknown';
  const peer = socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress;
  peerBySession.set(session, peer);
  return peer;
}

const NO_MESSAGE = 'Received no request message for unary method';
const SECOND_MESSAGE = 'Received a second request message for unary method';
const TRUNCATED = 'Received a truncated request message for unary method';
const COMPRESSED = 'Received a compressed message, but "grpc-encoding" is identity, for';
const UNKNOWN_FLAG = 'Received a message whose compressed flag is neither 0 nor 1, for';

/** What zlib's one-step functions answer when asked for `info`: the output, and how much input the stream took. */
interface Inflated {
  readonly buffer: Buffer;
  readonly engine: { readonly bytesWritten: number };
}

/**
 * A compressed message inflated in one step, at most `maxBytes` of it (the work is
 * bounded by what is put out, whatever the ratio); or the status grpc-js answers when
 * it cannot be. Bytes after the end of a deflate stream are refused: zlib stops at
 * the end and says nothing of them, so a message would carry bytes no one reads.
 */
function inflate(message: Buffer, encoding: 'gzip' | 'deflate', maxBytes: number): Buffer | { code: status; details: string } {
  try {
    const options = { maxOutputLength: maxBytes, info: true };
    const inflated = (encoding === 'gzip' ? zlib.gunzipSync(message, options) : zlib.inflateSync(message, options)) as unknown as Inflated;
    const unread = message.length - inflated.engine.bytesWritten;
    if (unread > 0) return { code: status.INTERNAL, details: `Failed to decompress message: ${unread} bytes after the end of the compressed stream` };
    return inflated.buffer;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
      return { code: status.RESOURCE_EXHAUSTED, details: `Received message that decompresses to a size larger than ${maxBytes}` };
    }
    return { code: status.INTERNAL, details: 'Failed to decompress message' };
  }
}

/**
 * The body of a unary call, read as it arrives into one buffer that grows to the size
 * its prefix declares: memory stays within twice what the caller actually sent, however
 * the bytes are split into DATA frames (4 MiB sent a byte a frame must not become four
 * million Buffers), and a second message is refused as soon as it starts.
 */
class UnaryBody {
  private readonly head = Buffer.alloc(5);
  private headBytes = 0;
  private declared = 0;
  private message = EMPTY;
  private filled = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /** Takes the next chunk; a refusal when the message is over the limit or a second one starts. */
  push(chunk: Buffer): { code: status; details: string } | null {
    let offset = 0;
    if (this.headBytes < 5) {
      offset = Math.min(5 - this.headBytes, chunk.length);
      chunk.copy(this.head, this.headBytes, 0, offset);
      this.headBytes += offset;
      if (this.headBytes < 5) return null;
      this.declared = this.head.readUInt32BE(1);
      if (this.declared > this.maxMessageBytes) {
        return { code: status.RESOURCE_EXHAUSTED, details: `Received message larger than max (${this.declared} vs. ${this.maxMessageBytes}) for` };
      }
    }
    const rest = chunk.length - offset;
    if (rest === 0) return null;
    if (this.filled + rest > this.declared) return { code: status.UNIMPLEMENTED, details: SECOND_MESSAGE };
    if (this.filled + rest > this.message.length) this.grow(this.filled + rest);
    chunk.copy(this.message, this.filled, offset);
    this.filled += rest;
    return null;
  }

  /** The one message as it came (compressed when `compressed`), or why there is not exactly one. */
  finish(): Buffer | string {
    if (this.headBytes === 0) return NO_MESSAGE;
    if (this.headBytes < 5 || this.filled < this.declared) return TRUNCATED;
    if (this.head[0] !== 0 && this.head[0] !== 1) return UNKNOWN_FLAG;
    return this.message.subarray(0, this.filled);
  }

  /** The message's flag says it is compressed. */
  get compressed(): boolean {
    return this.head[0] === 1;
  }

  private grow(needed: number): void {
    let size = Math.max(this.message.length * 2, 4096);
    while (size < needed) size *= 2;
    const next = Buffer.allocUnsafe(Math.min(size, this.declared));
    this.message.copy(next, 0, 0, this.filled);
    this.message = next;
  }
}

const EMPTY = Buffer.alloc(0);

function ignore(): void {}

/**
 * The trailers of an answered call. One function for every stream (node emits
 * 'wantTrailers' once per stream, with the stream as `this`), so an answer adds no
 * closure and no once-wrapper. A stream that went meanwhile is let go, as answer does.
 */
function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  try {
    this.sendTrailers(OK_TRAILERS);
  } catch {
    this.destroy();
  }
}

/**
 * Write to a stream that may have been reset or had its session torn down since
 * it was last checked: node then throws, and the only thing left to do is to let
 * the stream go (the caller sees the reset, never an answer).
 */
function answer(stream: http2.ServerHttp2Stream, write: () => void): void {
  try {
    write();
  } catch {
    stream.destroy();
  }
}

/** The call as verdict's handlers see it (call.ts UnaryCall), read from the stream and its session. */
class DirectCall implements UnaryCall {
  private cachedMetadata: Metadata | null = null;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    private readonly headers: http2.IncomingHttpHeaders,
    readonly request: unknown,
    private readonly deadline: number,
  ) {}

  /** Built on first use: a check that names no request id in its message reads x-request-id from here. */
  get metadata(): Metadata {
    if (this.cachedMetadata === null) {
      const metadata = Metadata.fromHttp2Headers(this.headers);
      for (const name of TRANSPORT_HEADERS) metadata.remove(name);
      this.cachedMetadata = metadata;
    }
    return this.cachedMetadata;
  }

  requestHeader(name: string): string | null {
    const header = this.headers[name];
    const value = typeof header === 'string' ? header : Array.isArray(header) ? (header[0] ?? null) : null;
    // As grpc-js reads metadata: a text value is printable ASCII, else it is dropped (node hands other bytes over as latin1).
    return value !== null && PRINTABLE_ASCII.test(value) ? value : null;
  }

  getDeadline(): number {
    return this.deadline;
  }

  /** The client reset the stream, or its connection is gone. */
  get cancelled(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  getPeer(): string {
    return peerOf(this.stream.session);
  }

  getAuthContext(): AuthContext {
    const session = this.stream.session;
    // `encrypted` first: a session's socket is a proxy, and `instanceof` walks its prototypes through a trap on every call.
    if (session === undefined || session.encrypted !== true) return NO_AUTH_CONTEXT;
    const socket = session.socket;
    if (!(socket instanceof TLSSocket) || !socket.authorized) return NO_AUTH_CONTEXT;
    const certificate = socket.getPeerCertificate();
    return { transportSecurityType: 'ssl', sslPeerCertificate: certificate.raw ? certificate : undefined };
  }
}
