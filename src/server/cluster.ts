import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Alert } from '../analysis/alert.js';
import type { CallMeta, SettleOutcome } from '../decide/index.js';
import { observeRows } from '../analysis/observed-row.js';
import { loadTlsMaterial } from '../authn/mtls.js';
import { loadAudit } from '../decisions/audit-setup.js';
import { DecisionLogClient } from '../decisions/log-client.js';
import { serveWriter } from '../decisions/log-host.js';
import { fromWire, toWire, type LogChannel, type WireError } from '../decisions/log-protocol.js';
import type { RowValue } from '../decisions/columns.js';
import type { LogWriter } from '../decisions/writer.js';
import { lockDecisionLog } from '../decisions/lock.js';
import { openWriter } from '../decisions/writer-thread.js';
import { VerdictError, messageOf } from '../errors.js';
import { LoadBoard } from '../limits/load.js';
import { reloadServedPolicies, startAlerts, startServer, writerSettings, type RunningServer } from './app.js';
import type { ServerConfig } from './config.js';
import type { Logger } from './logger.js';
import { ServerMetrics } from './metrics.js';
import { PolicyStore } from './policy-store.js';

/**
 * `verdict serve --workers N`: N worker processes answer checks on shared
 * ports (node's cluster module), and the primary process is the one writer of
 * the decision log. Every worker's rows reach the primary over IPC, one
 * message per event-loop turn of that worker, and messages that arrive
 * together share one transaction: there is one file and one hash chain, and
 * `verdict audit verify` and `verdict decisions` work as for one process.
 *
 * The primary also runs the anomaly detectors, over every worker's rows in the
 * order they are committed (the log's order, as `verdict analyze` reads it), so
 * a threshold counts a principal's requests through every worker together. It
 * stores each alert and passes it to every worker for WatchAlerts; one of them
 * (the first serving) also sends the webhooks and suspends, and the others take
 * the suspension up from the shared table within a second.
 *
 * The primary hands out connections round-robin, and a connection stays with
 * the worker that accepted it: a gateway uses all the workers only if it opens
 * several connections (HTTP/2 multiplexes every call of a channel over one).
 *
 * The messages below share the IPC channel with the decision log's own
 * (log-protocol.ts); each side ignores the other's.
 */
type ClusterMessage =
  /** worker → primary: started, on these ports. */
  | { readonly t: 'cluster:serving'; readonly grpcPort: number; readonly httpPort: number; readonly opsPort: number | null }
  /** worker → primary: an Admin Reload succeeded here; reload the others. */
  | { readonly t: 'cluster:reload-all' }
  /** primary → worker: reload the policies. */
  | { readonly t: 'cluster:reload' }
  /** worker → primary: may I compile a reload now? */
  | { readonly t: 'cluster:turn' }
  /** primary → worker: yes; say when done. */
  | { readonly t: 'cluster:turn-granted' }
  /** worker → primary: done. */
  | { readonly t: 'cluster:turn-returned' }
  /** worker → primary: the metrics of the whole cluster, please (for a /metrics request). */
  | { readonly t: 'cluster:metrics'; readonly id: number }
  /** primary → worker: your metrics, please. */
  | { readonly t: 'cluster:collect'; readonly id: number }
  /** worker → primary: mine. */
  | { readonly t: 'cluster:collected'; readonly id: number; readonly metrics: MetricObjectWithValues<MetricValue<string>>[] }
  /** primary → worker: the whole cluster's, as Prometheus text. */
  | { readonly t: 'cluster:metrics-text'; readonly id: number; readonly contentType: string; readonly body: string }
  /** primary → every worker: an alert the detectors raised, for WatchAlerts; `respond`: this worker also runs the webhooks and suspension. */
  | { readonly t: 'cluster:alert'; readonly alert: Alert; readonly respond: boolean }
  /**
   * worker → primary: a ReportLoad taken here; primary → every worker, the one that took it too
   * (and each new one, the loads not stale): take it. The primary's order is the order every
   * worker ends in: two reports of one pool taken at once by two workers each reach the other
   * after its own, and without the echo each worker would keep the other's.
   */
  | { readonly t: 'cluster:load'; readonly pool: string; readonly load: number; readonly reportedAt: number }
  /** worker → primary: a Settle of a decision this worker does not hold; which worker does? */
  | { readonly t: 'cluster:settle-ask'; readonly id: number; readonly settle: PassedSettle }
  /** primary → each other worker: settle it if you hold it. */
  | { readonly t: 'cluster:settle-try'; readonly id: number; readonly settle: PassedSettle }
  /** worker → primary: the decision is held here; may it be settled (is the Settle still waited for)? */
  | { readonly t: 'cluster:settle-held'; readonly id: number }
  /** primary → the holding worker: settle it (`go`), or leave it as it is (the asking worker has answered already). */
  | { readonly t: 'cluster:settle-go'; readonly id: number; readonly go: boolean }
  /** worker → primary: settled (or refused) here, null when not held here. */
  | { readonly t: 'cluster:settle-tried'; readonly id: number; readonly outcome: SettleOutcome | null; readonly error: WireError | null }
  /** primary → the asking worker: a worker holds the decision and settles it now; its answer is waited for however long it takes. */
  | { readonly t: 'cluster:settle-claimed'; readonly id: number }
  /** primary → the asking worker: the holder's outcome, null when no worker holds it. */
  | { readonly t: 'cluster:settle-answer'; readonly id: number; readonly outcome: SettleOutcome | null; readonly error: WireError | null };

