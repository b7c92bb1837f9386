// A connection stands for its client certificate only while the certificate is in
// force. TLS looks at the dates once, at the handshake, and a gateway's kept-alive
// HTTP/2 connection can live for weeks: without this, a certificate that expired
// (or was issued short-lived so that it would) kept every right it gave — asking
// for decisions, asking as an AuthZEN PEP about anyone — for as long as the
// connection stayed up. Past its dates, a connection is treated as a new one with
// that certificate would be: refused.

import type { Http2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { certificateLapsed, connectionPeer, noteCertificateExpiry, tlsSocketCertificateExpiry, type LapsedConnection, type TrustAnchors } from '../authn/certificate-lapse.js';

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

/** How each HTTP/2 session with a client certificate is ended at its expiry. */
const sessionCuts = new WeakMap<Http2Session, () => void>();

/**
 * Ends the session now if its client certificate has expired and its timer has not
 * fired yet (a timer runs late when the machine was paused or the thread busy);
 * true when it did. For calls whose request arrives whole after the expiry on the
 * paths that grpc-js reads (the direct lane refuses its own).
 */
export function cutSessionIfLapsed(session: Http2Session | undefined): boolean {
  if (session === undefined || certificateLapsed(session) === null) return false;
  sessionCuts.get(session)?.();
  return true;
}

/**
 * For the gRPC port: each HTTP/2 session opened with a client certificate ends when
 * the certificate expires. It is destroyed, not closed gracefully: a graceful close
 * would still answer the streams already open, and a stream whose headers came
 * before the expiry and whose body came after would be decided after it. The
 * client's next call opens a new connection, whose handshake refuses the certificate.
 * A connection already past it when it opens (a chain that cannot be verified, see
 * tlsSocketCertificateExpiry) has every call refused, saying why (certificateLapsed),
 * where `callsChecked`; elsewhere its session ends at once. `servers` are the port's
 * HTTP/2 servers (grpc-js's, found by the caller); `anchors` the certificates of `tls.clientCa`.
 */
export function closeSessionsAtCertificateExpiry(servers: Iterable<unknown>, onLapsed: (connection: LapsedConnection) => void, options: { readonly callsChecked: boolean; readonly anchors: TrustAnchors }): void {
  for (const server of servers) {
    if (typeof (server as { on?: unknown }).on !== 'function') continue;
    (server as { on(event: 'session', listener: (session: Http2Session) => void): void }).on('session', (session) => {
      const socket = session.socket;
      const expiresAt = socket === undefined ? null : tlsSocketCertificateExpiry(socket, options.anchors);
      if (expiresAt === null) return;
      noteCertificateExpiry(session, expiresAt);
      // Already past: where each call is checked (the direct lane's stream listener), it is refused
      // saying why; elsewhere the session ends now.
      if (Date.now() > expiresAt && options.callsChecked) return;
      const cut = (): void => {
        if (session.destroyed) return;
        onLapsed({ peer: connectionPeer(socket), expiredAt: new Date(expiresAt).toISOString() });
        session.destroy();
      };
      sessionCuts.set(session, cut);
      const cancel = untilExpiry(expiresAt, cut);
      session.once('close', cancel);
    });
  }
}

/**
 * For the HTTPS port: each TLS connection with a client certificate is destroyed when
 * the certificate expires, a request still arriving on it (headers sent before the
 * expiry, body after) included. One already past when it opens is left for its
 * requests to be refused, saying why (certificateLapsed). `anchors`: the certificates of `tls.clientCa`.
 */
export function endConnectionsAtCertificateExpiry(server: { on(event: 'secureConnection', listener: (socket: TLSSocket) => void): unknown }, onLapsed: (connection: LapsedConnection) => void, anchors: TrustAnchors): void {
  server.on('secureConnection', (socket) => {
    const expiresAt = tlsSocketCertificateExpiry(socket, anchors);
    if (expiresAt === null) return;
    noteCertificateExpiry(socket, expiresAt);
    if (Date.now() > expiresAt) return;
    const cancel = untilExpiry(expiresAt, () => {
      if (socket.destroyed) return;
      onLapsed({ peer: connectionPeer(socket), expiredAt: new Date(expiresAt).toISOString() });
      socket.destroy();
    });
    socket.once('close', cancel);
  });
}
