// Starts one verdict server (policies, decision log, the decide core, its gRPC
// and HTTP transports, health and metrics) and stops it gracefully.

import { LoadBoard, MemoryLimitStore, monotonicNow, RateLimiter, RedisLimitBackend, SettlementBook } from '../limits/index.js';
import { createAuthenticator } from '../authn/authenticators.js';
import { grpcCallerOf, grpcServerCredentials, httpsServerOptions, loadTlsMaterial, tlsSocketIdentity } from '../authn/mtls.js';
import type { Authenticator } from '../authn/types.js';
import { loadAudit, type AuditSetup } from '../decisions/audit-setup.js';
import type { DecisionLog } from '../decisions/log-client.js';
import { lockDecisionLog, type LogLock } from '../decisions/lock.js';
import type { SensitiveAttributes } from '../decisions/sensitive.js';
import { startWriterThread, type WriterSettings } from '../decisions/writer-thread.js';
import { BATCH_RECORD_FACTOR, DecisionPipeline, type CallMeta, type PipelineOptions, type SettleOutcome } from '../decide/index.js';
import { messageOf, VerdictError } from '../errors.js';
import { GatewayAdapter } from '../gateway/adapter.js';
import { AuthZenEndpoint } from '../gateway/authzen-http.js';
import { handleForwardAuth, peerOf } from '../gateway/forward-auth.js';
import { TrustedHeaderAuthenticator } from '../gateway/trusted-headers.js';
import type { AlertReader, AlertSink } from '../analysis/alert.js';
import { openAlertReader } from '../analysis/alert-store.js';
import { resolveDetectors } from '../analysis/detector-config.js';
import { Admin, limitsStatus } from './admin.js';
import { Console } from './console.js';
import { AuditWatch } from './console-audit.js';
import { createLiveAlerts, detectorObserver, relayedAlerts, watchedSink, type AlertStore, type DetectingAlerts, type LiveAlerts } from './alerts.js';
import { AdminGate } from './admin-auth.js';
import type { LapsedConnection } from '../authn/certificate-lapse.js';
import type { ServerConfig } from './config.js';
import { ENVIRONMENT_KEYS, splitHostPort } from './config.js';
import { AUTHORIZATION_SERVICE } from './grpc/authorization-service.js';
import { EXT_AUTHZ_SERVICE } from './grpc/ext-authz-service.js';
import { fitConnectionCaps, openFileLimit } from './connection-caps.js';
import { createGrpcServer, type GrpcServer } from './grpc/server.js';
import { OperatorHttpServer } from './http.js';
import type { Logger } from './logger.js';
import { ServerMetrics } from './metrics.js';
import { PolicyStore } from './policy-store.js';
import { openShadowStore, shadowStatus } from './shadow.js';
import { setConditionBudget } from '../policy/condition.js';
import type { Alert } from '../analysis/alert.js';
import { webhookSecret } from './alert-response-config.js';
import { SuspensionService } from './suspension.js';
import { WebhookSink, type WebhookSinkOptions } from './webhooks.js';

/** A running verdict: the ports it bound and how to stop it. */
export interface RunningServer {
  readonly grpcPort: number;
  readonly httpPort: number;
  /** The operations listener's port (/healthz, /readyz, /metrics) when `config.ops` is set, else null. */
  readonly opsPort: number | null;
  readonly store: PolicyStore;
  /** Shadow mode's set (--shadow-policies), reloaded with the live one; null when shadow mode is off. */
  readonly shadowStore: PolicyStore | null;
  readonly log: DecisionLog;
  readonly metrics: ServerMetrics;
  /** Turns gateway credentials into principals, per `config.authn`. */
  readonly authenticator: Authenticator;
  /** The live anomaly detectors (none in a `--workers` worker) and the sinks of their alerts (server/alerts.ts); null with `alerts.enabled: false`. */
  readonly alerts: LiveAlerts | null;
  /**
   * The responses to alerts, per `config.alerts`: one sink per webhook, and the
   * suspension of the alert's principal when `alerts.suspend.enabled`. Detectors
   * publish each alert they raise to every one; none blocks.
   */
  readonly alertSinks: readonly AlertSink[];
  /** Hands one alert to every sink of alertSinks (what a detector does). In process only: no port reaches it. */
  publishAlert(alert: Alert): void;
  /** The principals suspended now (by alerts or operators), and manual suspension and lifting. */
  readonly suspensions: SuspensionService;
  /** The loads ReportLoad reported, scaling the load-aware limits. */
  readonly loadBoard: LoadBoard;
  /** A Settle passed on by another `--workers` worker: settled (and recorded) here if this server decided it; null if not. */
  settleIfHeld(decisionId: string, actualUnits: number, meta: CallMeta, claim?: () => boolean | Promise<boolean>): Promise<SettleOutcome | null>;
  /** Stop accepting, finish in-flight checks, flush the decision log, close everything. Idempotent. */
  close(): Promise<void>;
}

