// TLS for verdict's own ports, and the caller identity a client certificate gives.

import { X509Certificate, constants as cryptoConstants, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { ServerCredentials, type ServerUnaryCall } from '@grpc/grpc-js';
import { VerdictError, messageOf } from '../errors.js';
import type { TlsConfig } from './config.js';

/** The files of a TlsConfig, read and checked. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly clientCa: Buffer | null;
  readonly requireClientCert: boolean;
  /** Serve the operator HTTP port over TLS too. */
  readonly http: boolean;
  /** Subject of the server certificate, for the start-up log line. */
  readonly subject: string;
  /** When the server certificate expires (ISO 8601), for the start-up log line. */
  readonly validTo: string;
}

function readPem(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `tls.${key}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
  }
}

/**
 * Reads the certificate, key and client CA and checks them up front — that the
 * key belongs to the certificate, that the CA file holds a certificate — so a
 * mistake stops the server at start with the file named, rather than surfacing
 * as handshake failures later. Certificates are read once: replacing them needs
 * a restart.
 * @throws VerdictError CONFIG_INVALID
 */
export function loadTlsMaterial(config: TlsConfig): TlsMaterial {
  const cert = readPem(config.cert, 'cert');
  const key = readPem(config.key, 'key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `tls.cert: ${config.cert} is not a PEM certificate: ${messageOf(error)}`, { cause: error });
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `tls.key: ${config.key} is not a PEM private key (an encrypted key is not supported): ${messageOf(error)}`, { cause: error });
  }
  if (!x509.checkPrivateKey(privateKey)) throw new VerdictError('CONFIG_INVALID', `tls.key: ${config.key} is not the private key of the certificate in ${config.cert}`);
  let clientCa: Buffer | null = null;
  if (config.clientCa !== undefined) {
    clientCa = readPem(config.clientCa, 'clientCa');
    try {
      new X509Certificate(clientCa);
    } catch (error) {
      throw new VerdictError('CONFIG_INVALID', `tls.clientCa: ${config.clientCa} is not a PEM certificate bundle: ${messageOf(error)}`, { cause: error });
    }
  }
  return {
    cert,
    key,
    clientCa,
    requireClientCert: config.requireClientCert ?? clientCa !== null,
    http: config.http ?? false,
    subject: x509.subject.replace(/\n/g, ', '),
    validTo: new Date(x509.validTo).toISOString(),
  };
}

/**
 * With client certificates required, no TLS session is resumed: a resumed session shows
 * the client's certificate without the chain it was verified with, so the chain's
 * expiry could not be followed (certificate-lapse.ts), and session tickets are valid
 * in every `--workers` worker. A client that reconnects makes a full handshake.
 */
function sessionOptions(material: TlsMaterial): { secureOptions?: number } {
  return material.requireClientCert ? { secureOptions: cryptoConstants.SSL_OP_NO_TICKET } : {};
}

/** grpc-js server credentials built from options, so that they can carry sessionOptions. */
class GrpcServerTls extends ServerCredentials {
  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

/** gRPC server credentials: TLS, and with a client CA, client certificates required and verified against it. */
export function grpcServerCredentials(material: TlsMaterial): ServerCredentials {
  return new GrpcServerTls(
    // GRPC_SSL_CIPHER_SUITES: grpc-js's own setting, honoured as its credentials would.
    { requestCert: material.requireClientCert, rejectUnauthorized: material.requireClientCert, ...(process.env['GRPC_SSL_CIPHER_SUITES'] ? { ciphers: process.env['GRPC_SSL_CIPHER_SUITES'] } : {}) },
    { ...(material.clientCa ? { ca: material.clientCa } : {}), cert: material.cert, key: material.key, ...sessionOptions(material) },
  );
}

/** node:https server options with the same checks as the gRPC port. */
export function httpsServerOptions(material: TlsMaterial): { cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean; rejectUnauthorized: boolean; secureOptions?: number } {
  return {
    cert: material.cert,
    key: material.key,
    ...(material.clientCa ? { ca: material.clientCa } : {}),
    requestCert: material.requireClientCert,
    rejectUnauthorized: material.requireClientCert,
    ...sessionOptions(material),
  };
}

/** One subjectAltName entry, e.g. `{ type: 'URI', value: 'spiffe://prod/ns/gw/sa/envoy' }`. */
export interface AltName {
  readonly type: string;
  readonly value: string;
}

/**
 * Parses Node's `subjectaltname` text (`DNS:a.example, URI:spiffe://x, IP Address:10.0.0.1`).
 * Node quotes a value that holds a comma or quote as a JSON string (`URI:"a,b"`).
 */
export function parseSubjectAltName(text: string | undefined): AltName[] {
  const names: AltName[] = [];
  if (!text) return names;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon).trim();
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      } catch {
        value = text.slice(colon + 2, end);
      }
      next = text.indexOf(', ', end);
    } else {
      next = text.indexOf(', ', colon);
      value = text.slice(colon + 1, next < 0 ? text.length : next);
    }
    names.push({ type, value });
    if (next < 0) break;
    i = next + 2;
  }
  return names;
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/**
 * The identity a verified client certificate stands for, recorded as the caller:
 * the first URI SAN as `uri:<uri>` (SPIFFE ids, as Istio and SPIRE issue them),
 * else the first DNS SAN as `dns:<name>`, else the subject CN as `cn:<cn>`; null
 * when the certificate has none of these. SANs come first because RFC 6125
 * deprecates identity in the CN and because several certificates often share one.
 */
