// The server configuration: one schema, the defaults, and the file, environment
// and flag layers merged over them in that order.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { detectorsSchema } from '../analysis/detector-config.js';
import { VerdictError, messageOf } from '../errors.js';
import { FORWARD_AUTH_STYLES } from '../gateway/forward-auth.js';
import { trustedPrincipalSchema } from '../gateway/trusted-headers.js';
import { authnSchema, resolveTls, tlsFromEnvironment, tlsLayerSchema } from '../authn/config.js';
import { AUDIT_DEFAULTS, auditConfigShape, auditFromEnvironment, type AuditConfig } from '../decisions/audit-config.js';
import { ADMIN_TOKEN_FILE_ENV, adminConfigSchema } from './admin-auth.js';
import { DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT, DEFAULT_REQUEST_LIMITS } from '../decide/index.js';
import { DEFAULT_CONDITION_BUDGET } from '../policy/condition.js';
import { DEFAULT_MAX_EXT_AUTHZ_ENTRIES } from './grpc/server.js';
import { alertResponseShape } from './alert-response-config.js';
import { REPLICA_ID_PATTERN, REPLICA_ID_RULE, replicaIdFromHostName } from '../decisions/replica.js';

const cap = (most: number) => z.number().int().min(1).max(most).optional();

/** Caps on one request's size (decide/bounds.ts); a request over one is refused and recorded. See the README, "Request limits". */
const requestLimitsSchema = z.strictObject({
  maxStringLength: cap(16 * 1024 * 1024),
  maxListLength: cap(10_000_000),
  maxValues: cap(100_000_000),
  maxTotalLength: cap(1024 * 1024 * 1024),
  /** How many steps one condition may take, in all: list or map elements gone through, and matches() one per 4 characters; past it the condition errs (fails closed). */
  maxConditionSteps: cap(1_000_000_000),
  /**
   * Most headers in one Envoy ext_authz CheckRequest (its `headers` map or `header_map`
   * list), and most entries of any other map or repeated message of it; more refuse it unread.
   */
  maxExtAuthzEntries: cap(10_000_000),
});

/**
 * The `alerts:` block: the anomaly detectors and where their alerts go. One
 * object; keys for the sinks (webhooks, suspension) join it here.
 */
const alertsSchema = z.strictObject({
  /** Run the detectors on the live decisions (default true). */
  enabled: z.boolean().optional(),
  /** Thresholds (analysis/detector-config.ts); what is left out takes its default. */
  detectors: detectorsSchema.optional(),
  /** What is done with alerts: webhooks, suspension. See the README, "Alerts: webhooks and suspension". */
  ...alertResponseShape,
});

/** Where rate-limit budgets live (src/limits). See the README, "Rate limits". */
const limitsConfigSchema = z.strictObject({
  /** memory: in this process. redis: in Redis, shared by every replica. */
  backend: z.enum(['memory', 'redis'], { error: 'limits.backend is memory or redis' }).optional(),
  redis: z
    .strictObject({
      /** redis://[user:password@]host:port[/db], or rediss:// for TLS. */
      url: z.string().regex(/^rediss?:\/\/\S+$/, { error: 'expected a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379' }),
      /** The URL names one node of a Redis Cluster. */
      cluster: z.boolean().optional(),
      keyPrefix: z.string().min(1).max(100).optional(),
    })
    .optional(),
  /** How long a check waits for Redis before its limit's onBackendFailure applies. */
  timeoutMs: z.number().int().min(1).max(10_000).optional(),
  /** After a Redis failure, how long checks use the fallback at once before Redis is tried again. */
  retryMs: z.number().int().min(0).max(600_000).optional(),
  /** Replicas sharing the budgets: onBackendFailure local counts each limit at its rate divided by this. */
  replicas: z.number().int().min(1).max(10_000).optional(),
  /** How long after a decision Settle may correct its cost (its reservation is held that long, bounded in number). */
  settleWithinMs: z.number().int().min(1000).max(7 * 86_400_000).optional(),
  /** A pool's load report (Admin ReportLoad) older than this counts as no load: its limits go back to their whole rate. */
  loadStaleAfterMs: z.number().int().min(1000).max(86_400_000).optional(),
});

