// Who may administer verdict: the admin identity every Admin call (and the console)
// needs, separate from the right to ask for decisions, and the record of each call.

import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { z } from 'zod';
import { certificateIdentity, certificateInForce, grpcCallerOf, tlsSocketIdentity } from '../authn/mtls.js';
import { newDecisionId } from '../decide/index.js';
import type { DecisionSink } from '../decisions/log-client.js';
import type { DecisionRecord } from '../decisions/record.js';
import { VerdictError, messageOf } from '../errors.js';
import { openAdminClientsFile, type AdminClientsFile } from './admin-clients.js';
import { openAdminTokenFile, sha256, type AdminTokenFile } from './admin-token.js';
import type { FileChange, WatchedFile } from './watched-file.js';
import { cutText } from '../cut-text.js';

/**
 * The `admin` section of the configuration.
 * - `tokenFile`: a file holding the admin token (at least 32 characters, e.g.
 *   `openssl rand -hex 32`); a call carrying `authorization: Bearer <token>` is admitted.
 *   The file is read again when it changes (admin-token.ts): a rotated token is the only one accepted.
 * - `clients`: client-certificate identities (as recorded: `uri:…`, `dns:…`, `cn:…`)
 *   admitted by their verified certificate alone.
 * - `clientsFile`: a file listing more such identities, one per line; read again
 *   when it changes (admin-clients.ts): an identity removed is refused from the next call.
 * - `loopback`: admit calls from a loopback address (127.0.0.0/8, ::1) with no
 *   other credential. Default: true only when none of the above is set and the
 *   server has no TLS; false otherwise.
 */
export const adminConfigSchema = z.strictObject({
  tokenFile: z.string().min(1).optional(),
  clients: z.array(z.string().min(1).max(1024)).max(1000).optional(),
  clientsFile: z.string().min(1).optional(),
  loopback: z.boolean().optional(),
});
export type AdminConfig = z.infer<typeof adminConfigSchema>;

/** Environment variable naming the admin token file. */
export const ADMIN_TOKEN_FILE_ENV = 'VERDICT_ADMIN_TOKEN_FILE';

/** The rule id an Admin call's row names: `admin`. */
export const ADMIN_RULE_ID = 'admin';
/** The resource type of an Admin call's row (together with its `details.admin`). */
export const ADMIN_RESOURCE_TYPE = 'verdict.admin';

/** What an Admin call presents, from whichever transport carries it. */
export interface AdminCaller {
  /** Who asked, as the decision log records callers: a certificate identity, else the peer address. */
  readonly caller: string;
  /** The peer's IP address (no port). */
  readonly address: string;
  /** The identity of the verified client certificate, when there is one. */
  readonly certificate: string | null;
  /** The bearer token of an `authorization: Bearer …` header or metadata entry, when there is one. */
  readonly token: string | null;
  /** The caller's request id (`x-request-id`), when it sent one. */
  readonly requestId: string | null;
  /**
   * The header (or metadata entry) that says the call came through a proxy
   * (`forwarded`, `via`, `x-forwarded-*`, `x-envoy-*`, `x-real-ip`, …): its address is
   * then the proxy's, and says nothing about who sent it. Absent when there is none.
   */
  readonly proxiedBy?: string;
}

/**
 * Headers a proxy adds; a call carrying one was not made from this host, whatever its
 * socket says. Not only X-Forwarded-For: Envoy by default (use_remote_address: false)
 * adds none, but x-forwarded-proto and x-envoy-* headers; other proxies add Via.
 */
const PROXY_HEADERS: ReadonlySet<string> = new Set(['forwarded', 'via', 'x-real-ip', 'x-client-ip', 'client-ip', 'true-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip']);
const PROXY_HEADER_PREFIXES = ['x-forwarded-', 'x-envoy-', 'x-original-'] as const;

/** The first of `names` (lower-case header or metadata names) a proxy adds, if any. */
export function proxyHeaderAmong(names: Iterable<string>): string | undefined {
  for (const name of names) {
    if (PROXY_HEADERS.has(name) || PROXY_HEADER_PREFIXES.some((prefix) => name.startsWith(prefix))) return name;
  }
  return undefined;
}

/** How an admitted call was admitted. */
export type AdminVia = 'token' | 'certificate' | 'loopback';

/** An admitted Admin caller. */
export interface AdminIdentity {
  /** `admin-token`, the certificate identity, or `loopback`. */
  readonly id: string;
  readonly via: AdminVia;
  /** For the admin token: which of its versions admitted the call (see AdminGate.whileTokenHolds). */
  readonly tokenGeneration?: number;
}