/** A Settle passed from the worker that took it to the others. */
interface PassedSettle {
  readonly decisionId: string;
  readonly actualUnits: number;
  readonly meta: CallMeta;
}

/**
 * How long the workers are given to say whether they hold a decision a Settle names.
 * Once one has said it holds it, it is waited for (a Settle may take as long as its row
 * takes to write); one that says so after this is told not to settle it.
 */
const SETTLE_ASK_TIMEOUT_MS = 5_000;

const COLLECT_TIMEOUT_MS = 2_000;
/** A worker holding the reload turn longer than this is passed over, so one stuck worker cannot stop the others reloading. */
const TURN_TIMEOUT_MS = 120_000;
/** More unexpected worker exits than this within RESTART_WINDOW_MS stops the server instead of restarting forever. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;

export const isClusterWorker = (): boolean => cluster.isWorker;

/**
 * A worker's way out: closes the IPC channel so the process can end with its
 * own exit code (a bare process.disconnect() makes node's cluster exit it with 0).
 */
export function leaveCluster(): void {
  cluster.worker?.disconnect();
}

/** What the primary is told from outside: when to stop, and what to do on a reload request. */
export interface PrimaryControl {
  /** Resolves with the reason (a signal's name) when the server should stop. */
  readonly stopRequested: Promise<string>;
  /** Registers what to do when the operator asks for a reload (SIGHUP). */
  onReloadRequest(reload: () => void): void;
}

/**
 * How the primary ended: `error` when it could not start or stop cleanly;
 * `workerExitCode` when a worker could not start (it printed why).
 */
export interface PrimaryOutcome {
  readonly error: VerdictError | null;
  readonly workerExitCode: number | null;
}

/**
 * Run the primary: check the policies and open the decision log (so that a
 * bad start fails here, with its own exit code), fork the workers, serve their
 * rows, restart a worker that dies, and once `control.stopRequested` resolves
 * shut the workers down before closing the log. Resolves with how it ended.
 * @throws VerdictError when the policies are invalid or the decision log cannot be opened (nothing forked yet)
 */