const PROBE_INTERVAL_MS = 1000;
const READINESS_STATUS_TIMEOUT_MS = 500;

/** How a server differs from a plain single-process one (cluster workers set these). */
export interface StartOptions {
  /**
   * Where decisions are recorded. Default: a writer thread of this process on
   * `config.db`. Cluster workers pass a client of the primary's writer.
   */
  readonly openLog?: (sensitive: SensitiveAttributes | null) => Promise<DecisionLog>;
  /** After an Admin Reload succeeded here (cluster workers pass it on to the other workers). */
  readonly onAdminReload?: () => void;
  /** What /metrics serves; default this process's metrics. Cluster workers serve the whole cluster's. */
  readonly collectMetrics?: () => Promise<{ contentType: string; body: string }>;
  /** The message of the "serving" log line; cluster workers say `worker serving`. */
  readonly servingMessage?: string;
  /** Waits for this process's turn to compile a reload (cluster workers take turns); resolves with the way to give it back. */
  readonly reloadTurn?: () => Promise<() => void>;
  /**
   * Where the console reads stored alerts. Absent (or null): the alerts table of `config.db`, when
   * the detectors run; with `alerts.enabled: false` the console's alerts panel says alerts are not enabled.
   */
  readonly alerts?: AlertReader | null;
  /**
   * The `--workers` primary runs the detectors over every worker's rows
   * (cluster.ts): this server runs none, and its WatchAlerts subscribers (and,
   * when the primary picks it, its webhooks and suspension) hear what the
   * primary raises.
   */
  readonly relayAlerts?: boolean;
  /** Told of each ReportLoad this server took (cluster workers pass it to the others). */
  readonly onLoadReport?: (pool: string, load: number) => void;
  /** Where a Settle of a decision this server does not hold is tried next (cluster workers ask the others; PipelineOptions.settleElsewhere). */
  readonly settleElsewhere?: PipelineOptions['settleElsewhere'];
}

/** Reloads the policies a server decides with: the live set, and shadow mode's beside it. */
export function reloadServedPolicies(server: RunningServer): void {
  void server.store.reload();
  void server.shadowStore?.reload();
}

/**
 * Wires the pieces: policies → engine → decision log → answer, behind gRPC, plus the
 * operator's HTTP port. Fails before binding anything if the policies are invalid
 * or the decision log cannot be opened.
 */