/** One Admin operation, as it is recorded: the method, what it is about and its parameters. */
export interface AdminOperation {
  /** e.g. `ListDecisions`; the row's action. */
  readonly method: string;
  /** What it is about (a decision id), or '' when it is about the whole server. */
  readonly target?: string;
  /** The call's parameters as recorded (filters, limit, page token). */
  readonly parameters?: Readonly<Record<string, unknown>>;
}

/** Where the admin gate records calls, and the policy version rows name. */
export interface AdminRecorder {
  readonly log: DecisionSink;
  policyVersion(): string;
}

/**
 * The admin gate: decides whether a caller may administer this server and
 * records every Admin call, admitted or refused, in the decision log (a row with
 * resource type `verdict.admin` and `details.admin`), before the call does
 * anything. A call that cannot be recorded is refused (DECISION_LOG_UNAVAILABLE):
 * nothing is read or reloaded unrecorded.
 *
 * One gate serves every transport: gRPC Admin today (adminCallerOfGrpc), the
 * console over HTTP (adminCallerOfHttp).
 *
 * @example
 * const gate = AdminGate.fromConfig(config.admin, { tls: config.tls !== null }, { log, policyVersion: () => store.current.version });
 * const who = await gate.admit(adminCallerOfGrpc(call), { method: 'ReloadPolicies' });
 */
export class AdminGate {
  private constructor(
    private readonly token: AdminTokenFile | null,
    private readonly clients: ReadonlySet<string>,
    private readonly clientsFile: AdminClientsFile | null,
    private readonly loopback: boolean,
    private readonly recorder: AdminRecorder,
  ) {}

  /**
   * @throws VerdictError CONFIG_INVALID when the token file cannot be read or holds too short a token, or the clients file cannot be read or lists something else than identities
   */
  static fromConfig(config: AdminConfig, server: { readonly tls: boolean }, recorder: AdminRecorder): AdminGate {
    const token = config.tokenFile === undefined ? null : openAdminTokenFile(config.tokenFile);
    let clientsFile: AdminClientsFile | null;
    try {
      clientsFile = config.clientsFile === undefined ? null : openAdminClientsFile(config.clientsFile);
    } catch (error) {
      token?.close();
      throw error;
    }
    const clients = new Set(config.clients ?? []);
    const loopback = config.loopback ?? (token === null && clients.size === 0 && clientsFile === null && !server.tls);
    return new AdminGate(token, clients, clientsFile, loopback, recorder);
  }

  /** What admits an Admin call here, for the start-up log line. */
  describe(): { token: boolean; clients: readonly string[]; clientsFile?: string; loopback: boolean } {
    return { token: this.token !== null, clients: [...this.clients], ...(this.clientsFile !== null ? { clientsFile: this.clientsFile.path } : {}), loopback: this.loopback };
  }

  /** Whether any caller at all can be admitted. */
  get enabled(): boolean {
    return this.token !== null || this.clients.size > 0 || this.clientsFile !== null || this.loopback;
  }

  /**
   * Calls `listener` when the admin token is replaced or its file stops being usable;
   * returns the way to stop. Never called on a server without a token file.
   */
  onTokenChange(listener: (change: FileChange) => void): () => void {
    return this.token?.onChange(listener) ?? (() => undefined);
  }

  /**
   * Calls `listener` when the admin certificates file changes or stops being usable;
   * returns the way to stop. Never called on a server without one.
   */
  onClientsChange(listener: (change: FileChange) => void): () => void {
    return this.clientsFile?.onChange(listener) ?? (() => undefined);
  }

  /** How many identities the admin certificates file lists now (null: no such file, or it cannot be used). */
  get clientsFileSize(): number | null {
    const state = this.clientsFile?.current();
    return state !== undefined && 'value' in state ? state.value.size : null;
  }

  /**
   * For a stream an admitted caller opened: calls `end` once what admitted it no
   * longer does — the admin token replaced or unusable, the certificate's identity
   * gone from the admin certificates file (or the file unusable) — at once when that
   * happened while the call was being recorded, so a rotation or a revocation keeps
   * nothing flowing. Nothing for a caller admitted by loopback or by `admin.clients`.
   * Returns the way to stop listening.
   */
  whileAdmissionHolds(identity: AdminIdentity, end: () => void): () => void {
    const watch = <T>(file: WatchedFile<T>, holds: () => boolean): (() => void) => {
      const stop = file.onChange(() => {
        if (holds()) return;
        stop();
        end();
      });
      if (!holds()) {
        stop();
        end();
      }
      return stop;
    };
    if (identity.via === 'token' && this.token !== null) {
      const token = this.token;
      return watch(token, () => token.generation === identity.tokenGeneration);
    }
    if (identity.via === 'certificate' && this.clientsFile !== null && !this.clients.has(identity.id)) {
      return watch(this.clientsFile, () => this.listedInClientsFile(identity.id));
    }
    return () => undefined;
  }