export async function runPrimary(config: ServerConfig, logger: Logger, control: PrimaryControl): Promise<PrimaryOutcome> {
  // The workers load these themselves; checking here makes a bad start fail once, with its own exit code, before anything forks.
  if (config.tls) loadTlsMaterial(config.tls);
  const checked = await PolicyStore.open(config.policies);
  const limitCount = checked.current.limits.length;
  await checked.close();
  if (limitCount > 0 && config.limits.backend === 'memory') {
    // Each worker keeps its own budgets in memory: a key may take up to N times its budget.
    logger.warn(
      { workers: config.workers, limits: limitCount, backend: 'memory' },
      'rate limits are counted by each worker on its own (a key may take up to workers × its budget); set limits.backend: redis for one budget',
    );
  }
  // One server per log: a second one on the same --db is refused before it touches the log or its keys.
  const lock = lockDecisionLog(config.db);
  let log: LogWriter;
  try {
    const audit = loadAudit(config);
    for (const note of audit.notes) logger[note.level]({ db: config.db }, note.message);
    log = openWriter(writerSettings(config, audit));
  } catch (error) {
    lock.release();
    throw error;
  }
  const metrics = new ServerMetrics();
  metrics.setReplica(config.replicaId);
  metrics.setLogHealthy(log.healthy);
  log.onCommit(({ rows, durationMs }) => metrics.observeCommit(rows, durationMs / 1000));
  log.onHealthChange(({ healthy, lastError }) => {
    metrics.setLogHealthy(healthy);
    if (healthy) logger.info({ db: config.db }, 'decision log writable again');
    else logger.error({ db: config.db, error: lastError }, 'decision log cannot be written; workers refuse checks until it can');
  });

  cluster.setupPrimary({ serialization: 'advanced' });
  const workers = new Set<Worker>();
  /** Workers that have started serving, oldest first: the first of them answers alerts (webhooks, suspension). */
  const servingWorkers = new Set<Worker>();
  // The loads ReportLoad reported through any worker, for workers that start later.
  const loads = new LoadBoard(config.limits.loadStaleAfterMs);
  const detection = config.alerts.enabled === false ? null : startAlerts(config, { appendAlerts: (rows) => log.writeAlerts(rows) }, metrics, logger);
  detection?.fanout.add({
    publish: (alert) => {
      let responder: Worker | null = null;
      for (const worker of servingWorkers) {
        if (worker.isConnected()) {
          responder = worker;
          break;
        }
      }
      if (responder === null) logger.warn({ alertId: alert.id }, 'no worker is serving to send this alert\'s webhooks or suspend its principal; it is stored');
      for (const worker of workers) reply(worker, { t: 'cluster:alert', alert, respond: worker === responder });
    },
  });
  const observe = detection === null ? null : (values: readonly RowValue[], refused: ReadonlySet<number>): void => observeRows(values, refused, (decision) => detection.detectors.observe(decision));
  let stopping = false;
  let collectId = 0;
  const collecting = new Map<number, { pending: Set<Worker>; results: MetricObjectWithValues<MetricValue<string>>[][]; done: () => void }>();
  const restarts: number[] = [];
  let gaveUp = false;

  const broadcast = (message: ClusterMessage, except?: Worker): void => {
    for (const worker of workers) if (worker !== except) reply(worker, message);
  };
  const turns = new ReloadTurns(logger);
  const settles = new SettleAsks();

  /** Every worker's metrics and the primary's own (the decision log's commits), summed by prom-client. */
  const clusterMetrics = async (): Promise<{ contentType: string; body: string }> => {
    const id = ++collectId;
    const results: MetricObjectWithValues<MetricValue<string>>[][] = [await metrics.registry.getMetricsAsJSON()];
    const pending = new Set([...workers].filter((w) => w.isConnected()));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, COLLECT_TIMEOUT_MS);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      collecting.set(id, { pending, results, done });
      for (const worker of pending) worker.send({ t: 'cluster:collect', id } satisfies ClusterMessage);
      if (pending.size === 0) done();
    });
    collecting.delete(id);
    // A worker that did not answer in time is left out: say so, or its counters would seem to have reset.
    if (pending.size > 0) logger.warn({ missing: [...pending].map((w) => w.process.pid) }, '/metrics: some workers did not answer in time; their figures are missing from this scrape');
    const registry = AggregatorRegistry.aggregate(results);
    return { contentType: registry.contentType, body: await registry.metrics() };
  };

  let started = 0;
  /** Set once every first worker serves; from then on a worker that exits, even before serving, is replaced. */
  let running = false;
  let ports: { grpcPort: number; httpPort: number; opsPort: number | null } | null = null;
  let workerExitCode: number | null = null;
  /** Settles once every first worker serves (true) or one of them could not start (false). */
  let settleStart: (allServe: boolean) => void = () => undefined;
  const allServing = new Promise<boolean>((resolve) => {
    settleStart = resolve;
  });

  const fork = (): Worker => {
    const worker = cluster.fork();
    workers.add(worker);
    let serving = false;
    serveWriter(log, primaryChannel(worker), { forwardCommits: false, closable: false, ...(observe === null ? {} : { onWritten: observe }) });
    // A send to a worker that has just died fails with EPIPE as an 'error' event; unhandled, it would end the primary.
    worker.on('error', (error) => logger.warn({ pid: worker.process.pid, error: messageOf(error) }, 'could not reach a worker'));
    worker.on('message', (raw: unknown) => {
      const message = raw as ClusterMessage;
      switch (message?.t) {
        case 'cluster:serving':
          serving = true;
          servingWorkers.add(worker);
          for (const report of loads.current()) worker.send({ t: 'cluster:load', ...report } satisfies ClusterMessage);
          started += 1;
          if (started >= config.workers) settleStart(true);
          ports ??= { grpcPort: message.grpcPort, httpPort: message.httpPort, opsPort: message.opsPort };
          return;
        case 'cluster:reload-all':
          broadcast({ t: 'cluster:reload' }, worker);
          return;
        case 'cluster:load':
          if (loads.report(message.pool, message.load, message.reportedAt)) broadcast(message);
          return;
        case 'cluster:settle-ask':
          settles.ask(worker, message.id, message.settle, [...workers].filter((w) => w !== worker && w.isConnected()));
          return;
        case 'cluster:settle-held':
          settles.held(worker, message.id);
          return;
        case 'cluster:settle-tried':
          settles.tried(worker, message.id, message.outcome, message.error);
          return;
        case 'cluster:turn':
          turns.request(worker);
          return;
        case 'cluster:turn-returned':
          turns.returned(worker);
          return;
        case 'cluster:metrics':
          clusterMetrics().then(
            ({ contentType, body }) => worker.isConnected() && worker.send({ t: 'cluster:metrics-text', id: message.id, contentType, body } satisfies ClusterMessage),
            (error: unknown) => logger.error({ error: messageOf(error) }, 'could not collect the workers\' metrics'),
          );
          return;
        case 'cluster:collected': {
          const round = collecting.get(message.id);
          if (round === undefined || !round.pending.delete(worker)) return;
          round.results.push(message.metrics);
          if (round.pending.size === 0) round.done();
          return;
        }
        default:
      }
    });
    worker.once('exit', (code, signal) => {
      workers.delete(worker);
      servingWorkers.delete(worker);
      settles.gone(worker);
      turns.returned(worker);
      for (const round of collecting.values()) if (round.pending.delete(worker) && round.pending.size === 0) round.done();
      if (stopping) return;
      if (!serving && !running) {
        // It printed why (port in use, say); starting more would fail alike.
        workerExitCode = code;
        settleStart(false);
        return;
      }
      const now = Date.now();
      restarts.push(now);
      while (restarts.length > 0 && restarts[0]! < now - RESTART_WINDOW_MS) restarts.shift();
      if (restarts.length > MAX_RESTARTS) {
        logger.fatal({ pid: worker.process.pid, code, signal }, `workers keep exiting (${restarts.length} in ${RESTART_WINDOW_MS / 1000} s); stopping`);
        gaveUp = true;
        requestStop('workers keep exiting');
        return;
      }
      logger.error({ pid: worker.process.pid, code, signal, serving }, 'a worker exited; starting a new one');
      fork();
    });
    return worker;
  };

  let stopResolve: ((reason: string) => void) | null = null;
  const stopped = Promise.race([
    control.stopRequested,
    new Promise<string>((resolve) => {
      stopResolve = resolve;
    }),
  ]);
  const requestStop = (reason: string): void => stopResolve?.(reason);
  control.onReloadRequest(() => broadcast({ t: 'cluster:reload' }));

  for (let i = 0; i < config.workers; i += 1) fork();
  const ok = await Promise.race([allServing, stopped.then(() => false)]);
  running = ok;
  if (ok) {
    logger.info(
      { grpc: `${hostOf(config.grpc)}:${ports!.grpcPort}`, http: `${hostOf(config.http)}:${ports!.httpPort}`, ops: config.ops === null ? null : `${hostOf(config.ops)}:${ports!.opsPort}`, workers: config.workers, pids: [...workers].map((w) => w.process.pid), policies: config.policies, db: config.db, decisionLog: config.decisionLog, replica: config.replicaId },
      'verdict serving',
    );
    const reason = await stopped;
    logger.info({ reason }, 'shutting down: stopping the workers, then closing the decision log');
  }
  stopping = true;
  await stopWorkers(workers, config.shutdownGraceMs);
  let error: VerdictError | null = null;
  try {
    // The workers' last rows may have raised alerts: stored before the log closes.
    await detection?.stored.flush();
    await log.close();
  } catch (cause) {
    error = cause instanceof VerdictError ? cause : new VerdictError('DECISION_LOG_UNAVAILABLE', messageOf(cause));
  }
  lock.release();
  if (gaveUp) error ??= new VerdictError('INTERNAL', 'workers kept exiting; see the log above for why');
  return { error, workerExitCode: ok ? null : workerExitCode };
}

