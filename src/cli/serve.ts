import { VerdictError, messageOf } from '../errors.js';
import { startServer } from '../server/app.js';
import { ENVIRONMENT_KEYS, parseFlagsLayer, readConfigFile, readEnvironment, resolveConfig, type PartialConfig } from '../server/config.js';
import { createLogger } from '../server/logger.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';

const HELP = `Usage: verdict serve [options]

Serves decisions over gRPC (verdict.v1.Authorization, Admin, health, reflection)
and /healthz, /readyz, /metrics over HTTP. Every decision is committed to the
SQLite decision log before its answer leaves.

Options (each also a key of the --config file and an environment variable):
  --config FILE              YAML file with any of the keys below
  --policies DIR             policy directory            (policies)            ${ENVIRONMENT_KEYS.policies}
  --db FILE                  decision log                (data/decisions.db)   ${ENVIRONMENT_KEYS.db}
  --grpc HOST:PORT           gRPC address                (127.0.0.1:50051)     ${ENVIRONMENT_KEYS.grpc}
  --http HOST:PORT           health and metrics address  (127.0.0.1:9464)      ${ENVIRONMENT_KEYS.http}
  --decision-log MODE        durable | async             (durable)             ${ENVIRONMENT_KEYS.decisionLog}
  --max-message-bytes N      largest accepted request    (1048576)             ${ENVIRONMENT_KEYS.maxMessageBytes}
  --log-level LEVEL          trace..fatal | silent       (info)                ${ENVIRONMENT_KEYS.logLevel}
  --no-watch                 do not reload when policy files change            ${ENVIRONMENT_KEYS.watch}=false
  --shutdown-grace-ms N      wait for in-flight checks on SIGTERM (10000)      ${ENVIRONMENT_KEYS.shutdownGraceMs}

Precedence: flags, then environment, then the config file, then the defaults.
Signals: SIGHUP reloads the policies; SIGTERM or SIGINT stops accepting, finishes
in-flight checks, flushes the decision log and exits 0.

Exit codes: 0 stopped cleanly, 2 usage or configuration error, 3 invalid policies,
5 could not start (port in use, decision log unavailable).
`;

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
      'decision-log': { type: 'string' },
      'max-message-bytes': { type: 'string' },
      'log-level': { type: 'string' },
      'no-watch': { type: 'boolean' },
      'shutdown-grace-ms': { type: 'string' },
    },
    false,
  );
  if (values.help) {
    io.stdout(HELP);
    return EXIT.OK;
  }
  let config;
  try {
    const fromFile: PartialConfig = values.config ? readConfigFile(values.config) : {};
    const fromEnv = readEnvironment(process.env);
    const fromFlags = parseFlagsLayer({
      policies: values.policies,
      db: values.db,
      grpc: values.grpc,
      http: values.http,
      decisionLog: values['decision-log'],
      maxMessageBytes: values['max-message-bytes'],
      logLevel: values['log-level'],
      shutdownGraceMs: values['shutdown-grace-ms'],
    });
    config = resolveConfig([fromFile, fromEnv, fromFlags, values['no-watch'] ? { watch: false } : {}]);
  } catch (error) {
    io.stderr(`verdict serve: ${messageOf(error)}\n`);
    return EXIT.USAGE;
  }

  const logger = createLogger(config.logLevel);
  let server;
  try {
    server = await startServer(config, logger);
  } catch (error) {
    const code = error instanceof VerdictError ? error.code : null;
    io.stderr(`verdict serve: ${messageOf(error)}\n`);
    logger.flush();
    return code === 'POLICY_INVALID' || code === 'POLICY_DIR_MISSING' ? EXIT.POLICY_INVALID : EXIT.SERVER;
  }

  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'shutting down: finishing in-flight checks and flushing the decision log');
      server
        .close()
        .then(() => {
          logger.info('stopped');
          resolve(EXIT.OK);
        })
        .catch((error: unknown) => {
          logger.error({ error: messageOf(error) }, 'shutdown did not complete cleanly');
          resolve(EXIT.SERVER);
        })
        .finally(() => logger.flush());
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      logger.info('SIGHUP: reloading policies');
      void server.store.reload();
    });
  });
}