  private listedInClientsFile(identity: string): boolean {
    const state = this.clientsFile?.current();
    return state !== undefined && 'value' in state && state.value.has(identity);
  }

  /** The admin token file's mode when it was read at start, if group or others may read it; null otherwise or without one. */
  get tokenFileLooseMode(): string | null {
    return this.token?.looseModeAtStart ?? null;
  }

  /** Stops looking at the token and certificates files. */
  close(): void {
    this.token?.close();
    this.clientsFile?.close();
  }

  /**
   * Who `caller` is as an administrator, without recording anything.
   * @throws VerdictError UNAUTHENTICATED (no admin credential, or a token not accepted) or PERMISSION_DENIED (a certificate not on the list)
   */
  identify(caller: AdminCaller): AdminIdentity {
    if (caller.token !== null) {
      // A token presented is checked even when a certificate would do: a wrong token is never ignored.
      if (this.token === null) throw new VerdictError('UNAUTHENTICATED', 'admin: this server accepts no admin token (admin.tokenFile is not set)');
      const generation = this.token.generation;
      const state = this.token.current();
      // Why the file cannot be used (its path, an errno) is for the server's log, not for whoever presents a token.
      if ('problem' in state) throw new VerdictError('UNAUTHENTICATED', 'admin: no admin token is accepted now: the admin token file cannot be used (the server log says why)');
      if (timingSafeEqual(sha256(caller.token), state.value)) return { id: 'admin-token', via: 'token', tokenGeneration: generation };
      throw new VerdictError('UNAUTHENTICATED', 'admin: the admin token was not accepted');
    }
    if (caller.certificate !== null && (this.clients.has(caller.certificate) || this.listedInClientsFile(caller.certificate))) return { id: caller.certificate, via: 'certificate' };
    if (this.loopback && isLoopback(caller.address)) {
      // A proxy on this host (NGINX, Envoy) connects from loopback on behalf of anyone.
      if (caller.proxiedBy !== undefined) {
        throw new VerdictError('UNAUTHENTICATED', `admin: this call came through a proxy (it carries ${caller.proxiedBy}), so its loopback address does not admit it; present the admin token or a client certificate listed in admin.clients`);
      }
      return { id: 'loopback', via: 'loopback' };
    }
    if (!this.enabled) {
      throw new VerdictError('PERMISSION_DENIED', 'admin: administration is not enabled on this server; configure admin.tokenFile, admin.clients or admin.clientsFile (see the README, "Administration")');
    }
    if (caller.certificate !== null) {
      throw new VerdictError('PERMISSION_DENIED', `admin: the client certificate ${caller.certificate} may ask for decisions but not administer; list it in admin.clients or admin.clientsFile, or present the admin token`);
    }
    throw new VerdictError('UNAUTHENTICATED', 'admin: an admin identity is required (the admin token as "authorization: Bearer <token>", or a client certificate listed in admin.clients or admin.clientsFile)');
  }

  /**
   * Admits `caller` to `operation` or refuses it, and records which, before the
   * operation may start.
   * @throws VerdictError UNAUTHENTICATED or PERMISSION_DENIED (recorded), DECISION_LOG_UNAVAILABLE (could not record; refused)
   */
  async admit(caller: AdminCaller, operation: AdminOperation): Promise<AdminIdentity> {
    let identity: AdminIdentity | null = null;
    let refusal: VerdictError | null = null;
    // The token as the file holds it now: a rotation counts from the next call, not the next look.
    if (caller.token !== null) await this.token?.check();
    // Likewise the certificates file: a revocation counts from the next call.
    else if (caller.certificate !== null && !this.clients.has(caller.certificate)) await this.clientsFile?.check();
    try {
      identity = this.identify(caller);
    } catch (error) {
      refusal = error instanceof VerdictError ? error : new VerdictError('INTERNAL', messageOf(error));
    }
    await this.recorder.log.append(this.record(caller, operation, identity, refusal));
    if (refusal) throw refusal;
    return identity!;
  }