/**
 * Workers compile a policy reload one at a time: a change seen by every worker (a
 * watched file, SIGHUP, an Admin reload passed on) is compiled by one while the
 * others keep answering with the set they have, then by the next.
 */
class ReloadTurns {
  private holder: Worker | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly waiting: Worker[] = [];

  constructor(private readonly logger: Logger) {}

  request(worker: Worker): void {
    if (this.holder === worker || this.waiting.includes(worker)) return;
    this.waiting.push(worker);
    this.next();
  }

  returned(worker: Worker): void {
    const queued = this.waiting.indexOf(worker);
    if (queued !== -1) this.waiting.splice(queued, 1);
    if (this.holder !== worker) return;
    this.logger.debug({ pid: worker.process.pid }, 'policy reload turn returned');
    this.holder = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.next();
  }

  private next(): void {
    if (this.holder !== null) return;
    const worker = this.waiting.shift();
    if (worker === undefined) return;
    if (!worker.isConnected()) return this.next();
    this.holder = worker;
    this.logger.debug({ pid: worker.process.pid, waiting: this.waiting.length }, 'policy reload turn granted');
    this.timer = setTimeout(() => {
      this.logger.warn({ pid: worker.process.pid, seconds: TURN_TIMEOUT_MS / 1000 }, 'a worker held the policy reload turn too long; passing it on');
      this.returned(worker);
    }, TURN_TIMEOUT_MS);
    this.timer.unref();
    worker.send({ t: 'cluster:turn-granted' } satisfies ClusterMessage);
  }
}

