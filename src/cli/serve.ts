import { VerdictError, messageOf } from '../errors.js';
import { reloadServedPolicies, startServer, type RunningServer } from '../server/app.js';
import { isClusterWorker, leaveCluster, runPrimary, startWorker } from '../server/cluster.js';
import type { Logger } from '../server/logger.js';
import { ENVIRONMENT_KEYS, FORWARD_AUTH_STYLE_ENVIRONMENT_KEY, parseFlagsLayer, readConfigFile, readEnvironment, resolveConfig, type PartialConfig, type ServerConfig } from '../server/config.js';
import { createLogger } from '../server/logger.js';
import { TLS_ENVIRONMENT_KEYS, tlsFromFlags } from '../authn/config.js';
import { AUDIT_ENVIRONMENT_KEYS, auditFromFlags } from '../decisions/audit-config.js';
import { ADMIN_TOKEN_FILE_ENV } from '../server/admin-auth.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { replicaIdOfLog } from '../decisions/replica.js';
import { lowerHelperThreads } from '../thread-priority.js';
import { paceFullCollections } from '../gc-pacing.js';

const HELP = `Usage: verdict serve [options]

Serves decisions over gRPC (verdict.v1.Authorization, Admin, health, reflection,
and Envoy's envoy.service.auth.v3.Authorization) and /healthz, /readyz, /metrics
and the gateways' /forward-auth over HTTP (docs/gateways.md). Every decision is
committed to the SQLite decision log before its answer leaves.

Options (each also a key of the --config file and an environment variable):
  --config FILE              YAML file with any of the keys below
  --policies DIR             policy directory            (policies)            ${ENVIRONMENT_KEYS.policies}
  --db FILE                  decision log                (data/decisions.db)   ${ENVIRONMENT_KEYS.db}
  --grpc HOST:PORT           gRPC address                (127.0.0.1:50051)     ${ENVIRONMENT_KEYS.grpc}
  --http HOST:PORT           forward-auth, health and    (127.0.0.1:9464)      ${ENVIRONMENT_KEYS.http}
                             metrics address
  --ops HOST:PORT            serve /healthz, /readyz and /metrics here instead ${ENVIRONMENT_KEYS.ops}
                             (plain HTTP, e.g. 127.0.0.1:9465); --http then
                             serves /forward-auth (and /healthz) only
  --replica-id ID            this replica's name, recorded (host name)         ${ENVIRONMENT_KEYS.replicaId}
                             in the decision log; a log naming another
                             replica is refused
  --decision-log MODE        durable | async             (durable)             ${ENVIRONMENT_KEYS.decisionLog}
  --max-message-bytes N      largest accepted request    (1048576)             ${ENVIRONMENT_KEYS.maxMessageBytes}
  --log-level LEVEL          trace..fatal | silent       (info)                ${ENVIRONMENT_KEYS.logLevel}
  --shadow-policies DIR      shadow mode: also decide every check with DIR,    ${ENVIRONMENT_KEYS.shadowPolicies}
                             answering with --policies; disagreements are
                             recorded (details.shadow) and counted
  --no-watch                 do not reload when policy files change            ${ENVIRONMENT_KEYS.watch}=false
  --watch-poll-ms N          also compare the policy files' content every N ms ${ENVIRONMENT_KEYS.watchPollMs}
                             (10000; 0: file-system events only)
  --shutdown-grace-ms N      wait for in-flight checks on SIGTERM (10000)      ${ENVIRONMENT_KEYS.shutdownGraceMs}
  --workers N                processes answering checks (1); with N > 1 they   ${ENVIRONMENT_KEYS.workers}
                             share the ports and this process writes the log
  --forward-auth-style S     nginx | traefik | caddy: the gateway in front of  ${FORWARD_AUTH_STYLE_ENVIRONMENT_KEY}
                             /forward-auth (nginx), whose headers carry the
                             method and URI; a request with the other
                             gateways' headers is refused (forwardAuth.style)

TLS for the gRPC port (config file: the tls section; see docs/authn.md):
  --tls-cert FILE            server certificate chain (PEM)                    ${TLS_ENVIRONMENT_KEYS.cert}
  --tls-key FILE             its private key (PEM)                             ${TLS_ENVIRONMENT_KEYS.key}
  --tls-client-ca FILE       require client certificates from these CAs        ${TLS_ENVIRONMENT_KEYS.clientCa}
  --tls-require-client-cert  (the default once a client CA is given)           ${TLS_ENVIRONMENT_KEYS.requireClientCert}
  --tls-http                 serve the HTTP port over TLS too                  ${TLS_ENVIRONMENT_KEYS.http}
A verified client certificate's identity (URI SAN, else DNS SAN, else CN) is
recorded as the caller of each decision. Authentication of gateway requests
(JWT, API keys) is configured in the authn section of the config file.

Administration (verdict.v1.Admin; config file: the admin section; see the README):
  --admin-token-file FILE    admit Admin calls that carry this token as        ${ADMIN_TOKEN_FILE_ENV}
                             "authorization: Bearer <token>"
Without an admin token or admin.clients (client-certificate identities), Admin
answers only loopback callers, and only on a server without TLS. Every Admin
call is recorded in the decision log.

Anomaly alerts (config file: the alerts section; see the README's Alerts): on by
default; alerts.enabled: false turns the detectors off, alerts.detectors sets
their thresholds. List what was raised with verdict alerts.

Audit trail (see docs/audit.md; keys are created next to the db on first start):
  --checkpoint-every-rows N      sign a checkpoint every N rows (10000)        ${AUDIT_ENVIRONMENT_KEYS.checkpointEveryRows}
  --checkpoint-every-seconds S   ...and every S seconds with unsigned rows (60) ${AUDIT_ENVIRONMENT_KEYS.checkpointEverySeconds}
  --signing-key FILE             Ed25519 private key (PEM)                     ${AUDIT_ENVIRONMENT_KEYS.signingKey}
  --public-key FILE              its public key (PEM)                          ${AUDIT_ENVIRONMENT_KEYS.publicKey}
  --sensitive-attributes LIST    comma-separated attribute paths stored as     ${AUDIT_ENVIRONMENT_KEYS.sensitiveAttributes}
                                 HMAC-SHA256, e.g. principal.attributes.email
  --hmac-key FILE                key for those HMACs                           ${AUDIT_ENVIRONMENT_KEYS.hmacKey}

Precedence: flags, then environment, then the config file, then the defaults.
Signals: SIGHUP reloads the policies; SIGTERM or SIGINT stops accepting, finishes
in-flight checks, flushes the decision log and exits 0.

Exit codes: 0 stopped cleanly, 2 usage or configuration error, 3 invalid policies,
5 could not start (decision log unavailable or in use by another server), or stopped
after an error nothing caught (logged at level fatal, then stopped as on SIGTERM).
`;