export async function startServer(config: ServerConfig, logger: Logger, options: StartOptions = {}): Promise<RunningServer> {
  // Certificates are checked before anything opens, so a wrong path stops the start with the file named.
  const tls = config.tls ? loadTlsMaterial(config.tls) : null;
  // So are the webhooks' secrets.
  const webhookSecrets = config.alerts.webhooks.map((webhook, i) => webhookSecret(webhook, i));
  const metrics = new ServerMetrics();
  metrics.setReplica(config.replicaId);
  // A large set takes seconds to load cold: say what the server is doing meanwhile.
  logger.info({ policies: config.policies }, 'loading policies');
  const store = await PolicyStore.open(config.policies, {
    onReload: (outcome, status) => {
      metrics.observeReload(outcome.ok, outcome.seconds);
      if (outcome.ok) {
        metrics.setPolicy(status.version, status.ruleCount);
        logger.info({ pid: process.pid, version: outcome.version, changed: outcome.changed, rules: status.ruleCount, seconds: outcome.seconds, longestBlockMs: status.lastReloadLongestBlockMs, longestSliceMs: status.lastReloadSlices?.longestSliceMs, longestSliceStage: status.lastReloadSlices?.longestSliceStage, longestCollectionMs: status.lastReloadSlices?.longestCollectionMs }, 'policies reloaded');
      } else {
        logger.error({ error: outcome.error, serving: status.version }, 'policy reload refused; still serving the last good set');
      }
    },
    onWatchError: (message, watch) => {
      metrics.observeWatchFailure();
      logger.error({ policies: config.policies, error: message, failures: watch.failures }, 'watching the policy directory failed; retrying, and comparing the files every poll meanwhile');
    },
  }, { takeTurn: options.reloadTurn });
  metrics.setPolicy(store.current.version, store.current.rules.length);
  // Shadow mode: a candidate set decided beside the live one, never answering (decide/pipeline.ts).
  let shadowStore: PolicyStore | null = null;
  if (config.shadowPolicies !== null) {
    try {
      shadowStore = await openShadowStore(config.shadowPolicies, metrics, logger);
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  const closeStores = async (): Promise<void> => {
    await Promise.all([store.close(), shadowStore?.close()]);
  };

  // One server per log: a second one on the same --db is refused before it touches the log or its keys
  // (a cluster worker writes through its primary, which holds the lock).
  let lock: LogLock | null = null;
  let audit: AuditSetup;
  let log: DecisionLog;
  try {
    if (!options.openLog) lock = lockDecisionLog(config.db);
    // Signing and HMAC keys are read (or created next to the db) before the log opens, so a bad key file stops the start.
    audit = loadAudit(config);
    for (const note of audit.notes) logger[note.level]({ db: config.db }, note.message);
    const sensitive = audit.sensitive;
    log = await (options.openLog ? options.openLog(sensitive) : startWriterThread(writerSettings(config, audit), sensitive));
  } catch (error) {
    lock?.release();
    await closeStores();
    throw error;
  }
  /** Close the log, then let another server have it. */
  const closeLog = async (): Promise<void> => {
    try {
      await log.close();
    } finally {
      lock?.release();
    }
  };
  // Suspensions live in a table of the log's file, so they survive a restart (server/suspension.ts).
  let suspensions: SuspensionService;
  try {
    suspensions = SuspensionService.open(config.db, {
      metrics: metrics.alertResponses,
      onError: (error) => logger.error({ db: config.db }, error),
      onRefused: (message) => logger.warn({ db: config.db }, message),
    });
  } catch (error) {
    await closeLog().catch(() => undefined);
    await closeStores();
    throw error;
  }
  const webhooks = config.alerts.webhooks.map(
    (webhook, i) =>
      new WebhookSink(webhook, {
        secret: webhookSecrets[i]!,
        metrics: metrics.alertResponses,
        onFailure: ({ webhook: url, alertId, attempt, error, gaveUp }) => logger.warn({ webhook: url, alertId, attempt, error }, gaveUp ? 'alert webhook failed; giving the alert up' : 'alert webhook failed; retrying with backoff'),
        onDropped: droppedAlertLog(logger),
      }),
  );
  const suspendSink = suspensions.sink(config.alerts.suspend);
  const alertSinks: readonly AlertSink[] = suspendSink === null ? webhooks : [...webhooks, suspendSink];
  const publishAlert = (alert: Alert): void => {
    for (const sink of alertSinks) {
      try {
        sink.publish(alert);
      } catch (error) {
        logger.error({ alertId: alert.id, error: messageOf(error) }, 'an alert sink failed');
      }
    }
  };
  const closeAlertResponses = async (): Promise<void> => {
    await Promise.all(webhooks.map((w) => w.close()));
    suspensions.close();
  };
  logger.info({ keyId: audit.keyId, publicKey: audit.checkpoints.publicKey, checkpointEveryRows: config.checkpointEveryRows, checkpointEverySeconds: config.checkpointEverySeconds, sensitiveAttributes: config.sensitiveAttributes }, 'audit trail');
  metrics.setLogHealthy(log.healthy);
  log.onCommit(({ rows, durationMs }) => metrics.observeCommit(rows, durationMs / 1000));
  log.onWriteError(({ error, rows, acknowledgedRows }) => {
    if (acknowledgedRows > 0) logger.error({ db: config.db, rows, acknowledgedRows, error: error.message }, 'decisions already answered (async mode) could not be recorded');
  });

  let authenticator: Authenticator;
  try {
    authenticator = createAuthenticator(config.authn, {
      onError: (error, method) => logger.warn({ method, error: messageOf(error) }, 'authentication could not check a credential fully'),
    });
  } catch (error) {
    await closeAlertResponses().catch(() => undefined);
    await closeLog().catch(() => undefined);
    throw error;
  }

  // Every transport decides through the one pipeline; metrics observe it.
  setConditionBudget(config.requestLimits.maxConditionSteps);
  // Rate-limit budgets: in this process, or in Redis shared by every replica (a failure is logged at most every few seconds).
  const limitBackend = config.limits.backend === 'redis' ? openLimitBackend(config, logger) : null;
  if (limitBackend !== null && !(await limitBackend.ready(REDIS_CONNECT_WAIT_MS))) {
    logger.warn({ backend: 'redis', waitedMs: REDIS_CONNECT_WAIT_MS }, 'rate-limit backend not connected yet; serving, limits follow their onBackendFailure until it answers');
  }
  const loadBoard = new LoadBoard(config.limits.loadStaleAfterMs);
  // Each --workers worker counts a `local` fallback in its own memory, as a replica of its own does.
  const limiter = new RateLimiter(new MemoryLimitStore(), monotonicNow, limitBackend === null ? null : { backend: limitBackend, replicas: config.limits.replicas * config.workers }, loadBoard);
  const currentLimitsStatus = () => limitsStatus(store.current.limits, loadBoard, limitBackend === null ? 'memory' : 'redis', limitBackend === null ? true : limitBackend.status().healthy);
  metrics.watchLoadFactors(() => currentLimitsStatus().loadFactors);
  const pipeline = new DecisionPipeline(store, log, {
    requestLimits: config.requestLimits,
    limiter,
    settlements: new SettlementBook(100_000, config.limits.settleWithinMs),
    ...(options.settleElsewhere === undefined ? {} : { settleElsewhere: options.settleElsewhere }),
    // A batch (CheckBatch, AuthZEN evaluations) may record at most this much, whichever transport brought it.
    maxBatchRecordedBytes: BATCH_RECORD_FACTOR * config.maxMessageBytes,
    maxBatchBytesInFlight: config.maxBatchBytesInFlight,
    suspensions: suspensions.book,
    ...(shadowStore ? { shadow: shadowStore } : {}),
  });
  pipeline.observe(metrics);
  // Anomaly alerts: the detectors read every recorded decision; each alert goes to every sink of the fan-out.
  const alerts = config.alerts.enabled === false ? null : options.relayAlerts === true ? startRelayedAlerts(metrics) : startAlerts(config, log, metrics, logger);
  if (alerts?.detectors != null) {
    pipeline.observe(detectorObserver(alerts.detectors));
    // The responses (webhooks, suspension) hear every alert the detectors raise.
    for (const sink of alertSinks) alerts.fanout.add(sink);
  }
  if (pipeline.limiter.store instanceof MemoryLimitStore) metrics.watchLimitStore(pipeline.limiter.store);
  metrics.watchSettlements(pipeline.settlements);
  metrics.watchQueues({
    longCallsWaiting: () => pipeline.longCallsWaiting,
    pendingRows: () => log.pendingRows,
    batchBytesInFlight: () => pipeline.batchesInFlight.bytesInFlight,
    batchesWaiting: () => pipeline.batchesInFlight.batchesWaiting,
  });
  if (limitBackend !== null) metrics.watchLimitBackend(() => limitBackend.status());
  // Administering needs an identity of its own (admin-auth.ts); every Admin call is recorded in the log.
  let gate: AdminGate;
  try {
    // Admin calls are recorded beside the decisions; the detectors count the refused ones as failed authentications.
    gate = AdminGate.fromConfig(config.admin, { tls: tls !== null }, { log: alerts?.detectors == null ? log : watchedSink(log, alerts.detectors), policyVersion: () => store.current.version });
  } catch (error) {
    await closeAlertResponses().catch(() => undefined);
    await closeLog().catch(() => undefined);
    await authenticator.close?.();
    await limitBackend?.close();
    await closeStores();
    throw error;
  }
  if (config.admin.tokenFile !== undefined) {
    const tokenFile = config.admin.tokenFile;
    gate.onTokenChange((change) => {
      if (change.problem !== null) logger.error({ tokenFile, problem: change.problem }, 'admin token file cannot be used: no admin token is accepted until it holds one');
      else logger.info({ tokenFile }, 'admin token replaced: only the token the file holds now is accepted');
      if (change.looseMode !== null) logger.warn({ tokenFile, mode: change.looseMode }, 'the admin token file is readable by others; chmod 600 it');
    });
    if (gate.tokenFileLooseMode !== null) logger.warn({ tokenFile, mode: gate.tokenFileLooseMode }, 'the admin token file is readable by others; chmod 600 it');
    if (!tls) logger.warn({ grpc: config.grpc }, 'the admin token travels in plaintext: serve gRPC with TLS, or keep the gRPC port on loopback');
  }
  if (config.admin.clientsFile !== undefined) {
    const clientsFile = config.admin.clientsFile;
    gate.onClientsChange((change) => {
      if (change.problem !== null) logger.error({ clientsFile, problem: change.problem }, 'admin certificates file cannot be used: no certificate is admitted through it until it can');
      else logger.info({ clientsFile, identities: gate.clientsFileSize }, 'admin certificates file changed: only the identities it lists now are admitted through it');
    });
  }
  const admin = new Admin(store, log.path, gate, options.onAdminReload, shadowStore, alerts?.hub ?? null, suspensions, { board: loadBoard, status: currentLimitsStatus, ...(options.onLoadReport === undefined ? {} : { onReport: options.onLoadReport }) }, config.replicaId);
  // The console (/console on the HTTP port): read-only, each of its calls an Admin call; the audit trail verified in a thread of its own.
  // The console reads the alerts the detectors stored, unless the caller hands it a reader of its own.
  const ownAlertReader = options.alerts != null || alerts === null ? null : openAlertReader(config.db);
  const alertReader = options.alerts ?? ownAlertReader;
  const auditWatch = new AuditWatch(config.db, audit.checkpoints.publicKey);
  const webConsole = new Console({
    gate,
    queries: admin.queries,
    store,
    log,
    audit: auditWatch,
    alerts: alertReader,
    onError: (error) => logger.error({ error: messageOf(error) }, 'internal error answering the console'),
  });
  // Gateways (Envoy ext_authz, forward-auth) authenticate with authn, or trust an identity proxy's headers.
  if (config.trustedPrincipal && (config.authn.jwt || config.authn.apiKeys)) {
    await closeAlertResponses().catch(() => undefined);
    await closeLog().catch(() => undefined);
    await authenticator.close?.();
    throw new VerdictError('CONFIG_INVALID', 'configuration: trustedPrincipal and authn (jwt, apiKeys) exclude each other; gateways use one way to know the caller');
  }
  const httpsCertificateLapsed = lapsedCertificateLog(logger, 'ended an HTTPS connection, or refused its request: the client certificate it was opened with, or one in its chain, has expired');
  const gatewayAuthenticator = config.trustedPrincipal ? new TrustedHeaderAuthenticator(config.trustedPrincipal) : authenticator;
  const gateway = new GatewayAdapter(pipeline, gatewayAuthenticator);
  // AuthZEN callers authenticate like gateways; with mTLS and no credential method, the client certificate suffices.
  const authzen = new AuthZenEndpoint(pipeline, gatewayAuthenticator, {
    maxBodyBytes: config.maxMessageBytes,
    certificateAuthenticates: tls !== null && tls.http && tls.requireClientCert && !config.trustedPrincipal && !config.authn.jwt && !config.authn.apiKeys,
    peps: new Set(config.authzen.peps),
    onError: (error) => logger.error({ error: messageOf(error) }, 'internal error answering an AuthZEN request'),
    onCertificateLapsed: httpsCertificateLapsed,
  });
  // Connections must leave file descriptors for the log and key stores, whatever the configured caps say.
  const fitted = fitConnectionCaps(
    { grpcMaxConnections: config.grpcMaxConnections, httpMaxConnections: config.httpMaxConnections, ...(config.ops === null ? {} : { 'httpMaxConnections (ops)': config.httpMaxConnections }) },
    openFileLimit(),
  );
  if (fitted.warning !== null) logger.warn({ connectionCaps: fitted.caps }, fitted.warning);
  const grpc: GrpcServer = createGrpcServer(
    { authorization: pipeline, admin, extAuthz: gateway },
    {
      maxReceiveMessageBytes: config.maxMessageBytes,
      requestLimits: config.requestLimits,
      maxExtAuthzEntries: config.requestLimits.maxExtAuthzEntries,
      shutdownTimeoutMs: config.shutdownGraceMs,
      streamLimits: { maxStreamsPerConnection: config.grpcStreams.maxPerConnection, bodyTimeoutMs: config.grpcStreams.bodyTimeoutMs, maxBufferedBytes: config.grpcStreams.maxBufferedBytes, maxWaitingBytes: config.grpcStreams.maxWaitingBytes },
      unreadAnswerLimits: {
        maxUnsentBytes: config.grpcStreams.maxUnsentBytes,
        maxUnsentBytesPerConnection: config.grpcStreams.maxUnsentBytesPerConnection,
        sendTimeoutMs: config.grpcStreams.sendTimeoutMs,
      },
      onUnreadAnswersClosed: ({ reason, peer, unsentBytes }) =>
        logger.warn(
          { peer, unsentBytes, reason },
          reason === 'send_timeout'
            ? `closed a gRPC connection that took none of its answers in ${config.grpcStreams.sendTimeoutMs} ms (grpcStreams.sendTimeoutMs)`
            : reason === 'connection_budget'
              ? `closed a gRPC connection holding more than ${config.grpcStreams.maxUnsentBytesPerConnection} bytes of answers it did not take (grpcStreams.maxUnsentBytesPerConnection)`
              : `closed the gRPC connection holding the most unsent answers: all together were past ${config.grpcStreams.maxUnsentBytes} bytes (grpcStreams.maxUnsentBytes)`,
        ),
      maxConnections: fitted.caps.grpcMaxConnections,
      maxConnectionsPerClient: config.maxConnectionsPerClient,
      onCertificateLapsed: lapsedCertificateLog(logger, 'closed a gRPC connection: the client certificate it was opened with, or one in its chain, has expired (the client reconnects with a valid one)'),
      clientCa: tls?.clientCa ?? null,
      onInternalError: (error, method) => logger.error({ method, error: messageOf(error) }, 'internal error answering a call'),
      // The verified client certificate's identity when there is one, else the peer address.
      callerOf: grpcCallerOf,
    },
  );

  // While the log cannot be written, checks fail closed and health says so; a probe notices recovery.
  let probeTimer: NodeJS.Timeout | null = null;
  const onLogHealth = ({ healthy, lastError }: { healthy: boolean; lastError: string | null }): void => {
    metrics.setLogHealthy(healthy);
    const status = healthy ? 'SERVING' : 'NOT_SERVING';
    grpc.health.setStatus('', status);
    grpc.health.setStatus(AUTHORIZATION_SERVICE, status);
    grpc.health.setStatus(EXT_AUTHZ_SERVICE, status);
    if (healthy) {
      logger.info({ db: config.db }, 'decision log writable again; serving checks');
      if (probeTimer) clearInterval(probeTimer);
      probeTimer = null;
    } else {
      logger.error({ db: config.db, error: lastError }, 'decision log cannot be written; refusing checks until it can');
      probeTimer ??= setInterval(() => void log.probe(), PROBE_INTERVAL_MS);
      probeTimer.unref();
    }
  };
  log.onHealthChange(onLogHealth);
  // A cluster worker may join a log that is already failing.
  if (!log.healthy) onLogHealth({ healthy: false, lastError: log.lastError });

  const grpcAddress = splitHostPort(config.grpc);
  const httpAddress = splitHostPort(config.http);
  const opsAddress = config.ops === null ? null : splitHostPort(config.ops);
  const operations = {
    readiness: async () => {
      const status = store.status();
      // Asked of the writer; a writer that cannot answer soon (lost, or stuck in a long fsync) has none to give.
      const auditStatus = await withTimeout(log.auditStatus(), READINESS_STATUS_TIMEOUT_MS).catch(() => null);
      return {
        ready: log.healthy,
        detail: {
          // Which process answered: with --workers N, each connection is served by one of N.
          pid: process.pid,
          policyVersion: status.version,
          policyLoadedAt: status.loadedAt.toISOString(),
          lastReloadError: status.lastReloadError,
          lastReloadLongestBlockMs: status.lastReloadLongestBlockMs,
          lastReloadSlices: status.lastReloadSlices ?? null,
          policyWatch: status.watch,
          shadow: shadowStore === null ? null : shadowStatus(config.shadowPolicies!, shadowStore),
          decisionLog: { path: config.db, mode: config.decisionLog, healthy: log.healthy, lastError: log.lastError, audit: auditStatus },
          // A failing Redis does not make the server unready: each limit follows its onBackendFailure.
          limits: limitBackend === null ? { backend: 'memory' } : { ...limitBackend.status(), timeoutMs: config.limits.timeoutMs, replicas: config.limits.replicas },
        },
      };
    },
    metrics: options.collectMetrics ?? (async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() })),
  };
  const http = new OperatorHttpServer({
    // With an ops listener, readiness and metrics are served there only.
    ...(opsAddress === null ? operations : {}),
    forwardAuth: (req, res) =>
      handleForwardAuth(gateway, req, res, {
        style: config.forwardAuth.style,
        callerOf: (r) => tlsSocketIdentity(r.socket) ?? peerOf(r),
        onError: (error) => logger.error({ error: messageOf(error) }, 'internal error answering forward-auth'),
      }),
    authzen: (req, res) => authzen.handle(req, res),
    console: (req, res) => webConsole.handle(req, res),
  }, {
    tls: tls?.http ? httpsServerOptions(tls) : undefined,
    shutdownGraceMs: config.shutdownGraceMs,
    requestTimeoutMs: config.httpRequestTimeoutMs,
    maxConnections: fitted.caps.httpMaxConnections,
    maxConnectionsPerClient: config.maxConnectionsPerClient,
    onCertificateLapsed: httpsCertificateLapsed,
  });
  const ops = opsAddress === null ? null : new OperatorHttpServer(operations, { shutdownGraceMs: config.shutdownGraceMs, requestTimeoutMs: config.httpRequestTimeoutMs, maxConnections: fitted.caps['httpMaxConnections (ops)'], maxConnectionsPerClient: config.maxConnectionsPerClient });

  let grpcPort: number;
  let httpPort: number;
  let opsPort: number | null = null;
  try {
    grpcPort = await bound('grpc', config.grpc, grpc.start(grpcAddress.host, grpcAddress.port, tls ? grpcServerCredentials(tls) : undefined));
    metrics.watchStreamGuard(grpc.streamGuard);
    metrics.watchUnreadAnswers(grpc.unreadAnswers);
    if (!grpc.streamGuard.installed) logger.warn({ grpc: config.grpc }, 'the gRPC stream guard could not be installed on this grpc-js release; slow or unfinished request bodies are not cut off (grpcStreams), nor connections capped (grpcMaxConnections)');
    metrics.watchLargeMessages(() => grpc.directLane.largeMessages);
    if (!grpc.directLane.installed) logger.warn({ grpc: config.grpc }, 'the direct lane for checks could not be installed on this grpc-js release; every call goes through grpc-js (slower, same answers)');
    httpPort = await bound('http', config.http, http.listen(httpAddress.host, httpAddress.port));
    if (ops && opsAddress && config.ops !== null) opsPort = await bound('ops', config.ops, ops.listen(opsAddress.host, opsAddress.port));
  } catch (error) {
    await grpc.shutdown();
    await http.close().catch(() => undefined);
    await ops?.close().catch(() => undefined);
    webConsole.close();
    await auditWatch.close().catch(() => undefined);
    ownAlertReader?.close();
    alerts?.hub.close();
    await admin.close().catch(() => undefined);
    gate.close();
    await closeAlertResponses().catch(() => undefined);
    await limitBackend?.close();
    await closeLog().catch(() => undefined);
    await authenticator.close?.();
    await closeStores();
    throw error;
  }
  if (config.watch) store.watch({ pollMs: config.watchPollMs });
  if (config.watch) shadowStore?.watch({ pollMs: config.watchPollMs });
  metrics.setWatching(() => store.watchStatus().mode === 'events');

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (probeTimer) clearInterval(probeTimer);
      // Live tails and WatchAlerts streams end first: an open stream would otherwise hold its port for the whole grace.
      webConsole.close();
      alerts?.hub.close();
      // Both ports stop accepting at once and get the same grace for the checks in flight; the
      // policy store stops watching meanwhile (a reload still compiling must not keep the ports open).
      await Promise.all([grpc.shutdown(), http.close(), ops?.close(), closeStores()]);
      await Promise.all([admin.close(), auditWatch.close()]);
      gate.close();
      ownAlertReader?.close();
      await authenticator.close?.();
      await closeAlertResponses();
      await alerts?.stored?.flush();
      await limitBackend?.close();
      await closeLog();
    })();
    return closing;
  };

  logger.info(
    { grpc: `${grpcAddress.host}:${grpcPort}`, http: `${httpAddress.host}:${httpPort}`, ops: opsAddress ? `${opsAddress.host}:${opsPort}` : null, admin: gate.describe(), policies: config.policies, version: store.current.version, rules: store.current.rules.length, db: config.db, decisionLog: config.decisionLog, authzenPeps: config.authzen.peps, replica: config.replicaId, tls: tls ? { subject: tls.subject, validTo: tls.validTo, clientCertificates: tls.requireClientCert ? 'required' : 'not requested', http: tls.http } : false },
    options.servingMessage ?? 'verdict serving',
  );
  return { grpcPort, httpPort, opsPort, store, shadowStore, log, metrics, authenticator, alerts, alertSinks, publishAlert, suspensions, loadBoard, settleIfHeld: (decisionId, actualUnits, meta, claim) => pipeline.settleIfHeld(decisionId, actualUnits, meta, claim), close };
}