/**
 * Settles passed around the workers: a worker that takes a Settle of a decision it
 * did not make asks here; every other worker is asked to settle it if it holds it
 * (only the one that decided it can: what the decision reserved is kept there). The
 * one that holds it says so first (held), and settles it only once told to go: the
 * first to say so while the Settle is still waited for; from then on its answer is
 * waited for, and is the answer (decision ids are one worker's own, so none other
 * holds it). Null once every one said it does not hold it, or left; an error when some
 * did not say in time (nothing settled: a worker that says it holds it later is told
 * not to go, so the Settle answered unavailable leaves the decision open), or when the
 * holder left before answering.
 */
class SettleAsks {
  private next = 0;
  private readonly open = new Map<number, { readonly from: Worker; readonly fromId: number; readonly waiting: Set<Worker>; timer: NodeJS.Timeout | null; holder: Worker | null }>();

  ask(from: Worker, fromId: number, settle: PassedSettle, others: readonly Worker[]): void {
    if (others.length === 0) {
      reply(from, { t: 'cluster:settle-answer', id: fromId, outcome: null, error: null });
      return;
    }
    const id = ++this.next;
    const timer = setTimeout(() => this.finish(id, null, { code: 'INTERNAL', message: `a worker did not say in time whether it holds decision ${settle.decisionId}` }), SETTLE_ASK_TIMEOUT_MS);
    timer.unref();
    this.open.set(id, { from, fromId, waiting: new Set(others), timer, holder: null });
    for (const worker of others) reply(worker, { t: 'cluster:settle-try', id, settle });
  }

  /** `worker` holds the decision: it may settle it if the Settle is still waited for and no other worker claimed it. */
  held(worker: Worker, id: number): void {
    const ask = this.open.get(id);
    const go = ask !== undefined && ask.holder === null && ask.waiting.has(worker);
    if (go) {
      ask.holder = worker;
      if (ask.timer !== null) clearTimeout(ask.timer);
      ask.timer = null;
      reply(ask.from, { t: 'cluster:settle-claimed', id: ask.fromId });
    }
    reply(worker, { t: 'cluster:settle-go', id, go });
  }

  tried(worker: Worker, id: number, outcome: SettleOutcome | null, error: WireError | null): void {
    const ask = this.open.get(id);
    if (ask === undefined) return;
    if (ask.holder !== null) {
      if (worker === ask.holder) this.finish(id, outcome, error);
      return;
    }
    if (!ask.waiting.delete(worker)) return;
    if (outcome !== null || error !== null) this.finish(id, outcome, error);
    else if (ask.waiting.size === 0) this.finish(id, null, null);
  }

