// A connection stands for its client certificate only while the certificate is in
// force. TLS looks at the dates once, at the handshake, and a gateway's kept-alive
// HTTP/2 connection can live for weeks: without this, a certificate that expired
// (or was issued short-lived so that it would) kept every right it gave — asking
// for decisions, asking as an AuthZEN PEP about anyone — for as long as the
// connection stayed up. Past its dates, a connection is treated as a new one with
// that certificate would be: refused.

import type { Http2Session } from 'node:http2';
import { tlsSocketCertificateExpiry } from '../authn/mtls.js';

/** The longest delay a timer takes (about 24.8 days); a later expiry is reached in steps. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `expired` once the clock is past `expiresAt` (a certificate is in force
 * through its last millisecond); returns the way to cancel. The timer does not keep
 * the process alive.
 */
export function untilExpiry(expiresAt: number, expired: () => void): () => void {
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

/**
 * For the gRPC port: each HTTP/2 session opened with a client certificate is closed
 * when the certificate expires. A graceful close (GOAWAY): calls in flight finish,
 * and the client's next call opens a new connection, whose handshake refuses the
 * certificate. `servers` are the port's HTTP/2 servers (grpc-js's, found by the caller).
 */
export function closeSessionsAtCertificateExpiry(servers: Iterable<unknown>, onLapsed: (connection: LapsedConnection) => void): void {
  for (const server of servers) {
    if (typeof (server as { on?: unknown }).on !== 'function') continue;
    (server as { on(event: 'session', listener: (session: Http2Session) => void): void }).on('session', (session) => {
      const socket = session.socket;
      const expiresAt = socket === undefined ? null : tlsSocketCertificateExpiry(socket);
      if (expiresAt === null) return;
      const peer = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? 0}`;
      const cancel = untilExpiry(expiresAt, () => {
        if (session.closed || session.destroyed) return;
        onLapsed({ peer, expiredAt: new Date(expiresAt).toISOString() });
        session.close();
      });
      session.once('close', cancel);
    });
  }
}

/**
 * For the HTTPS port (HTTP/1.1): whether the connection a request came on was opened
 * with a client certificate that has since expired. Read once per connection.
 */
export class LapsedCertificates {
  private readonly expiryBySocket = new WeakMap<object, number | null>();

  /** The certificate's expiry (ms) when it is past, else null (in force, or no certificate). */
  lapsed(socket: object, now: number): number | null {
    let expiresAt = this.expiryBySocket.get(socket);
    if (expiresAt === undefined) {
      expiresAt = tlsSocketCertificateExpiry(socket);
      this.expiryBySocket.set(socket, expiresAt);
    }
    return expiresAt !== null && now > expiresAt ? expiresAt : null;
  }
}