/**
 * After an uncaught error, how long past the shutdown grace the process is given before
 * it is ended regardless: room for the decision log's flush and, with --workers, for
 * the workers' own grace plus 5 s before they are killed.
 */
const FAULT_EXIT_MARGIN_MS = 30_000;

/** What an uncaught error is reported as: the server stops as on SIGTERM, and exits 5. */
const FAULTS = ['uncaughtException', 'unhandledRejection'] as const;

export async function runServe(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      help: { type: 'boolean', short: 'h' },
      config: { type: 'string', short: 'c' },
      policies: { type: 'string' },
      db: { type: 'string' },
      grpc: { type: 'string' },
      http: { type: 'string' },
      ops: { type: 'string' },
      'replica-id': { type: 'string' },
      'admin-token-file': { type: 'string' },
      'decision-log': { type: 'string' },
      'max-message-bytes': { type: 'string' },
      'log-level': { type: 'string' },
      'no-watch': { type: 'boolean' },
      'watch-poll-ms': { type: 'string' },
      'shadow-policies': { type: 'string' },
      'shutdown-grace-ms': { type: 'string' },
      workers: { type: 'string' },
      'forward-auth-style': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-client-ca': { type: 'string' },
      'tls-require-client-cert': { type: 'boolean' },
      'tls-http': { type: 'boolean' },
      'checkpoint-every-rows': { type: 'string' },
      'checkpoint-every-seconds': { type: 'string' },
      'signing-key': { type: 'string' },
      'public-key': { type: 'string' },
      'sensitive-attributes': { type: 'string' },
      'hmac-key': { type: 'string' },
    },
    false,
  );
  if (values.help) {
    io.stdout(HELP);
    return EXIT.OK;
  }
  // Before this process starts threads of its own, so that only node's helpers are lowered (thread-priority.ts).
  await lowerHelperThreads();
  // Before load builds up garbage: V8 applies it from the next full collection (gc-pacing.ts).
  paceFullCollections();
  let config;
  try {
    const fromFile: PartialConfig = values.config ? readConfigFile(values.config) : {};
    const fromEnv = readEnvironment(process.env);
    const fromFlags = parseFlagsLayer({
      policies: values.policies,
      db: values.db,
      grpc: values.grpc,
      http: values.http,
      ops: values.ops,
      replicaId: values['replica-id'],
      decisionLog: values['decision-log'],
      maxMessageBytes: values['max-message-bytes'],
      logLevel: values['log-level'],
      shutdownGraceMs: values['shutdown-grace-ms'],
      watchPollMs: values['watch-poll-ms'],
      shadowPolicies: values['shadow-policies'],
      workers: values.workers,
      forwardAuth: values['forward-auth-style'],
    });
    const tlsFlags = tlsFromFlags({ cert: values['tls-cert'], key: values['tls-key'], clientCa: values['tls-client-ca'], requireClientCert: values['tls-require-client-cert'], http: values['tls-http'] });
    const auditFlags = auditFromFlags({
      checkpointEveryRows: values['checkpoint-every-rows'],
      checkpointEverySeconds: values['checkpoint-every-seconds'],
      signingKey: values['signing-key'],
      publicKey: values['public-key'],
      sensitiveAttributes: values['sensitive-attributes'],
      hmacKey: values['hmac-key'],
    });
    const adminFlags: PartialConfig = values['admin-token-file'] !== undefined ? { admin: { tokenFile: values['admin-token-file'] } } : {};
    config = resolveConfig([fromFile, fromEnv, fromFlags, adminFlags, tlsFlags ? { tls: tlsFlags } : {}, auditFlags, values['no-watch'] ? { watch: false } : {}]);
    // Not told its id, a server is the replica its log names: its host name may have changed (a container
    // started anew on the same volume). Told one, it is refused a log that names another (replica.ts).
    if ([fromFile, fromEnv, fromFlags].every((layer) => layer.replicaId === undefined)) config = { ...config, replicaId: replicaIdOfLog(config.db, config.replicaId) };
  } catch (error) {
    io.stderr(`verdict serve: ${messageOf(error)}\n`);
    return EXIT.USAGE;
  }

  const logger = createLogger(config.logLevel);
  // Signals are handled from the start: a SIGTERM that arrives while starting stops the server once it is up.
  let stopSignal: string | null = null;
  let onStop: ((signal: string) => void) | null = null;
  const requestStop = (signal: string): void => {
    if (stopSignal !== null) return;
    stopSignal = signal;
    onStop?.(signal);
  };
  process.once('SIGTERM', () => requestStop('SIGTERM'));
  process.once('SIGINT', () => requestStop('SIGINT'));
  // An error nothing caught is a bug. Node's default would end the process on the spot, losing what the
  // decision log had not written yet; instead it is logged and the server stops as on SIGTERM, exit code 5.
  let faulted = false;
  const onFault = (kind: (typeof FAULTS)[number]) => (error: unknown): void => {
    try {
      logger.fatal({ error: messageOf(error), stack: error instanceof Error ? error.stack : undefined }, `${kind}: verdict is stopping (checks in flight finish, the decision log is flushed); this is a bug: report it with this line`);
    } catch {
      // Whatever the error is made of, the server still stops.
    }
    if (faulted) return;
    faulted = true;
    requestStop(kind);
    // Should stopping itself hang, the process still ends.
    setTimeout(() => process.exit(EXIT.SERVER), config.shutdownGraceMs + FAULT_EXIT_MARGIN_MS).unref();
  };
  for (const kind of FAULTS) process.on(kind, onFault(kind));
  let started: RunningServer | null = null;
  let onReload: (() => void) | null = null;
  // A SIGHUP while the policies load (seconds, for a large set) asks for the files as they are then: kept for when the server is up.
  let reloadAskedWhileStarting = false;
  process.on('SIGHUP', () => {
    if (onReload) {
      logger.info('SIGHUP: reloading policies');
      onReload();
    } else if (started === null) {
      reloadAskedWhileStarting = true;
      logger.info('SIGHUP while starting: the policies are reloaded once verdict serves');
    } else {
      logger.info('SIGHUP: reloading policies');
      reloadServedPolicies(started);
    }
  });

  if (config.workers > 1 && !isClusterWorker()) {
    return runClusterPrimary(config, logger, io, (stop) => (onStop = stop), (reload) => {
      onReload = reload;
      if (reloadAskedWhileStarting) reload();
    }, () => stopSignal, () => faulted);
  }
  // A cluster worker whose primary is gone has no decision log; node's cluster module ends it at once.

  let server: RunningServer;
  try {
    server = isClusterWorker() ? await startWorker(config, logger) : await startServer(config, logger);
  } catch (error) {
    io.stderr(`verdict serve: ${messageOf(error)}\n`);
    logger.flush();
    // A cluster worker's IPC channel would keep it running; its exit code tells the primary why it could not start.
    if (isClusterWorker()) leaveCluster();
    return startFailureExit(error);
  }
  started = server;
  if (reloadAskedWhileStarting) reloadServedPolicies(server);

  return new Promise<number>((resolve) => {
    onStop = (signal) => {
      logger.info({ signal }, 'shutting down: finishing in-flight checks and flushing the decision log');
      server
        .close()
        .then(() => {
          logger.info('stopped');
          resolve(faulted ? EXIT.SERVER : EXIT.OK);
        })
        .catch((error: unknown) => {
          logger.error({ error: messageOf(error) }, 'shutdown did not complete cleanly');
          resolve(EXIT.SERVER);
        })
        .finally(() => {
          logger.flush();
          // A cluster worker's IPC channel would keep it running.
          if (isClusterWorker()) leaveCluster();
        });
    };
    if (stopSignal !== null) onStop(stopSignal);
  });
}