  /** A worker left: it holds nothing any more; an ask it made is dropped (nobody to answer). */
  gone(worker: Worker): void {
    for (const [id, ask] of this.open) {
      if (ask.from === worker) {
        if (ask.timer !== null) clearTimeout(ask.timer);
        this.open.delete(id);
      } else if (ask.holder === worker) {
        // It may have corrected the budget (one kept in Redis) before it left: not known, so not NOT_FOUND.
        this.finish(id, null, { code: 'INTERNAL', message: 'the worker holding the decision left before it answered' });
      } else if (ask.waiting.delete(worker) && ask.waiting.size === 0 && ask.holder === null) {
        this.finish(id, null, null);
      }
    }
  }

  private finish(id: number, outcome: SettleOutcome | null, error: WireError | null): void {
    const ask = this.open.get(id);
    if (ask === undefined) return;
    if (ask.timer !== null) clearTimeout(ask.timer);
    this.open.delete(id);
    reply(ask.from, { t: 'cluster:settle-answer', id: ask.fromId, outcome, error });
  }
}

/** Sends to a worker that is still there (a send to one that has gone fails). */
function reply(worker: Worker, message: ClusterMessage): void {
  if (worker.isConnected()) worker.send(message);
}

/** SIGTERM each worker (they finish their in-flight checks and flush), then SIGKILL any still running after the grace. */
async function stopWorkers(workers: Set<Worker>, graceMs: number): Promise<void> {
  const exits = [...workers].map(
    (worker) =>
      new Promise<void>((resolve) => {
        if (worker.process.exitCode !== null || worker.process.signalCode !== null) return resolve();
        worker.once('exit', () => resolve());
        const timer = setTimeout(() => worker.process.kill('SIGKILL'), graceMs + 5_000);
        timer.unref();
        worker.process.kill('SIGTERM');
      }),
  );
  await Promise.all(exits);
}

/**
 * Run one worker: the usual server, recording through the primary's writer.
 * Its Admin Reloads reach the other workers through the primary, and its
 * /metrics answers for the whole cluster.
 */
