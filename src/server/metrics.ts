import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AlertSink } from '../analysis/alert.js';
import { ALERT_TYPES } from '../analysis/detectors.js';
import type { CallMeta, CheckResult, DecisionObserver } from '../decide/index.js';
import type { Effect, Reason } from '../types.js';
import type { LargeMessageCounts } from './grpc/direct-lane.js';

/**
 * The Prometheus metrics verdict exports on /metrics. One registry per server.
 * It observes the decide core (every decision, every one that could not be
 * recorded); the server feeds it the decision log's and the policies' state.
 */
export class ServerMetrics implements DecisionObserver {
  readonly registry = new Registry();
  private readonly decisionSeconds: Histogram;
  private readonly batchRows: Histogram;
  private readonly commitSeconds: Histogram;
  private readonly logFailures: Counter;
  private readonly policyInfo: Gauge<'version'>;
  private readonly replicaInfo: Gauge<'replica'>;
  private readonly shadowDisagreements: Counter<'direction'>;
  private readonly shadowPolicyInfo: Gauge<'version'>;
  private readonly policyRules: Gauge;
  private readonly reloads: Counter<'result'>;
  private readonly reloadSeconds: Histogram;
  private readonly watchFailures: Counter;
  private readonly watching: Gauge;
  private isWatching: () => boolean = () => false;
  private readonly logHealthy: Gauge;
  private currentVersion: string | null = null;
  private currentShadowVersion: string | null = null;
  private fallbacks: Counter<'backend'> | null = null;
  /**
   * Decisions answered since the last scrape, by effect and reason; each scrape adds
   * them to verdict_decisions_total. prom-client builds a string key of the labels on
   * every increment, a bound child's too: counted here, a check allocates nothing for it.
   */
  private readonly uncounted: Record<Effect, Partial<Record<Reason, number>>> = { ALLOW: {}, DENY: {} };

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'verdict_' }); // verdict_process_cpu_seconds_total, verdict_nodejs_heap_size_used_bytes, ...
    const uncounted = this.uncounted;
    new Counter({
      name: 'verdict_decisions_total',
      help: 'Decisions answered, by effect and reason.',
      labelNames: ['effect', 'reason'],
      registers: [this.registry],
      collect() {
        for (const effect of ['ALLOW', 'DENY'] as const) {
          const counts = uncounted[effect];
          for (const reason of Object.keys(counts) as Reason[]) {
            const count = counts[reason] ?? 0;
            if (count === 0) continue;
            this.inc({ effect, reason }, count);
            counts[reason] = 0;
          }
        }
      },
    });
    this.decisionSeconds = new Histogram({
      name: 'verdict_decision_duration_seconds',
      help: 'Time from receiving a check to its answer, decision log commit included.',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: [this.registry],
    });
    this.batchRows = new Histogram({ name: 'verdict_decision_log_batch_rows', help: 'Decisions committed per decision-log transaction.', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registers: [this.registry] });
    this.commitSeconds = new Histogram({ name: 'verdict_decision_log_commit_seconds', help: 'Time to commit one decision-log transaction.', buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers: [this.registry] });
    this.logFailures = new Counter({ name: 'verdict_decision_log_failures_total', help: 'Checks refused because their decision could not be recorded.', registers: [this.registry] });
    // The aggregators say how --workers N sums the processes' values: a gauge of state is not a count.
    this.logHealthy = new Gauge({ name: 'verdict_decision_log_healthy', help: '1 while the decision log can be written, else 0.', registers: [this.registry], aggregator: 'min' });
    // Every worker of a process reports the same id: 'max' keeps one series of value 1.
    this.replicaInfo = new Gauge({ name: 'verdict_replica_info', help: 'The replica id this server records its decisions under (value 1).', labelNames: ['replica'], registers: [this.registry], aggregator: 'max' });
    this.policyInfo = new Gauge({ name: 'verdict_policy_info', help: 'The policy version being served (value 1).', labelNames: ['version'], registers: [this.registry], aggregator: 'max' });
    this.shadowDisagreements = new Counter({
      name: 'verdict_shadow_disagreements_total',
      help: 'Checks the shadow policy set decided otherwise than the live set, by direction (live_to_shadow: ALLOW_TO_DENY or DENY_TO_ALLOW).',
      labelNames: ['direction'],
      registers: [this.registry],
    });
    this.shadowPolicyInfo = new Gauge({ name: 'verdict_shadow_policy_info', help: 'The shadow policy version decided beside the live set (value 1).', labelNames: ['version'], registers: [this.registry], aggregator: 'max' });
    this.policyRules = new Gauge({ name: 'verdict_policy_rules', help: 'Rules in the policy set being served.', registers: [this.registry], aggregator: 'max' });
    this.reloads = new Counter({ name: 'verdict_policy_reloads_total', help: 'Policy reload attempts, by result.', labelNames: ['result'], registers: [this.registry] });
    this.reloads.inc({ result: 'success' }, 0);
    this.reloads.inc({ result: 'failure' }, 0);
    this.reloadSeconds = new Histogram({
      name: 'verdict_policy_reload_seconds',
      help: 'Time from the start of a policy reload to the swap (or the refusal); checks are answered meanwhile.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    this.watchFailures = new Counter({ name: 'verdict_policy_watch_failures_total', help: 'Failures of the policy directory\'s file-system watcher (each is retried; the periodic content check goes on).', registers: [this.registry] });
    const metrics = this;
    this.watching = new Gauge({
      name: 'verdict_policy_watch_events',
      help: '1 while file-system events for the policy directory are delivered, else 0 (not watching, or only the periodic content check).',
      registers: [this.registry],
      aggregator: 'min',
      collect() {
        this.set(metrics.isWatching() ? 1 : 0);
      },
    });
  }

  decided(result: CheckResult, _meta: CallMeta, seconds: number): void {
    const { effect, reason } = result.decision;
    const counts = this.uncounted[effect];
    counts[reason] = (counts[reason] ?? 0) + 1;
    this.decisionSeconds.observe(seconds);
    const shadow = result.decision.shadow;
    if (shadow !== undefined) this.shadowDisagreements.inc({ direction: shadow.effect === 'DENY' ? 'ALLOW_TO_DENY' : 'DENY_TO_ALLOW' });
    const backend = result.decision.limit?.backend;
    if (backend === 'local' || backend === 'open') this.fallbacks?.inc({ backend });
  }

  observeCommit(rows: number, seconds: number): void {
    this.batchRows.observe(rows);
    this.commitSeconds.observe(seconds);
  }

  unrecorded(): void {
    this.logFailures.inc();
  }

  setLogHealthy(healthy: boolean): void {
    this.logHealthy.set(healthy ? 1 : 0);
  }

  /** Set once, at start: the id is configuration, and the log refuses another. */
  setReplica(replicaId: string): void {
    this.replicaInfo.reset();
    this.replicaInfo.set({ replica: replicaId }, 1);
  }

  setPolicy(version: string, rules: number): void {
    if (this.currentVersion !== null) this.policyInfo.remove(this.currentVersion);
    this.currentVersion = version;
    this.policyInfo.set({ version }, 1);
    this.policyRules.set(rules);
  }

  setShadowPolicy(version: string): void {
    if (this.currentShadowVersion !== null) this.shadowPolicyInfo.remove(this.currentShadowVersion);
    this.currentShadowVersion = version;
    this.shadowPolicyInfo.set({ version }, 1);
  }

  observeReload(success: boolean, seconds: number): void {
    this.reloads.inc({ result: success ? 'success' : 'failure' });
    this.reloadSeconds.observe(seconds);
  }

  observeWatchFailure(): void {
    this.watchFailures.inc();
  }

  /**
   * What waits its turn, read at each scrape: batches waiting for room (and the bytes
   * charged to those let in), long calls (batches, evaluations, search pages) waiting
   * for a slice of deciding, and decisions waiting for their row to be written. All grow
   * under a flood of batches; checks keep being answered meanwhile.
   */
  watchQueues(read: { readonly longCallsWaiting: () => number; readonly pendingRows: () => number; readonly batchBytesInFlight: () => number; readonly batchesWaiting: () => number }): void {
    this.sampledSum('verdict_batch_bytes_in_flight', 'Bytes charged to the batches being decided now: what they will record, and 8 KiB an item for their rows until written (bounded by maxBatchBytesInFlight).', read.batchBytesInFlight);
    this.sampledSum('verdict_batches_waiting', 'Batches (CheckBatch, AuthZEN evaluations) waiting for room among the batches being decided (maxBatchBytesInFlight).', read.batchesWaiting);
    this.sampledSum('verdict_long_calls_waiting', 'Batches, evaluations and search pages waiting for their next slice of deciding (one slice per event-loop turn, shared by caller).', read.longCallsWaiting);
    this.sampledSum('verdict_decision_log_rows_pending', 'Decision rows appended and not yet confirmed written (waiting their turn, or with the writer).', read.pendingRows);
  }

  /** gRPC decision calls with a large message (compressed, or 64 KiB or more): being decided, and waiting for their turn (direct-lane.ts). */
  watchLargeMessages(read: () => LargeMessageCounts): void {
    this.sampledSum('verdict_large_messages_in_flight', 'gRPC decision calls with a compressed message or one of 64 KiB or more, being decided and not yet answered (at most 64 per process, half of them from one host).', () => read().inFlight);
    this.sampledSum('verdict_large_messages_waiting', 'gRPC decision calls with a compressed message or one of 64 KiB or more, waiting with the bytes they sent for their turn to be decided.', () => read().waiting);
    this.sampledSum('verdict_large_messages_waiting_bytes', 'Bytes the large messages waiting for their turn hold (at most grpcStreams.maxWaitingBytes, half of it from one host).', () => read().waitingBytes);
    this.sampledTotal('verdict_large_messages_refused_waiting_total', 'Large-message gRPC decision calls answered RESOURCE_EXHAUSTED because waiting for their turn would take the bytes held past grpcStreams.maxWaitingBytes.', () => read().refusedWaiting);
  }

  /** A gauge read from `read` at each scrape, summed across --workers workers. */
  private sampledSum(name: string, help: string, read: () => number): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      aggregator: 'sum',
      collect() {
        this.set(read());
      },
    });
  }

  /** A counter that follows a running total read from `read` at each scrape. */
  private sampledTotal(name: string, help: string, read: () => number): void {
    let reported = 0;
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        const total = read();
        this.inc(total - reported);
        reported = total;
      },
    });
  }

  /** The gRPC port's unread answers: connections closed for them, by why, and the unsent bytes held, read at each scrape. */
  watchUnreadAnswers(answers: { readonly closedStalled: number; readonly closedOverBudget: number; readonly closedConnectionBudget: number; readonly refusedStreams: number; readonly unsentBytes: number }): void {
    this.sampledTotal('verdict_grpc_streams_refused_unread_total', 'gRPC streams refused unread because their connection held more than grpcStreams.maxUnsentBytesPerConnection of answers it had not read.', () => answers.refusedStreams);
    let reported = { send_timeout: 0, over_budget: 0, connection_budget: 0 };
    new Counter({
      name: 'verdict_grpc_connections_closed_unread_total',
      help: 'gRPC connections closed for answers they did not read: send_timeout (none taken in grpcStreams.sendTimeoutMs), connection_budget (past grpcStreams.maxUnsentBytesPerConnection, none taken between two checks), over_budget (all unsent answers past grpcStreams.maxUnsentBytes).',
      labelNames: ['reason'],
      registers: [this.registry],
      collect() {
        this.inc({ reason: 'send_timeout' }, answers.closedStalled - reported.send_timeout);
        this.inc({ reason: 'over_budget' }, answers.closedOverBudget - reported.over_budget);
        this.inc({ reason: 'connection_budget' }, answers.closedConnectionBudget - reported.connection_budget);
        reported = { send_timeout: answers.closedStalled, over_budget: answers.closedOverBudget, connection_budget: answers.closedConnectionBudget };
      },
    });
    new Gauge({
      name: 'verdict_grpc_answer_bytes_unsent',
      help: 'Bytes of gRPC answers written and not yet taken by their callers, all connections together, at the last sweep (bounded by grpcStreams.maxUnsentBytes).',
      registers: [this.registry],
      aggregator: 'sum',
      collect() {
        this.set(answers.unsentBytes);
      },
    });
  }

  /** The gRPC stream guard: streams it ended, by why, and the bytes of bodies still arriving, read at each scrape. */
  watchStreamGuard(guard: { readonly slowBodies: number; readonly overBudget: number; readonly overShare: number; readonly bufferedBytes: number }): void {
    let reported = { slow_body: 0, over_budget: 0, over_share: 0 };
    new Counter({
      name: 'verdict_grpc_streams_ended_total',
      help: 'gRPC streams ended before their request body arrived: slow_body (past grpcStreams.bodyTimeoutMs), over_budget (past grpcStreams.maxBufferedBytes), over_share (the budget full, their host holding the most of it while another host under its fair share needed room).',
      labelNames: ['reason'],
      registers: [this.registry],
      collect() {
        this.inc({ reason: 'slow_body' }, guard.slowBodies - reported.slow_body);
        this.inc({ reason: 'over_budget' }, guard.overBudget - reported.over_budget);
        this.inc({ reason: 'over_share' }, guard.overShare - reported.over_share);
        reported = { slow_body: guard.slowBodies, over_budget: guard.overBudget, over_share: guard.overShare };
      },
    });
    new Gauge({
      name: 'verdict_grpc_body_bytes_arriving',
      help: 'Bytes of gRPC request bodies still arriving, all streams together (capped by grpcStreams.maxBufferedBytes).',
      registers: [this.registry],
      aggregator: 'sum',
      collect() {
        this.set(guard.bufferedBytes);
      },
    });
  }

  /** Settle: decisions held for it, and those evicted before their window ended because the book was full. */
  watchSettlements(book: { readonly size: number; readonly evictions: number }): void {
    new Gauge({ name: 'verdict_settle_pending', help: 'Decisions that reserved a cost and may still be settled.', registers: [this.registry], aggregator: 'sum', collect() { this.set(book.size); } });
    this.sampledTotal('verdict_settle_evictions_total', 'Decisions evicted before their settle window ended because the book was full (taken from the caller holding the most); their Settle finds nothing.', () => book.evictions);
  }

  /**
   * Rate limits: the keys an in-memory store holds and those it evicted while
   * still counting (because it was full), read at each scrape.
   */
  watchLimitStore(store: { readonly size: number; readonly evictions: number }): void {
    new Gauge({
      name: 'verdict_rate_limit_keys',
      help: 'Rate-limit keys held in memory (idle keys expire; the store is capped).',
      registers: [this.registry],
      aggregator: 'sum',
      collect() {
        this.set(store.size);
      },
    });
    this.sampledTotal('verdict_rate_limit_evictions_total', 'Rate-limit keys evicted while still counting because the in-memory store was full (each comes back with a fresh budget).', () => store.evictions);
  }

  /**
   * Anomaly alerts: raised alerts by type (the returned sink counts them), and
   * the detectors' and WatchAlerts' state read at each scrape.
   */
  alertSink(state: {
    readonly evictions: number;
    readonly subjects: number;
    readonly watchers: number;
    readonly droppedWatchers: number;
    /** Failures in names past the threshold not alerted by name (Detectors.summarised). */
    readonly summarised: { readonly tokenSubjects: number; readonly sources: number };
  }): AlertSink {
    const raised = new Counter({ name: 'verdict_alerts_total', help: 'Anomaly alerts raised, by type.', labelNames: ['type'], registers: [this.registry] });
    for (const type of ALERT_TYPES) raised.inc({ type }, 0);
    new Gauge({
      name: 'verdict_alert_detector_subjects',
      help: 'Subjects (principals, principal and model pairs, failing credentials) the anomaly detectors hold state for (capped by alerts.detectors.maxSubjects per kind).',
      registers: [this.registry],
      aggregator: 'sum',
      collect() {
        this.set(state.subjects);
      },
    });
    const counted = (name: string, help: string, read: () => number): void => {
      let reported = 0;
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          const now = read();
          this.inc(now - reported);
          reported = now;
        },
      });
    };
    counted('verdict_alert_detector_evictions_total', 'Detector states evicted (least recently active first) to keep the detectors within alerts.detectors.maxSubjects.', () => state.evictions);
    counted('verdict_alert_watchers_dropped_total', 'WatchAlerts subscribers ended because they fell too far behind.', () => state.droppedWatchers);
    // Read at each scrape, like the evictions: the detectors only add to a number, on failed authentications alone.
    const reported = { 'token-subject': 0, source: 0 };
    new Counter({
      name: 'verdict_alert_auth_failures_summarised_total',
      help: 'Failed authentications in token subjects (kind="token-subject") or sources (kind="source") past alerts.detectors.authFailures.maxFailures that raised no alert of their own, because the window had already raised authFailures.maxAlerts about that kind: the names the many-token-subjects / many-sources alert (id *) stands for.',
      labelNames: ['kind'],
      registers: [this.registry],
      collect() {
        const now = { 'token-subject': state.summarised.tokenSubjects, source: state.summarised.sources };
        for (const kind of ['token-subject', 'source'] as const) {
          this.inc({ kind }, now[kind] - reported[kind]);
          reported[kind] = now[kind];
        }
      },
    });
    new Gauge({ name: 'verdict_alert_watchers', help: 'WatchAlerts subscribers connected.', registers: [this.registry], aggregator: 'sum', collect() { this.set(state.watchers); } });
    return { publish: (alert) => raised.inc({ type: alert.type }) };
  }

  // ------------------------------------------------------------ alert responses (webhooks, suspension)

  private alertResponseMetrics: AlertResponseMetrics | null = null;

  /** The counters of the alert responses (server/webhooks.ts, server/suspension.ts), made on first use. */
  get alertResponses(): AlertResponseMetrics {
    this.alertResponseMetrics ??= {
      webhookDeliveries: new Counter({ name: 'verdict_alert_webhook_deliveries_total', help: 'Alerts a webhook accepted (a 2xx answer), by webhook.', labelNames: ['webhook'], registers: [this.registry] }),
      webhookFailures: new Counter({ name: 'verdict_alert_webhook_failures_total', help: 'Webhook delivery attempts that failed (no answer in time, refused, not 2xx), by webhook; each is retried with backoff.', labelNames: ['webhook'], registers: [this.registry] }),
      webhookDropped: new Counter({
        name: 'verdict_alert_webhook_dropped_total',
        help: 'Alerts never delivered to a webhook, by webhook and why: queue_full (its queue was full), gave_up (every attempt failed), shutdown (still queued when the server stopped).',
        labelNames: ['webhook', 'why'],
        registers: [this.registry],
      }),
      webhookQueued: new Gauge({ name: 'verdict_alert_webhook_queued', help: 'Alerts waiting to be delivered to a webhook, by webhook.', labelNames: ['webhook'], registers: [this.registry], aggregator: 'sum' }),
      suspensions: new Counter({ name: 'verdict_suspensions_total', help: 'Principals suspended, by cause: an alert\'s type, or manual (Admin SuspendPrincipal).', labelNames: ['cause'], registers: [this.registry] }),
      suspensionsLifted: new Counter({ name: 'verdict_suspensions_lifted_total', help: 'Suspensions lifted before their end (Admin LiftSuspension, verdict suspend lift).', registers: [this.registry] }),
      suspensionsRefused: new Counter({ name: 'verdict_suspensions_refused_total', help: 'Alerts that would have suspended a principal but did not, because alerts.suspend.maxSuspended suspensions were in force, by alert type.', labelNames: ['cause'], registers: [this.registry] }),
    };
    return this.alertResponseMetrics;
  }

  /**
   * A shared rate-limit backend (Redis): whether it answers, its failures, and
   * checks its fallback decided (by limit's onBackendFailure), read at each scrape.
   */
  watchLimitBackend(status: () => { readonly healthy: boolean; readonly failures: number }): void {
    new Gauge({
      name: 'verdict_rate_limit_backend_up',
      help: '1 while the shared rate-limit backend (Redis) answers, else 0 (limits follow their onBackendFailure).',
      registers: [this.registry],
      aggregator: 'min',
      collect() {
        this.set(status().healthy ? 1 : 0);
      },
    });
    let reported = 0;
    new Counter({
      name: 'verdict_rate_limit_backend_failures_total',
      help: 'Calls to the shared rate-limit backend (Redis) that failed or timed out.',
      registers: [this.registry],
      collect() {
        const failures = status().failures;
        this.inc(failures - reported);
        reported = failures;
      },
    });
    const fallbacks = new Counter({ name: 'verdict_rate_limit_fallback_total', help: 'Checks a limit decided without the shared backend, by how (local: counted in this process; open: let through uncounted).', labelNames: ['backend'], registers: [this.registry] });
    fallbacks.inc({ backend: 'local' }, 0);
    fallbacks.inc({ backend: 'open' }, 0);
    this.fallbacks = fallbacks;
  }

  /** Load-aware limits: the factor each one's rate is scaled by now (Admin ReportLoad), read at each scrape. */
  watchLoadFactors(factors: () => readonly { readonly limitId: string; readonly pool: string; readonly factor: number }[]): void {
    new Gauge({
      name: 'verdict_rate_limit_load_factor',
      help: 'The factor a load-aware limit\'s rate is scaled by now (1: whole; down to its loadAware.min while its pool reports load).',
      labelNames: ['limit', 'pool'],
      registers: [this.registry],
      aggregator: 'min',
      collect() {
        this.reset();
        for (const f of factors()) this.set({ limit: f.limitId, pool: f.pool }, f.factor);
      },
    });
  }

  /** Where the state of the file-system watcher is read at each scrape. */
  setWatching(isWatching: () => boolean): void {
    this.isWatching = isWatching;
  }
}

/** The alert responses' counters: webhooks' deliveries, failures and drops; suspensions. */
export interface AlertResponseMetrics {
  readonly webhookDeliveries: Counter<'webhook'>;
  readonly webhookFailures: Counter<'webhook'>;
  readonly webhookDropped: Counter<'webhook' | 'why'>;
  readonly webhookQueued: Gauge<'webhook'>;
  readonly suspensions: Counter<'cause'>;
  readonly suspensionsLifted: Counter;
  readonly suspensionsRefused: Counter<'cause'>;
}
