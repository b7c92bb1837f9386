import { DecisionLog } from '../decisions/log.js';
import { messageOf } from '../errors.js';
import type { ServerConfig } from './config.js';
import { splitHostPort } from './config.js';
import { DecisionService } from './decision-service.js';
import { AUTHORIZATION_SERVICE } from './grpc/authorization-service.js';
import { createGrpcServer, type GrpcServer } from './grpc/server.js';
import { OperatorHttpServer } from './http.js';
import type { Logger } from './logger.js';
import { ServerMetrics } from './metrics.js';
import { PolicyStore } from './policy-store.js';

/** A running verdict: the ports it bound and how to stop it. */
export interface RunningServer {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly store: PolicyStore;
  readonly log: DecisionLog;
  /** Stop accepting, finish in-flight checks, flush the decision log, close everything. Idempotent. */
  close(): Promise<void>;
}

const PROBE_INTERVAL_MS = 1000;

/**
 * Wires the pieces: policies → engine → decision log → answer, behind gRPC, plus the
 * operator's HTTP port. Fails before binding anything if the policies are invalid
 * or the decision log cannot be opened.
 */
export async function startServer(config: ServerConfig, logger: Logger): Promise<RunningServer> {
  const metrics = new ServerMetrics();
  const store = await PolicyStore.open(config.policies, {
    onReload: (outcome, status) => {
      metrics.observeReload(outcome.ok);
      if (outcome.ok) {
        metrics.setPolicy(status.version, status.ruleCount);
        logger.info({ version: outcome.version, changed: outcome.changed, rules: status.ruleCount }, 'policies reloaded');
      } else {
        logger.error({ error: outcome.error, serving: status.version }, 'policy reload refused; still serving the last good set');
      }
    },
  });
  metrics.setPolicy(store.current.version, store.current.rules.length);

  const log = DecisionLog.open(config.db, { mode: config.decisionLog });
  metrics.setLogHealthy(true);
  log.onCommit(({ rows, durationMs }) => metrics.observeCommit(rows, durationMs / 1000));

  const service = new DecisionService(store, log, metrics);
  const grpc: GrpcServer = createGrpcServer(service, {
    maxReceiveMessageBytes: config.maxMessageBytes,
    shutdownTimeoutMs: config.shutdownGraceMs,
    onInternalError: (error, method) => logger.error({ method, error: messageOf(error) }, 'internal error answering a call'),
  });

  // While the log cannot be written, checks fail closed and health says so; a probe notices recovery.
  let probeTimer: NodeJS.Timeout | null = null;
  log.onHealthChange(({ healthy, lastError }) => {
    metrics.setLogHealthy(healthy);
    const status = healthy ? 'SERVING' : 'NOT_SERVING';
    grpc.health.setStatus('', status);
    grpc.health.setStatus(AUTHORIZATION_SERVICE, status);
    if (healthy) {
      logger.info({ db: config.db }, 'decision log writable again; serving checks');
      if (probeTimer) clearInterval(probeTimer);
      probeTimer = null;
    } else {
      logger.error({ db: config.db, error: lastError }, 'decision log cannot be written; refusing checks until it can');
      probeTimer ??= setInterval(() => log.probe(), PROBE_INTERVAL_MS);
      probeTimer.unref();
    }
  });

  const grpcAddress = splitHostPort(config.grpc);
  const httpAddress = splitHostPort(config.http);
  const http = new OperatorHttpServer({
    readiness: () => {
      const status = store.status();
      const ready = log.healthy;
      return {
        ready,
        detail: {
          policyVersion: status.version,
          policyLoadedAt: status.loadedAt.toISOString(),
          lastReloadError: status.lastReloadError,
          decisionLog: { path: config.db, mode: config.decisionLog, healthy: log.healthy, lastError: log.lastError },
        },
      };
    },
    metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
  });

  let grpcPort: number;
  let httpPort: number;
  try {
    grpcPort = await grpc.start(grpcAddress.host, grpcAddress.port);
    httpPort = await http.listen(httpAddress.host, httpAddress.port);
  } catch (error) {
    await grpc.shutdown();
    await http.close().catch(() => undefined);
    await log.close().catch(() => undefined);
    throw error;
  }
  if (config.watch) store.watch();

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      store.close();
      if (probeTimer) clearInterval(probeTimer);
      await grpc.shutdown();
      await http.close();
      service.close();
      await log.close();
    })();
    return closing;
  };

  logger.info(
    { grpc: `${grpcAddress.host}:${grpcPort}`, http: `${httpAddress.host}:${httpPort}`, policies: config.policies, version: store.current.version, rules: store.current.rules.length, db: config.db, decisionLog: config.decisionLog },
    'verdict serving',
  );
  return { grpcPort, httpPort, store, log, close };
}