/**
 * The AuthZEN API's callers: `peps` lists, as the decision log records callers
 * (`api-key:orders-service`, `jwt:<sub>`, a client certificate's identity), the
 * policy enforcement points that may ask about any subject. Any other
 * authenticated caller may ask only about itself, so an end user's key can neither
 * read another principal's permissions nor spend its rate-limit budget.
 */
const authzenConfigSchema = z.strictObject({
  peps: z
    .array(
      z.string().max(1024).regex(/^(?:api-key|jwt|trusted-header|uri|dns|cn):./, {
        error: 'expected a caller as the decision log records it: api-key:<key owner>, jwt:<sub>, trusted-header:<id>, or a certificate identity (uri:…, dns:…, cn:…)',
      }),
    )
    .max(10_000),
});

/** The gRPC port's bounds on streams, unfinished request bodies (server/grpc/stream-guard.ts) and unread answers (unread-answers.ts). */
const grpcStreamsSchema = z.strictObject({
  maxPerConnection: z.number().int().min(1).max(10_000).optional(),
  bodyTimeoutMs: z.number().int().min(100).max(600_000).optional(),
  maxBufferedBytes: z.number().int().min(64 * 1024).max(16 * 1024 * 1024 * 1024).optional(),
  maxWaitingBytes: z.number().int().min(64 * 1024).max(16 * 1024 * 1024 * 1024).optional(),
  maxUnsentBytes: z.number().int().min(1024 * 1024).max(64 * 1024 * 1024 * 1024).optional(),
  maxUnsentBytesPerConnection: z.number().int().min(1024 * 1024).max(16 * 1024 * 1024 * 1024).optional(),
  sendTimeoutMs: z.number().int().min(100).max(3_600_000).optional(),
});

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { error: 'expected HOST:PORT, e.g. 127.0.0.1:50051' });