/**
 * The detectors of `config.alerts` and the sinks their alerts reach: the alerts
 * table, WatchAlerts, metrics. Another sink is one more entry in `sinks`, or
 * `alerts.fanout.add(sink)` once the server runs.
 */
export function startAlerts(config: ServerConfig, log: AlertStore, metrics: ServerMetrics, logger: Logger): DetectingAlerts {
  const alerts = createLiveAlerts(resolveDetectors(config.alerts.detectors), log, [], (message, count) => logger.error({ db: config.db, alerts: count, error: message }, 'alerts could not be stored'));
  const { detectors, hub } = alerts;
  const sinks: AlertSink[] = [
    metrics.alertSink({
      get evictions() {
        return detectors.evictions;
      },
      get subjects() {
        return detectors.subjects;
      },
      get watchers() {
        return hub.size;
      },
      get droppedWatchers() {
        return hub.dropped;
      },
      get summarised() {
        return detectors.summarised;
      },
    }),
    { publish: (alert) => logger.warn({ alert: { id: alert.id, type: alert.type, subject: alert.subject, observed: alert.observed, threshold: alert.threshold } }, alert.summary) },
  ];
  for (const sink of sinks) alerts.fanout.add(sink);
  return alerts;
}

/**
 * The alerting of a `--workers` worker (StartOptions.relayAlerts): its own
 * WatchAlerts subscribers in the metrics; the alert counts and detector figures
 * are the primary's, summed into the same metrics by the cluster's /metrics.
 */
