// Whether the client certificate a connection was opened with is still in force.
// TLS looks at a certificate's dates once, at the handshake, and a connection can
// live for weeks. The connections are cut at the expiry (server/certificate-expiry.ts);
// what a request asks here covers a timer that fires late. Ports that require client
// certificates resume no TLS sessions (mtls.ts), since a resumed session shows no
// certificate chain to look at.

import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate } from 'node:tls';
import { verifiedPeerCertificate } from './mtls.js';

/** The certificates of `tls.clientCa`, which end every chain a client certificate is verified with. */
export class TrustAnchors {
  private constructor(private readonly fingerprints: ReadonlySet<string>) {}

  /** The certificates of a PEM bundle (none for null). */
  static fromPem(bundle: Buffer | null): TrustAnchors {
    const blocks = bundle === null ? [] : (bundle.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []);
    return new TrustAnchors(new Set(blocks.map((block) => new X509Certificate(block).fingerprint256)));
  }

  has(fingerprint256: string): boolean {
    return this.fingerprints.has(fingerprint256);
  }
}

/** The longest chain followed; a longer one is not a chain any CA issues. */
const MAX_CHAIN = 16;

/**
 * When the verified client certificate on a TLS socket stops being usable (ms), or null
 * (no such certificate): the earliest expiry along its chain up to a certificate of
 * `anchors` (the client certificate, its intermediates, the CA), since a new handshake
 * fails once any of them has expired. Node lists the chain by matching names, without
 * looking at signatures, so a client could slip a look-alike intermediate with
 * distant dates before the real one: each link is checked here to be signed by the
 * next. A chain that cannot be followed that way to an anchor counts as expired (0):
 * no honest client sends one, and its real expiry is unknown. Unparsable dates count
 * as expired too.
 */
export function tlsSocketCertificateExpiry(socket: object, anchors: TrustAnchors): number | null {
  const leaf = verifiedPeerCertificate(socket, true) as DetailedPeerCertificate | null;
  if (leaf === null) return null;
  let expiresAt = Number.POSITIVE_INFINITY;
  let cert: DetailedPeerCertificate = leaf;
  for (let links = 0; links < MAX_CHAIN; links++) {
    const to = Date.parse(cert.valid_to ?? '');
    expiresAt = Math.min(expiresAt, Number.isFinite(to) ? to : 0);
    if (anchors.has(cert.fingerprint256)) return expiresAt;
    const issuer = cert.issuerCertificate;
    if (issuer === undefined || issuer === cert || !signedBy(cert, issuer)) return 0;
    cert = issuer;
  }
  return 0;
}

function signedBy(cert: DetailedPeerCertificate, issuer: DetailedPeerCertificate): boolean {
  try {
    return new X509Certificate(cert.raw).verify(new X509Certificate(issuer.raw).publicKey);
  } catch {
    return false;
  }
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
 * each call: a timer fires late after the machine was paused or while the thread was
 * busy. A map lookup, and the clock only for connections with a certificate.
 */
export function certificateLapsed(connection: object | undefined): number | null {
  if (connection === undefined) return null;
  const expiresAt = certificateExpiry.get(connection);
  return expiresAt !== undefined && Date.now() > expiresAt ? expiresAt : null;
}