export function certificateIdentity(cert: Pick<PeerCertificate, 'subject' | 'subjectaltname'>): string | null {
  const names = parseSubjectAltName(cert.subjectaltname);
  // A control character has no place in a name: dropped, `ops-admin\x07` would stand for ops-admin (and a
  // URI SAN ending in NUL for the admin's SPIFFE id); kept, it could forge log lines. Such a certificate stands for no one.
  const uri = names.find((n) => n.type === 'URI' && n.value !== '');
  if (uri) return CONTROL_CHARACTERS.test(uri.value) ? null : `uri:${uri.value}`;
  const dns = names.find((n) => n.type === 'DNS' && n.value !== '');
  if (dns) return CONTROL_CHARACTERS.test(dns.value) ? null : `dns:${dns.value}`;
  const cn: unknown = cert.subject?.CN;
  const first = Array.isArray(cn) ? (cn[0] as unknown) : cn;
  if (typeof first === 'string' && first !== '') return CONTROL_CHARACTERS.test(first) ? null : `cn:${first}`;
  return null;
}

/**
 * The caller of a gRPC call: the identity of its verified client certificate
 * (grpc-js exposes only certificates that passed verification), else the peer
 * address, as grpc-js reports it.
 */
export function grpcCallerOf(call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'getPeer'>): string {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  return (cert ? certificateIdentity(cert) : null) ?? call.getPeer();
}

/**
 * Whether a certificate is within its validity period at `now` (ms). TLS checks the
 * dates once, at the handshake; a connection may outlive its certificate, and a
 * caller whose rights rest on the certificate (an Admin caller) is asked again.
 * Dates that do not parse count as out of force.
 */
export function certificateInForce(cert: Partial<Pick<PeerCertificate, 'valid_from' | 'valid_to'>>, now: number): boolean {
  const from = Date.parse(cert.valid_from ?? '');
  const to = Date.parse(cert.valid_to ?? '');
  return Number.isFinite(from) && Number.isFinite(to) && from <= now && now <= to;
}

/** The client certificate on a TLS socket that verified it; null on plain sockets, without one, or unverified. */
export function verifiedPeerCertificate(socket: object, withChain = false): PeerCertificate | null {
  const tls = socket as Partial<TLSSocket>;
  if (typeof tls.getPeerCertificate !== 'function' || tls.authorized !== true) return null;
  const cert = tls.getPeerCertificate(withChain);
  return cert && Object.keys(cert).length > 0 ? cert : null;
}

/**
 * The identity of a verified client certificate on an HTTPS request's socket, or
 * null (plain HTTP, no certificate, or one that failed verification). For the
 * HTTP endpoints that record decisions.
 */
export function tlsSocketIdentity(socket: object, inForceAt: number | null = null): string | null {
  const cert = verifiedPeerCertificate(socket);
  if (cert === null || (inForceAt !== null && !certificateInForce(cert, inForceAt))) return null;
  return certificateIdentity(cert);
}