/** One layer of configuration (the file, the environment or the flags): every key optional, unknown keys refused. */
const layerSchema = z.strictObject({
  policies: z.string().min(1).optional(),
  db: z.string().min(1).optional(),
  /** host:port for gRPC; port 0 picks a free one. */
  grpc: hostPort.optional(),
  /** host:port for /forward-auth, and /healthz, /readyz and /metrics unless `ops` is set. */
  http: hostPort.optional(),
  /**
   * host:port of a separate operations listener for /healthz, /readyz and /metrics
   * (plain HTTP, e.g. on loopback); the `http` port then serves only /forward-auth
   * (and /healthz). null: the `http` port serves them all.
   */
  ops: hostPort.nullable().optional(),
  /** Who may call verdict.v1.Admin (admin-auth.ts); see the README, "Administration". */
  admin: adminConfigSchema.optional(),
  /**
   * This replica's name (decisions/replica.ts): recorded in the decision log it
   * creates, and shown in its status, metrics, verify output and exports. A log
   * naming another replica is refused at start. Default: the host name.
   */
  replicaId: z.string().regex(REPLICA_ID_PATTERN, { error: `expected ${REPLICA_ID_RULE}` }).optional(),
  /** durable: an answer leaves only once its row is committed. async: rows are committed a moment later. */
  decisionLog: z.enum(['durable', 'async']).optional(),
  maxMessageBytes: z.number().int().min(1024).max(64 * 1024 * 1024).optional(),
  /** Most bytes the batches being decided at once may hold (what they record, and 8 KiB an item), all callers together (decide/batch-budget.ts BatchesInFlight). */
  maxBatchBytesInFlight: z.number().int().min(64 * 1024).max(64 * 1024 * 1024 * 1024).optional(),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).optional(),
  /** Shadow mode: a candidate policy directory decided beside the live one on every check (never answering); null: off. */
  shadowPolicies: z.string().min(1).nullable().optional(),
  /** Watch the policy directory and reload on change. */
  watch: z.boolean().optional(),
  /**
   * While watching, how often (ms) the policy files' content hashes are compared with
   * what was last loaded, whatever the file-system events said; 0: events only.
   */
  watchPollMs: z.number().int().refine((n) => n === 0 || (n >= 100 && n <= 3_600_000), { error: 'expected 0 (off) or 100..3600000 milliseconds' }).optional(),
  /** How long a shutdown waits for in-flight checks (gRPC and forward-auth) before cutting them off. */
  shutdownGraceMs: z.number().int().min(0).max(600_000).optional(),
  /**
   * How long an HTTP request (forward-auth, AuthZEN, the console) may take to arrive,
   * headers and body, before its connection is ended with 408: a caller that sends a
   * body a byte at a time holds it no longer (grpcStreams.bodyTimeoutMs for gRPC).
   */
  httpRequestTimeoutMs: z.number().int().min(100).max(600_000).optional(),
  /**
   * The most connections each HTTP listener holds at once; more are closed as they
   * arrive. Without it, idle connections opened faster than the request timeout
   * closed them used up the process's file descriptors, and new gRPC connections
   * from gateways failed.
   */
  httpMaxConnections: z.number().int().min(1).max(1_000_000).optional(),
  /**
   * The most connections the gRPC port holds at once; more are closed as they arrive.
   * Without it, idle TCP connections to the port (gRPC keeps connections open as long
   * as their client does) used up the file descriptors: the HTTP port stopped
   * answering and the suspension store could not be opened.
   */
  grpcMaxConnections: z.number().int().min(1).max(1_000_000).optional(),
  /**
   * The most connections one client address may hold on each listener (HTTP and gRPC);
   * null: a quarter of that listener's cap. Without it, one address holding idle or
   * half-sent requests took every slot of the HTTP port's cap, and gateways connecting
   * meanwhile were refused.
   */
  maxConnectionsPerClient: z.number().int().min(1).max(1_000_000).nullable().optional(),
  /**
   * Processes that answer checks. 1: this process (its decision log writer in
   * a thread). N > 1: N worker processes sharing the ports, and this process
   * as the one writer of the decision log (see server/cluster.ts).
   */
  workers: z.number().int().min(1).max(64).optional(),
  /** TLS (and client certificates) for verdict's own ports; null serves plaintext. See docs/authn.md. */
  tls: tlsLayerSchema.nullable().optional(),
  /** How gateway requests are authenticated (JWT, API keys). From the config file only. See docs/authn.md. */
  authn: authnSchema.optional(),
  /**
   * Gateway requests only: take the principal from headers an identity-aware proxy
   * already set, instead of authn's credentials. From the config file only. See docs/gateways.md.
   */
  trustedPrincipal: trustedPrincipalSchema.nullable().optional(),
  /**
   * The gateway in front of /forward-auth (nginx | traefik | caddy), and so the one
   * header pair its method and URI are read from (nginx: X-Original-*; traefik,
   * caddy: X-Forwarded-*). A request carrying the other pair is refused. See docs/gateways.md.
   */
  forwardAuth: z.strictObject({ style: z.enum(FORWARD_AUTH_STYLES, { error: `expected one of ${FORWARD_AUTH_STYLES.join(', ')}` }) }).optional(),
  /** The audit trail's keys: see decisions/audit-config.ts. */
  ...auditConfigShape,
  /** Caps on the size of one request. From the config file only. */
  requestLimits: requestLimitsSchema.optional(),
  /** Anomaly alerts (README, Alerts): on by default, with the detectors' documented thresholds. From the config file only. */
  alerts: alertsSchema.optional(),
  /** Where rate-limit budgets live (memory or Redis) and what a failing Redis costs. From the config file only. */
  limits: limitsConfigSchema.optional(),
  /** Who may ask the AuthZEN API about subjects other than itself. From the config file only. */
  authzen: authzenConfigSchema.optional(),
  /** Streams per gRPC connection, and how long and how large unfinished request bodies may be. From the config file only. */
  grpcStreams: grpcStreamsSchema.optional(),
});
export type PartialConfig = z.infer<typeof layerSchema>;

/** The layers merged over the defaults: every key present, and `tls` checked as a whole. */
const resolvedSchema = layerSchema.required().extend({ tls: tlsLayerSchema.nullable().transform(resolveTls), requestLimits: requestLimitsSchema.required(), alerts: alertsSchema, limits: limitsConfigSchema.required({ backend: true, timeoutMs: true, retryMs: true, replicas: true, settleWithinMs: true, loadStaleAfterMs: true }), grpcStreams: grpcStreamsSchema.required() });

/** Where verdict listens, what it serves and where it records. */
export type ServerConfig = Readonly<z.output<typeof resolvedSchema>>;