export async function startWorker(config: ServerConfig, logger: Logger): Promise<RunningServer> {
  const send = (message: ClusterMessage): void => {
    if (process.connected) process.send?.(message);
  };
  let server: RunningServer | null = null;
  let reloadWhenServing = false;
  let nextId = 0;
  const waiting = new Map<number, (text: { contentType: string; body: string }) => void>();
  let turnGranted: (() => void) | null = null;
  let nextSettle = 0;
  const settling = new Map<number, { readonly answered: (outcome: SettleOutcome | null, error: WireError | null) => void; timer: NodeJS.Timeout | null }>();
  /** Settles this worker holds and was asked for, waiting for the primary's go (cluster:settle-go). */
  const goes = new Map<number, (go: boolean) => void>();
  /** Asks the other workers (through the primary) to settle a decision this one does not hold. */
  const settleElsewhere = (decisionId: string, actualUnits: number, meta: CallMeta): Promise<SettleOutcome | null> =>
    new Promise((resolve, reject) => {
      const id = ++nextSettle;
      const timer = setTimeout(() => {
        settling.delete(id);
        reject(new VerdictError('INTERNAL', 'the primary did not say in time which worker holds the decision'));
      }, SETTLE_ASK_TIMEOUT_MS * 2);
      settling.set(id, {
        timer,
        answered: (outcome, error) => {
          const ask = settling.get(id);
          if (ask?.timer) clearTimeout(ask.timer);
          settling.delete(id);
          if (error !== null) reject(fromWire(error));
          else resolve(outcome);
        },
      });
      if (process.connected) send({ t: 'cluster:settle-ask', id, settle: { decisionId, actualUnits, meta } });
      else settling.get(id)?.answered(null, { code: 'INTERNAL', message: 'the primary process is gone' });
    });
  process.on('message', (raw: unknown) => {
    const message = raw as ClusterMessage;
    switch (message?.t) {
      case 'cluster:reload':
        // Asked while this worker still loads its policies: the files may have changed since it read them.
        if (server === null) reloadWhenServing = true;
        else reloadServedPolicies(server);
        return;
      case 'cluster:turn-granted':
        turnGranted?.();
        turnGranted = null;
        return;
      case 'cluster:collect':
        // A worker still starting has nothing to add, and says so at once rather than let the scrape wait.
        if (server === null) send({ t: 'cluster:collected', id: message.id, metrics: [] });
        else void server.metrics.registry.getMetricsAsJSON().then((metrics) => send({ t: 'cluster:collected', id: message.id, metrics }));
        return;
      case 'cluster:load':
        server?.loadBoard.report(message.pool, message.load, message.reportedAt);
        return;
      case 'cluster:settle-try': {
        const { id } = message;
        const answer = (outcome: SettleOutcome | null, error: WireError | null): void => send({ t: 'cluster:settle-tried', id, outcome, error });
        // Held here, it is settled only once the primary says the Settle is still waited for.
        const claim = (): Promise<boolean> =>
          new Promise((resolve) => {
            goes.set(id, resolve);
            send({ t: 'cluster:settle-held', id });
          });
        if (server === null) answer(null, null);
        else
          server.settleIfHeld(message.settle.decisionId, message.settle.actualUnits, message.settle.meta, claim).then(
            (outcome) => answer(outcome, null),
            (error: unknown) => answer(null, toWire(error)),
          );
        return;
      }
      case 'cluster:settle-go':
        goes.get(message.id)?.(message.go);
        goes.delete(message.id);
        return;
      case 'cluster:settle-claimed': {
        // The holder settles it now: its answer is waited for as long as its row takes.
        const ask = settling.get(message.id);
        if (ask?.timer) clearTimeout(ask.timer);
        if (ask) ask.timer = null;
        return;
      }
      case 'cluster:settle-answer':
        settling.get(message.id)?.answered(message.outcome, message.error);
        return;
      case 'cluster:alert':
        server?.alerts?.fanout.publish(message.alert);
        if (message.respond) server?.publishAlert(message.alert);
        return;
      case 'cluster:metrics-text':
        waiting.get(message.id)?.({ contentType: message.contentType, body: message.body });
        waiting.delete(message.id);
        return;
      default:
    }
  });
  server = await startServer(config, logger, {
    openLog: (sensitive) => DecisionLogClient.connect(workerChannel(), { path: config.db, mode: config.decisionLog, sensitive, ownsLog: false }),
    onAdminReload: () => send({ t: 'cluster:reload-all' }),
    // The store runs one reload at a time, so one turn is asked for at a time.
    reloadTurn: () =>
      new Promise((resolve) => {
        if (!process.connected) return resolve(() => undefined);
        turnGranted = () => resolve(() => send({ t: 'cluster:turn-returned' }));
        send({ t: 'cluster:turn' });
      }),
    servingMessage: 'worker serving',
    relayAlerts: true,
    onLoadReport: (pool, load) => send({ t: 'cluster:load', pool, load, reportedAt: Date.now() }),
    settleElsewhere,
    collectMetrics: () =>
      new Promise((resolve, reject) => {
        const id = ++nextId;
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new VerdictError('INTERNAL', 'the primary did not answer for the cluster\'s metrics in time'));
        }, COLLECT_TIMEOUT_MS * 2);
        waiting.set(id, (text) => {
          clearTimeout(timer);
          resolve(text);
        });
        send({ t: 'cluster:metrics', id });
      }),
  });
  if (reloadWhenServing) reloadServedPolicies(server);
  send({ t: 'cluster:serving', grpcPort: server.grpcPort, httpPort: server.httpPort, opsPort: server.opsPort });
  return server;
}

/** The primary's side of one worker's IPC channel. */
function primaryChannel(worker: Worker): LogChannel {
  return {
    post: (message) => {
      if (worker.isConnected()) worker.send(message);
    },
    listen: (handler) => worker.on('message', handler),
    onGone: (handler) => worker.once('disconnect', () => handler('the worker disconnected')),
  };
}

/** A worker's side of its IPC channel to the primary. */
function workerChannel(): LogChannel {
  return {
    post: (message) => {
      if (!process.connected || process.send === undefined) throw new Error('the primary process is gone');
      process.send(message);
    },
    listen: (handler) => process.on('message', handler),
    onGone: (handler) => process.once('disconnect', () => handler('the primary process is gone')),
  };
}

function hostOf(address: string): string {
  return address.slice(0, address.lastIndexOf(':'));
}
