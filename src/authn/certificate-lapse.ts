// Whether the client certificate a connection was opened with is still in force.
// TLS looks at a certificate's dates once, at the handshake; a connection can live
// for weeks, and a resumed TLS session checks no certificate at all. The connections
// are cut at the expiry (server/certificate-expiry.ts); what a request asks here
// covers a timer that fires late and a resumed session.

import type { DetailedPeerCertificate, PeerCertificate, TLSSocket } from 'node:tls';
import { verifiedPeerCertificate } from './mtls.js';

/** How many client certificates' chains are remembered for resumed TLS sessions (the oldest go first). */
const REMEMBERED_CHAINS = 10_000;

/**
 * For each client certificate (by fingerprint) that completed a full handshake, when
 * the earliest certificate of a chain it was verified with expires. A resumed TLS
 * session carries the client's own certificate only, not the intermediates that
 * vouched for it, so its chain is looked up here.
 */
const chainExpiryByCertificate = new Map<string, number>();

function rememberChainExpiry(fingerprint: string, expiresAt: number): void {
  const known = chainExpiryByCertificate.get(fingerprint);
  chainExpiryByCertificate.delete(fingerprint);
  // A certificate seen with two chains keeps the earlier expiry: a resumed session may come from either.
  chainExpiryByCertificate.set(fingerprint, known === undefined ? expiresAt : Math.min(known, expiresAt));
  if (chainExpiryByCertificate.size > REMEMBERED_CHAINS) {
    const oldest = chainExpiryByCertificate.keys().next().value;
    if (oldest !== undefined) chainExpiryByCertificate.delete(oldest);
  }
}

/**
 * When the verified client certificate on a TLS socket stops being usable (ms), or null
 * (no such certificate): the earliest expiry along its chain (the certificate, the
 * intermediates it came with, the CA it was verified against), since a new handshake
 * fails once any of them has expired. Unparsable dates count as expired.
 */
export function tlsSocketCertificateExpiry(socket: object): number | null {
  const leaf = verifiedPeerCertificate(socket, true) as DetailedPeerCertificate | null;
  if (leaf === null) return null;
  let expiresAt = Number.POSITIVE_INFINITY;
  const seen = new Set<PeerCertificate>();
  // A self-signed certificate is its own issuer; the bound keeps a malformed chain finite.
  for (let cert: DetailedPeerCertificate | undefined = leaf; cert !== undefined && !seen.has(cert) && seen.size < 32; cert = cert.issuerCertificate) {
    seen.add(cert);
    const to = Date.parse(cert.valid_to ?? '');
    expiresAt = Math.min(expiresAt, Number.isFinite(to) ? to : 0);
  }
  const resumed = (socket as Partial<TLSSocket>).isSessionReused?.() === true;
  if (!resumed) rememberChainExpiry(leaf.fingerprint256, expiresAt);
  else expiresAt = Math.min(expiresAt, chainExpiryByCertificate.get(leaf.fingerprint256) ?? expiresAt);
  return expiresAt;
}

/** What a lapsed connection's log line names. */
export interface LapsedConnection {
  /** The peer address and port. */
  readonly peer: string;
  /** When the certificate stopped being valid (ISO 8601). */
  readonly expiredAt: string;
}

/** A connection's peer (address:port), for the log line. */
export function connectionPeer(socket: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }): string {
  return `${socket.remoteAddress ?? ''}:${socket.remotePort ?? 0}`;
}

/** What a call on a connection whose certificate has expired is told. */
export const LAPSED_CERTIFICATE_MESSAGE = 'the client certificate this connection was opened with, or one in its chain, has expired; open a new connection with a valid certificate';

/**
 * The expiry of the client certificate of each connection that has one: HTTP/2
 * sessions (gRPC) and TLS sockets (HTTPS). Connections without one are not in it.
 */
const certificateExpiry = new WeakMap<object, number>();

/** Records when the certificate of a connection (an HTTP/2 session, a TLS socket) stops being usable. */
export function noteCertificateExpiry(connection: object, expiresAt: number): void {
  certificateExpiry.set(connection, expiresAt);
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