function startRelayedAlerts(metrics: ServerMetrics): LiveAlerts {
  const alerts = relayedAlerts();
  const { hub } = alerts;
  metrics.alertSink({
    evictions: 0,
    subjects: 0,
    summarised: { tokenSubjects: 0, sources: 0 },
    get watchers() {
      return hub.size;
    },
    get droppedWatchers() {
      return hub.dropped;
    },
  });
  return alerts;
}

/** How often a repeated warning (Redis failing, connections with expired certificates) is logged at most. */
const REPEATED_LOG_EVERY_MS = 10_000;
const REDIS_CONNECT_WAIT_MS = 2000;

/** One kind of repeated log line: the first at once, then at most one every REPEATED_LOG_EVERY_MS, each with how many were left out. */
class LogThrottle {
  private lastLogged = 0;
  private skipped = 0;

  /** How many were left out since the last line, when a line may be written now; null when this one is left out. */
  next(): number | null {
    const now = Date.now();
    if (now - this.lastLogged < REPEATED_LOG_EVERY_MS) {
      this.skipped += 1;
      return null;
    }
    const skipped = this.skipped;
    this.lastLogged = now;
    this.skipped = 0;
    return skipped;
  }

  /** Starts over (the next line is written at once); returns how many were left out. */
  reset(): number {
    const skipped = this.skipped;
    this.lastLogged = 0;
    this.skipped = 0;
    return skipped;
  }
}

