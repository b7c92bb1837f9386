// The operator HTTP port (liveness, readiness, metrics, forward-auth) and its
// graceful close.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { AUTHZEN_PATHS } from '../gateway/authzen-http.js';
import { FORWARD_AUTH_PATH } from '../gateway/forward-auth.js';
import { LAPSED_CERTIFICATE_MESSAGE, TrustAnchors, certificateLapsed, connectionPeer, type LapsedConnection } from '../authn/certificate-lapse.js';
import { endConnectionsAtCertificateExpiry } from './certificate-expiry.js';
import { capConnectionsPerClient, perClientCap } from './connection-caps.js';
import { CONSOLE_PATH } from './console.js';
import { InFlight } from './in-flight.js';

export interface Readiness {
  readonly ready: boolean;
  readonly detail: Record<string, unknown>;
}

export interface HttpHandlers {
  /** /readyz; absent where a separate ops listener serves it. */
  readiness?(): Readiness | Promise<Readiness>;
  /** /metrics; absent where a separate ops listener serves it. */
  metrics?(): Promise<{ contentType: string; body: string }>;
  /** The gateway forward-auth endpoint (FORWARD_AUTH_PATH, any method), when the server offers it. */
  forwardAuth?(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** The AuthZEN Authorization API (AUTHZEN_PATHS), when the server offers it. */
  authzen?(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** The web console: GET /console and /console/api/... (console.ts), when the server offers it. */
  console?(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export interface OperatorHttpOptions {
  /** With it, serves HTTPS (and, per its options, asks for and verifies client certificates). */
  readonly tls?: HttpsOptions;
  /** How long close() lets requests in flight finish before cutting their connections, in ms. Default 10 s. */
  readonly shutdownGraceMs?: number;
  /** How long a request may take to arrive, headers and body, in ms; then 408 and the connection ends. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** The most connections held at once; more are closed as they arrive. Default 4096. */
  readonly maxConnections?: number;
  /** The most of those one client address may hold; null or absent: a quarter of maxConnections. */
  readonly maxConnectionsPerClient?: number | null;
  /** Told of each connection ended, or request refused, because the client certificate it was opened with has expired (the server logs it). */
  readonly onCertificateLapsed?: (connection: LapsedConnection) => void;
}

const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_CONNECTIONS = 4096;

/**
 * Most requests one connection may have in flight. HTTP/1.1 lets a client send
 * requests before reading any answer (pipelining), and Node's server hands every
 * request already received to the handler at once: twenty AuthZEN calls of a
 * thousand evaluations each, sent in one write and never read, were all decided and
 * their answers (340 KB each) held; fifty such connections took the process to
 * 2.6 GB. No gateway or HTTP client pipelines this deep; a connection that does is closed.
 */
export const MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION = 8;

/**
 * The operator's port: liveness, readiness with the reason when not ready,
 * Prometheus metrics, and the gateways' forward-auth endpoint (whose decisions
 * take the same path as gRPC Check). Node's own http server.
 */
export class OperatorHttpServer {
  private readonly server: Server | HttpsServer;
  private readonly graceMs: number;
  /** Responses not yet finished, so close() can tell them to end their connection. */
  private readonly inFlight = new InFlight<ServerResponse>();
  /** Requests in flight per connection (MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION). */
  private readonly perConnection = new WeakMap<object, number>();
  private closing: Promise<void> | null = null;

  constructor(
    private readonly handlers: HttpHandlers,
    options: OperatorHttpOptions = {},
  ) {
    this.graceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
    const handle = (req: IncomingMessage, res: ServerResponse): void => {
      const socket = req.socket;
      // A connection whose client certificate has expired answers nothing but a refusal.
      const lapsedAt = certificateLapsed(socket);
      if (lapsedAt !== null) {
        const expiredAt = new Date(lapsedAt).toISOString();
        options.onCertificateLapsed?.({ peer: connectionPeer(socket), expiredAt });
        // As a new connection's handshake would refuse it; the client reconnects with its renewed certificate.
        res.shouldKeepAlive = false;
        send(res, 401, 'application/json', JSON.stringify({ error: 'unauthenticated', detail: `${LAPSED_CERTIFICATE_MESSAGE} (it expired at ${expiredAt})` }));
        return;
      }
      const pending = (this.perConnection.get(socket) ?? 0) + 1;
      if (pending > MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION) {
        // Neither decided nor answered: the connection goes, with what it had asked.
        socket.destroy();
        return;
      }
      this.perConnection.set(socket, pending);
      res.once('close', () => this.perConnection.set(socket, (this.perConnection.get(socket) ?? 1) - 1));
      // While closing, each answer also ends its connection, so nothing waits on keep-alive.
      if (this.closing) res.shouldKeepAlive = false;
      const entry = this.inFlight.add(res);
      res.once('close', () => this.inFlight.take(entry));
      this.route(req, res).catch((error: unknown) => {
        if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ error: String((error as Error).message ?? error) }));
      });
    };
    // Node's own defaults let a request arrive for 5 minutes, checked every 30 s.
    const requestTimeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const timing = { requestTimeout, headersTimeout: requestTimeout, connectionsCheckingInterval: Math.min(1_000, requestTimeout) };
    if (options.tls) {
      const https = createHttpsServer({ ...options.tls, ...timing }, handle);
      const clientCa = options.tls.ca;
      endConnectionsAtCertificateExpiry(https, options.onCertificateLapsed ?? (() => undefined), TrustAnchors.fromPem(Buffer.isBuffer(clientCa) ? clientCa : null));
      this.server = https;
    } else {
      this.server = createServer(timing, handle);
    }
    this.server.keepAliveTimeout = 5_000;
    // Node keeps the first 2,000 header lines of a request and drops the rest unseen: a copy
    // of a header sent after 2,000 others (about 10 KB of one-letter ones) was never read, so a header
    // a route reads passed as sent once while the upstream read the other copy. Every line
    // is kept instead; the work stays bounded by the header size limit (16 KiB, else 431).
    this.server.maxHeadersCount = 0;
    // Bounded, so connections held open here cannot take every file descriptor the gRPC port and the log need.
    this.server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    capConnectionsPerClient(this.server, perClientCap(this.server.maxConnections, options.maxConnectionsPerClient));
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    // Gateways call forward-auth with the original request's method (NGINX) or GET (Traefik, Caddy).
    if (path === FORWARD_AUTH_PATH && this.handlers.forwardAuth) {
      await this.handlers.forwardAuth(req, res);
      return;
    }
    if (this.handlers.authzen && AUTHZEN_PATHS.includes(path!)) {
      await this.handlers.authzen(req, res);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'application/json', JSON.stringify({ error: 'only GET is served here' }), { allow: 'GET, HEAD' });
      return;
    }
    if (this.handlers.console && (path === CONSOLE_PATH || path!.startsWith(`${CONSOLE_PATH}/`))) {
      await this.handlers.console(req, res);
      return;
    }
    if (path === '/healthz') {
      send(res, 200, 'application/json', JSON.stringify({ status: 'ok' }));
      return;
    }
    if (path === '/readyz' && this.handlers.readiness) {
      const { ready, detail } = await this.handlers.readiness();
      send(res, ready ? 200 : 503, 'application/json', JSON.stringify({ status: ready ? 'ready' : 'not ready', ...detail }));
      return;
    }
    if (path === '/metrics' && this.handlers.metrics) {
      const { contentType, body } = await this.handlers.metrics();
      send(res, 200, contentType, body);
      return;
    }
    const paths = ['/healthz', ...(this.handlers.readiness ? ['/readyz'] : []), ...(this.handlers.metrics ? ['/metrics'] : []), ...(this.handlers.forwardAuth ? [FORWARD_AUTH_PATH] : []), ...(this.handlers.authzen ? AUTHZEN_PATHS : []), ...(this.handlers.console ? [CONSOLE_PATH] : [])];
    // The path asked for is not echoed: it is the caller's text.
    send(res, 404, 'application/json', JSON.stringify({ error: `no such path here; this port serves ${paths.join(', ')}` }));
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /**
   * Stops accepting connections, closes idle ones, lets requests in flight (a
   * forward-auth decision being recorded) finish and answer, each then ending its
   * connection, and after the grace cuts off whatever is left. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const res of this.inFlight.values()) if (!res.headersSent) res.shouldKeepAlive = false;
      const timer = setTimeout(() => this.server.closeAllConnections(), this.graceMs);
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.server.closeIdleConnections();
    });
    return this.closing;
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