/** Every key's default; checked by the schema with the layers merged over it. */
export const DEFAULT_CONFIG = {
  policies: 'policies',
  db: 'data/decisions.db',
  grpc: '127.0.0.1:50051',
  http: '127.0.0.1:9464',
  ops: null,
  admin: {},
  replicaId: replicaIdFromHostName(hostname()),
  decisionLog: 'durable',
  maxMessageBytes: 1024 * 1024,
  maxBatchBytesInFlight: DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT,
  logLevel: 'info',
  shadowPolicies: null,
  watch: true,
  watchPollMs: 10_000,
  shutdownGraceMs: 10_000,
  httpRequestTimeoutMs: 10_000,
  httpMaxConnections: 4096,
  grpcMaxConnections: 4096,
  maxConnectionsPerClient: null,
  workers: 1,
  tls: null,
  authn: {},
  trustedPrincipal: null,
  forwardAuth: { style: 'nginx' },
  ...AUDIT_DEFAULTS,
  requestLimits: { ...DEFAULT_REQUEST_LIMITS, maxConditionSteps: DEFAULT_CONDITION_BUDGET, maxExtAuthzEntries: DEFAULT_MAX_EXT_AUTHZ_ENTRIES },
  alerts: { enabled: true },
  limits: { backend: 'memory', timeoutMs: 50, retryMs: 1000, replicas: 1, settleWithinMs: 3_600_000, loadStaleAfterMs: 60_000 },
  authzen: { peps: [] },
  grpcStreams: {
    maxPerConnection: 100,
    bodyTimeoutMs: 10_000,
    maxBufferedBytes: 64 * 1024 * 1024,
    maxWaitingBytes: 64 * 1024 * 1024,
    maxUnsentBytes: 256 * 1024 * 1024,
    maxUnsentBytesPerConnection: 64 * 1024 * 1024,
    sendTimeoutMs: 30_000,
  },
} satisfies Record<keyof ServerConfig, unknown>;

/** Environment variables for containers, one per key. */
export const ENVIRONMENT_KEYS: Record<Exclude<keyof ServerConfig, 'tls' | 'authn' | 'trustedPrincipal' | 'admin' | 'forwardAuth' | 'requestLimits' | 'alerts' | 'limits' | 'authzen' | 'grpcStreams' | keyof AuditConfig>, string> = {
  policies: 'VERDICT_POLICIES',
  db: 'VERDICT_DB',
  grpc: 'VERDICT_GRPC',
  http: 'VERDICT_HTTP',
  ops: 'VERDICT_OPS',
  replicaId: 'VERDICT_REPLICA_ID',
  decisionLog: 'VERDICT_DECISION_LOG',
  maxMessageBytes: 'VERDICT_MAX_MESSAGE_BYTES',
  maxBatchBytesInFlight: 'VERDICT_MAX_BATCH_BYTES_IN_FLIGHT',
  logLevel: 'VERDICT_LOG_LEVEL',
  shadowPolicies: 'VERDICT_SHADOW_POLICIES',
  watch: 'VERDICT_WATCH',
  watchPollMs: 'VERDICT_WATCH_POLL_MS',
  shutdownGraceMs: 'VERDICT_SHUTDOWN_GRACE_MS',
  httpRequestTimeoutMs: 'VERDICT_HTTP_REQUEST_TIMEOUT_MS',
  httpMaxConnections: 'VERDICT_HTTP_MAX_CONNECTIONS',
  grpcMaxConnections: 'VERDICT_GRPC_MAX_CONNECTIONS',
  maxConnectionsPerClient: 'VERDICT_MAX_CONNECTIONS_PER_CLIENT',
  workers: 'VERDICT_WORKERS',
};

/** The environment variable for forwardAuth.style. */
export const FORWARD_AUTH_STYLE_ENVIRONMENT_KEY = 'VERDICT_FORWARD_AUTH_STYLE';

const NUMERIC_KEYS = new Set(['maxMessageBytes', 'maxBatchBytesInFlight', 'shutdownGraceMs', 'httpRequestTimeoutMs', 'httpMaxConnections', 'grpcMaxConnections', 'maxConnectionsPerClient', 'workers', 'watchPollMs']);

function describeIssues(error: z.ZodError, origin: string): string {
  return error.issues
    .map((issue) => {
      const key = issue.path.map(String).join('.');
      if (issue.code === 'unrecognized_keys' && issue.path.length === 0) return `${origin}: unknown key ${issue.keys.map((k) => `"${k}"`).join(', ')} (known: ${Object.keys(DEFAULT_CONFIG).join(', ')})`;
      return `${origin}: ${key}: ${issue.message}`;
    })
    .join('; ');
}