/** Logs a connection ended or refused for its expired client certificate; a client that resumes its TLS session comes back with it again and again. */
function lapsedCertificateLog(logger: Logger, message: string): (connection: LapsedConnection) => void {
  const throttle = new LogThrottle();
  return (connection) => {
    const skipped = throttle.next();
    if (skipped !== null) logger.warn({ ...connection, refusedSinceLastLog: skipped }, message);
  };
}

/** Logs an alert a webhook's full queue dropped; a flood of alerts drops many, so once, then at most every 10 s with a count. */
function droppedAlertLog(logger: Logger): NonNullable<WebhookSinkOptions['onDropped']> {
  const throttle = new LogThrottle();
  return (event) => {
    const skipped = throttle.next();
    if (skipped !== null) logger.warn({ ...event, droppedSinceLastLog: skipped }, 'alert webhook queue full; dropped the oldest alert of the kind most queued');
  };
}

/** The Redis backend of limits.redis, whose failures are logged once, then at most every 10 s with a count. */
function openLimitBackend(config: ServerConfig, logger: Logger): RedisLimitBackend {
  const redis = config.limits.redis!;
  const failures = new LogThrottle();
  return new RedisLimitBackend(
    { url: redis.url, cluster: redis.cluster ?? false, keyPrefix: redis.keyPrefix, timeoutMs: config.limits.timeoutMs, retryMs: config.limits.retryMs },
    {
      failed: (error) => {
        const skipped = failures.next();
        if (skipped !== null) logger.error({ backend: 'redis', error, failuresSinceLastLog: skipped, timeoutMs: config.limits.timeoutMs }, 'rate-limit backend failed; limits follow their onBackendFailure until it answers');
      },
      recovered: () => logger.info({ backend: 'redis', failuresSinceLastLog: failures.reset() }, 'rate-limit backend answers again'),
    },
  );
}