/** `--workers N`: this process forks the workers and writes the decision log (server/cluster.ts). */
async function runClusterPrimary(
  config: ServerConfig,
  logger: Logger,
  io: CommandIO,
  setOnStop: (stop: (signal: string) => void) => void,
  setOnReload: (reload: () => void) => void,
  stopSignal: () => string | null,
  faulted: () => boolean,
): Promise<number> {
  const stopRequested = new Promise<string>((resolve) => {
    setOnStop(resolve);
    const early = stopSignal();
    if (early !== null) resolve(early);
  });
  try {
    const outcome = await runPrimary(config, logger, { stopRequested, onReloadRequest: setOnReload });
    if (outcome.workerExitCode !== null) return outcome.workerExitCode === 0 ? EXIT.SERVER : outcome.workerExitCode;
    if (outcome.error !== null) {
      io.stderr(`verdict serve: ${outcome.error.message}\n`);
      return EXIT.SERVER;
    }
    logger.info('stopped');
    return faulted() ? EXIT.SERVER : EXIT.OK;
  } catch (error) {
    io.stderr(`verdict serve: ${messageOf(error)}\n`);
    return startFailureExit(error);
  } finally {
    logger.flush();
  }
}

/** The exit code for a server that could not start: 2 configuration, 3 policies, 5 anything else. */
function startFailureExit(error: unknown): number {
  const code = error instanceof VerdictError ? error.code : null;
  if (code === 'CONFIG_INVALID') return EXIT.USAGE;
  return code === 'POLICY_INVALID' || code === 'POLICY_DIR_MISSING' ? EXIT.POLICY_INVALID : EXIT.SERVER;
}