export function readConfigFile(path: string): PartialConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`);
  }
  let data: unknown;
  try {
    data = parseYaml(text, { prettyErrors: false }) ?? {};
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `config file ${path} is not valid YAML: ${messageOf(error).split('\n')[0]}`);
  }
  const result = layerSchema.safeParse(data);
  if (!result.success) throw new VerdictError('CONFIG_INVALID', describeIssues(result.error, path));
  return result.data;
}

export function readEnvironment(env: NodeJS.ProcessEnv): PartialConfig {
  const raw: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(ENVIRONMENT_KEYS)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    if (NUMERIC_KEYS.has(key)) raw[key] = Number(value);
    else if (key === 'watch') raw[key] = value === 'true' || value === '1' ? true : value === 'false' || value === '0' ? false : value;
    else raw[key] = value;
  }
  const tls = tlsFromEnvironment(env);
  if (tls) raw.tls = tls;
  const adminTokenFile = env[ADMIN_TOKEN_FILE_ENV];
  if (adminTokenFile !== undefined && adminTokenFile !== '') raw.admin = { tokenFile: adminTokenFile };
  const style = env[FORWARD_AUTH_STYLE_ENVIRONMENT_KEY];
  if (style !== undefined && style !== '') raw.forwardAuth = { style };
  Object.assign(raw, auditFromEnvironment(env));
  const result = layerSchema.safeParse(raw);
  if (!result.success) throw new VerdictError('CONFIG_INVALID', describeIssues(result.error, 'environment'));
  return result.data;
}

/** Flags win over environment variables, which win over the config file, which wins over defaults. */
export function resolveConfig(layers: readonly PartialConfig[]): ServerConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      // Nested sections (tls) merge key by key, so e.g. the key path can come from the environment.
      const below = merged[key];
      merged[key] = isPlainObject(value) && isPlainObject(below) ? { ...below, ...value } : value;
    }
  }
  const result = resolvedSchema.safeParse(merged);
  if (!result.success) throw new VerdictError('CONFIG_INVALID', describeIssues(result.error, 'configuration'));
  if (result.data.limits.backend === 'redis' && result.data.limits.redis === undefined) {
    throw new VerdictError('CONFIG_INVALID', 'configuration: limits.backend is redis but limits.redis.url is not set; add limits: {redis: {url: redis://host:6379}}');
  }
  if (result.data.trustedPrincipal && (result.data.authn.jwt || result.data.authn.apiKeys)) {
    throw new VerdictError('CONFIG_INVALID', 'configuration: trustedPrincipal and authn (jwt, apiKeys) exclude each other; gateways use one way to know the caller');
  }
  const jwtPep = ambiguousJwtPep(result.data);
  if (jwtPep !== null) {
    throw new VerdictError(
      'CONFIG_INVALID',
      `configuration: authzen.peps lists ${jwtPep}, but authn.jwt accepts several issuers, and a token from any of them whose principal id is ${JSON.stringify(jwtPep.slice(4))} is that caller; accept one issuer here, or list the PEP by API key or client certificate`,
    );
  }
  return result.data;
}

/**
 * A `jwt:` PEP that tokens of more than one issuer could claim: callers are recorded
 * (and listed) as `jwt:<principal id>`, so with several issuers, one issuer's user whose
 * id is the PEP's would ask AuthZEN about anyone.
 */
function ambiguousJwtPep(config: ServerConfig): string | null {
  const issuer = config.authn.jwt?.issuer;
  if (issuer === undefined || typeof issuer === 'string' || new Set(issuer).size < 2) return null;
  return config.authzen.peps.find((caller) => caller.startsWith('jwt:')) ?? null;
}

export function parseFlagsLayer(values: Record<string, string | boolean | undefined>): PartialConfig {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(DEFAULT_CONFIG)) {
    const value = values[key];
    if (value === undefined) continue;
    if (NUMERIC_KEYS.has(key)) raw[key] = Number(value);
    else if (key === 'forwardAuth') raw[key] = { style: value };
    else raw[key] = value;
  }
  const result = layerSchema.safeParse(raw);
  if (!result.success) throw new VerdictError('CONFIG_INVALID', describeIssues(result.error, 'flags'));
  return result.data;
}

export function splitHostPort(value: string): { host: string; port: number } {
  const colon = value.lastIndexOf(':');
  const host = value.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(value.slice(colon + 1)) };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