  private record(caller: AdminCaller, operation: AdminOperation, identity: AdminIdentity | null, refusal: VerdictError | null): DecisionRecord {
    const now = Date.now();
    const parameters = operation.parameters === undefined ? undefined : clippedParameters(operation.parameters);
    return {
      decisionId: newDecisionId(now),
      time: now,
      caller: clipped(caller.caller),
      requestId: caller.requestId === null ? null : clipped(caller.requestId),
      // The admin identity admitted, or the one presented when refused.
      principalId: identity?.id ?? caller.certificate ?? caller.caller,
      action: operation.method,
      resourceType: ADMIN_RESOURCE_TYPE,
      resourceId: clipped(operation.target ?? ''),
      effect: identity ? 'ALLOW' : 'DENY',
      reason: identity ? 'ALLOWED_BY_RULE' : 'DENIED_UNAUTHENTICATED',
      ruleIds: identity ? [ADMIN_RULE_ID] : [],
      errors: refusal ? [{ ruleId: ADMIN_RULE_ID, message: refusal.message }] : [],
      policyVersion: this.recorder.policyVersion(),
      request: { principal: { roles: [], attributes: {} }, resource: { attributes: {} }, context: { attributes: {} } },
      latencyUs: 0,
      details: {
        admin: {
          method: operation.method,
          ...(identity ? { via: identity.via } : { refused: refusal?.code ?? 'UNAUTHENTICATED' }),
          ...(parameters && Object.keys(parameters).length > 0 ? { parameters } : {}),
        },
      },
    };
  }
}

/**
 * The longest text an Admin row keeps of what a caller sent (a decision id, a
 * request id, a filter): a refused call is recorded before it is validated, so
 * without a cap one unauthenticated call of 1 MB wrote 1 MB to the log.
 */
const MAX_RECORDED_TEXT = 256;
/** The most items an Admin row keeps of a list parameter. */
const MAX_RECORDED_ITEMS = 100;

function clipped(text: string): string {
  return cutText(text, MAX_RECORDED_TEXT);
}

function clippedValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return clipped(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= 4) return '…';
  if (Array.isArray(value)) return value.slice(0, MAX_RECORDED_ITEMS).map((item) => clippedValue(item, depth + 1));
  const out: Record<string, unknown> = {};
  let kept = 0;
  for (const [key, item] of Object.entries(value)) {
    if (kept++ >= MAX_RECORDED_ITEMS) break;
    Object.defineProperty(out, clipped(key), { value: clippedValue(item, depth + 1), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function clippedParameters(parameters: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return clippedValue(parameters, 0) as Record<string, unknown>;
}

/** What a gRPC call presents as an Admin caller. */
export function adminCallerOfGrpc(call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'getPeer' | 'metadata'>): AdminCaller {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  // A connection can outlive its certificate: past its dates it stands for nobody here.
  const certificate = cert && certificateInForce(cert, Date.now()) ? certificateIdentity(cert) : null;
  const proxiedBy = proxyHeaderAmong(Object.keys(call.metadata.getMap()));
  return {
    caller: grpcCallerOf(call),
    address: hostOf(call.getPeer()),
    certificate,
    token: bearer(metadataText(call, 'authorization')),
    requestId: metadataText(call, 'x-request-id'),
    ...(proxiedBy !== undefined ? { proxiedBy } : {}),
  };
}

/** What an HTTP request (the console) presents as an Admin caller. */
export function adminCallerOfHttp(req: IncomingMessage): AdminCaller {
  const address = req.socket.remoteAddress ?? '';
  const certificate = tlsSocketIdentity(req.socket, Date.now());
  const requestId = req.headers['x-request-id'];
  const proxiedBy = proxyHeaderAmong(Object.keys(req.headers));
  return {
    caller: certificate ?? `${address}:${req.socket.remotePort ?? 0}`,
    address,
    certificate,
    token: bearer(req.headers.authorization),
    requestId: typeof requestId === 'string' ? requestId : null,
    ...(proxiedBy !== undefined ? { proxiedBy } : {}),
  };
}

function metadataText(call: Pick<ServerUnaryCall<unknown, unknown>, 'metadata'>, name: string): string | null {
  const value = call.metadata.get(name)[0];
  if (value === undefined) return null;
  return typeof value === 'string' ? value : value.toString('utf8');
}

/** The token of `Bearer <token>`; an authorization of another scheme is presented as an empty token (refused). */
function bearer(header: string | undefined | null): string | null {
  if (header === undefined || header === null) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1]! : '';
}

/**
 * The address part of a peer: `ip:port`, `[v6]:port`, or grpc-js's unbracketed
 * `v6:port` (`::1:5000`, which is also a valid IPv6 address on its own: grpc-js
 * always appends the port of a TCP peer, so the last part is taken as the port).
 */
function hostOf(peer: string): string {
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(peer);
  if (bracketed) return bracketed[1]!;
  const withPort = /^(.+):\d+$/.exec(peer);
  return withPort ? withPort[1]! : peer;
}

function isLoopback(address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  return address === '::1';
}
