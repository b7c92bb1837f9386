// A connection stands for its client certificate only while the certificate is in
// force. TLS looks at the dates once, at the handshake, and a gateway's kept-alive
// HTTP/2 connection can live for weeks: without this, a certificate that expired
// (or was issued short-lived so that it would) kept every right it gave — asking
// for decisions, asking as an AuthZEN PEP about anyone — for as long as the
// connection stayed up. Past its dates, a connection is treated as a new one with
// that certificate would be: refused.

import type { Http2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { tlsSocketCertificateExpiry } from '../authn/mtls.js';

/** The longest delay a timer takes (about 24.8 days); a later expiry is reached in steps. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `expired` once the clock is past `expiresAt` (a certificate is in force
 * through its last millisecond); returns the way to cancel. The timer does not keep
 * the process alive.
 */
function untilExpiry(expiresAt: number, expired: () => void): () => void {
  let timer: NodeJS.Timeout | null = null;
  const wait = (): void => {
    const left = expiresAt + 1 - Date.now();
    if (left <= 0) {
      timer = null;
      expired();
      return;
    }
    timer = setTimeout(wait, Math.min(left, LONGEST_TIMER_MS));
    timer.unref();
  };
  wait();
  return () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  };
}

/** What a lapsed connection's log line names. */
export interface LapsedConnection {
  /** The peer address and port. */
  readonly peer: string;
  /** When the certificate stopped being valid (ISO 8601). */
  readonly expiredAt: string;
}

/** What a call on a connection whose certificate has expired is told. */
export const LAPSED_CERTIFICATE_MESSAGE = 'the client certificate this connection was opened with has expired; open a new connection with a valid certificate';

/**
 * The expiry of the client certificate of each connection that has one: HTTP/2
 * sessions (gRPC) and TLS sockets (HTTPS). Connections without one are not in it.
 */
const certificateExpiry = new WeakMap<object, number>();

/** A connection's peer (address:port), for the log line. */
export function connectionPeer(socket: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }): string {
  return `${socket.remoteAddress ?? ''}:${socket.remotePort ?? 0}`;
}

/**
 * When the client certificate a connection (an HTTP/2 session, a TLS socket) was
 * opened with expired, if it has; else null (in force, or no certificate). Asked for
 * each call: a resumed TLS session carries the certificate it began with, and a
 * timer fires late after the machine was paused. A map lookup, and the clock only
 * for connections with a certificate.
 */
export function certificateLapsed(connection: object | undefined): number | null {
  if (connection === undefined) return null;
  const expiresAt = certificateExpiry.get(connection);
  return expiresAt !== undefined && Date.now() > expiresAt ? expiresAt : null;
}

/**
 * For the gRPC port: each HTTP/2 session opened with a client certificate ends when
 * the certificate expires. It is destroyed, not closed gracefully: a graceful close
 * would still answer the streams already open, and a stream whose headers came
 * before the expiry and whose body came after would be decided after it. The
 * client's next call opens a new connection, whose handshake refuses the certificate;
 * a client that resumes its TLS session instead has every call refused
 * (certificateLapsed) where `callsChecked`, else its session ended at once.
 * `servers` are the port's HTTP/2 servers (grpc-js's, found by the caller).
 */
export function closeSessionsAtCertificateExpiry(servers: Iterable<unknown>, onLapsed: (connection: LapsedConnection) => void, options: { readonly callsChecked: boolean }): void {
  for (const server of servers) {
    if (typeof (server as { on?: unknown }).on !== 'function') continue;
    (server as { on(event: 'session', listener: (session: Http2Session) => void): void }).on('session', (session) => {
      const socket = session.socket;
      const expiresAt = socket === undefined ? null : tlsSocketCertificateExpiry(socket);
      if (expiresAt === null) return;
      certificateExpiry.set(session, expiresAt);
      // Already past (a resumed TLS session): where each call is checked (the direct lane's stream
      // listener), it is refused saying why; elsewhere the session ends now.
      if (Date.now() > expiresAt && options.callsChecked) return;
      const cancel = untilExpiry(expiresAt, () => {
        if (session.destroyed) return;
        onLapsed({ peer: connectionPeer(socket), expiredAt: new Date(expiresAt).toISOString() });
        session.destroy();
      });
      session.once('close', cancel);
    });
  }
}

/**
 * For the HTTPS port: each TLS connection with a client certificate is destroyed when
 * the certificate expires, a request still arriving on it (headers sent before the
 * expiry, body after) included. One already past (a resumed TLS session) is left for
 * its requests to be refused, saying why (certificateLapsed).
 */
export function endConnectionsAtCertificateExpiry(server: { on(event: 'secureConnection', listener: (socket: TLSSocket) => void): unknown }, onLapsed: (connection: LapsedConnection) => void): void {
  server.on('secureConnection', (socket) => {
    const expiresAt = tlsSocketCertificateExpiry(socket);
    if (expiresAt === null) return;
    certificateExpiry.set(socket, expiresAt);
    if (Date.now() > expiresAt) return;
    const cancel = untilExpiry(expiresAt, () => {
      if (socket.destroyed) return;
      onLapsed({ peer: connectionPeer(socket), expiredAt: new Date(expiresAt).toISOString() });
      socket.destroy();
    });
    socket.once('close', cancel);
  });
}