/** How the decision log is opened for this configuration, by this process's writer thread or a cluster primary. */
export function writerSettings(config: ServerConfig, audit: AuditSetup): WriterSettings {
  return { path: config.db, mode: config.decisionLog, checkpoints: audit.checkpoints, replicaId: config.replicaId };
}

/** `promise`, or a rejection once `ms` have passed. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new VerdictError('INTERNAL', `no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A listener that cannot bind names the setting behind it, so the operator knows which flag to
 * change; grpc-js alone says only "No address added out of total 1 resolved".
 */
async function bound(setting: 'grpc' | 'http' | 'ops', address: string, listening: Promise<number>): Promise<number> {
  try {
    return await listening;
  } catch (error) {
    const detail = messageOf(error);
    const inUse = /EADDRINUSE|address already in use/i.test(detail);
    const notHere = /EADDRNOTAVAIL|EACCES|permission denied|cannot assign/i.test(detail);
    const why = inUse ? 'is already in use by another process' : notHere ? 'cannot be bound on this machine' : 'could not be bound';
    // Exit 5 (the server could not start), not a usage error: the same flags work once the address is free.
    throw new VerdictError(
      'ADDRESS_UNAVAILABLE',
      `--${setting} ${address} ${why} (${detail.split('\n')[0]}); choose another address with --${setting} or ${ENVIRONMENT_KEYS[setting]}, or stop what holds it`,
      { cause: error },
    );
  }
}
