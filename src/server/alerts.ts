// Anomaly alerts in a running server: the detectors fed from the decide core's
// stream, and the fan-out of every raised alert to its sinks (the alerts table,
// WatchAlerts subscribers, metrics, and whatever is added with `fanout.add`).

import type { Alert, AlertSink } from '../analysis/alert.js';
import { alertRow } from '../analysis/alert-store.js';
import type { DetectorConfig } from '../analysis/detector-config.js';
import { Detectors } from '../analysis/detectors.js';
import type { CallMeta, CheckResult, DecisionObserver } from '../decide/index.js';
import type { AlertRow } from '../decisions/alerts-table.js';
import type { DecisionSink } from '../decisions/log-client.js';
import type { DecisionRecord } from '../decisions/record.js';
import { messageOf } from '../errors.js';

/**
 * Publishes each alert to every sink, in the order added. A sink that throws
 * is skipped for that alert; it cannot stop the others.
 */
export class AlertFanout implements AlertSink {
  private sinks: readonly AlertSink[];

  constructor(sinks: readonly AlertSink[] = []) {
    this.sinks = sinks;
  }

  /** Adds a sink (webhooks, suspension, ...); returns the function that removes it. */
  add(sink: AlertSink): () => void {
    this.sinks = [...this.sinks, sink];
    return () => {
      this.sinks = this.sinks.filter((s) => s !== sink);
    };
  }

  publish(alert: Alert): void {
    for (const sink of this.sinks) {
      try {
        sink.publish(alert);
      } catch {
        // See the class comment.
      }
    }
  }
}

/**
 * The detectors as an observer of the decide core: each recorded decision is
 * counted (a few map updates), after its row was built and recorded.
 */
export function detectorObserver(detectors: Detectors): DecisionObserver {
  return {
    decided: (_result: CheckResult, _meta: CallMeta, _seconds: number, record: DecisionRecord) => detectors.observe(record),
  };
}

/**
 * A decision sink that also shows each recorded decision to the detectors: for
 * records that do not go through the decide core (Admin calls, whose refused
 * ones are failed authentications too).
 */
export function watchedSink(log: DecisionSink, detectors: Detectors): DecisionSink {
  return {
    path: log.path,
    append: (record) => log.append(record).then(() => detectors.observe(record)),
  };
}

/**
 * Stores alerts in the decision log's `alerts` table, through its writer: the
 * alerts raised in one event-loop turn go as one message; nothing waits for it.
 */
export class StoredAlerts implements AlertSink {
  private queue: AlertRow[] = [];
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly log: AlertStore,
    private readonly onError: (message: string, alerts: number) => void,
  ) {}

  publish(alert: Alert): void {
    if (this.queue.length === 0) setImmediate(() => this.send());
    this.queue.push(alertRow(alert));
  }

  /** Resolves once what was published so far is stored (or failed). */
  async flush(): Promise<void> {
    this.send();
    await this.pending;
  }

  private send(): void {
    if (this.queue.length === 0) return;
    const rows = this.queue;
    this.queue = [];
    const written = this.log.appendAlerts(rows).catch((error: unknown) => this.onError(messageOf(error), rows.length));
    this.pending = Promise.all([this.pending, written]).then(() => undefined);
  }
}

/** Which alerts a subscriber wants. */
export interface AlertFilter {
  /** Empty: every type. */
  readonly types: readonly string[];
  /** Empty: every subject. */
  readonly subjectId: string;
}

/** One WatchAlerts stream. */
export interface AlertSubscriber {
  /** Sends one alert; `sent` is called once it has left (or failed). */
  send(alert: Alert, sent: () => void): void;
  /** Ends the stream because it fell too far behind. */
  drop(): void;
  /** Ends the stream because the server is stopping. */
  end(): void;
}

/** A WatchAlerts stream: an alert subscriber that can also be told its caller's credential was withdrawn. */
export interface WatchSubscriber extends AlertSubscriber {
  /** Ends the stream because what admitted it no longer does (a rotated admin token, a certificate removed from admin.clientsFile). */
  revoked(): void;
}

/** The most alerts a subscriber may have unsent before it is dropped. */
export const WATCH_BUFFER = 1000;

interface Subscription {
  readonly filter: AlertFilter;
  readonly subscriber: AlertSubscriber;
  pending: number;
}

/**
 * The WatchAlerts subscribers. Publishing never waits for one: each has at
 * most WATCH_BUFFER alerts unsent, and one that falls further behind is
 * dropped (and counted) instead of slowing the server.
 */
export class AlertHub implements AlertSink {
  private readonly subscriptions = new Set<Subscription>();
  private droppedCount = 0;
  private closed = false;

  constructor(private readonly buffer = WATCH_BUFFER) {}

  /** Subscribers dropped for falling behind, since the start. */
  get dropped(): number {
    return this.droppedCount;
  }

  get size(): number {
    return this.subscriptions.size;
  }

  /** Returns the function that ends the subscription. */
  subscribe(filter: AlertFilter, subscriber: AlertSubscriber): () => void {
    const subscription: Subscription = { filter, subscriber, pending: 0 };
    if (this.closed) {
      subscriber.end();
      return () => undefined;
    }
    this.subscriptions.add(subscription);
    return () => {
      this.subscriptions.delete(subscription);
    };
  }

  /** Ends every stream (the server is stopping); later subscribers are ended at once. */
  close(): void {
    this.closed = true;
    const all = [...this.subscriptions];
    this.subscriptions.clear();
    for (const s of all) {
      try {
        s.subscriber.end();
      } catch {
        // Gone already.
      }
    }
  }

  publish(alert: Alert): void {
    for (const s of this.subscriptions) {
      if (s.filter.types.length > 0 && !s.filter.types.includes(alert.type)) continue;
      if (s.filter.subjectId !== '' && s.filter.subjectId !== alert.subject.id) continue;
      if (s.pending >= this.buffer) {
        this.subscriptions.delete(s);
        this.droppedCount++;
        try {
          s.subscriber.drop();
        } catch {
          // Gone already.
        }
        continue;
      }
      s.pending++;
      try {
        s.subscriber.send(alert, () => {
          s.pending--;
        });
      } catch {
        this.subscriptions.delete(s);
      }
    }
  }
}

/** The live alerting of one server. */
export interface LiveAlerts {
  /**
   * The detectors over this server's decisions; null in a `--workers` worker,
   * whose decisions the primary watches together with every other worker's
   * (server/cluster.ts) and whose alerts it is handed (`relay`).
   */
  readonly detectors: Detectors | null;
  /** Every raised alert goes here: add sinks with `fanout.add`. */
  readonly fanout: AlertFanout;
  readonly hub: AlertHub;
  /** Where alerts are stored; null in a `--workers` worker (the primary stores them). */
  readonly stored: StoredAlerts | null;
}

/** The alerting of a server that runs the detectors (one process, or the `--workers` primary). */
export type DetectingAlerts = LiveAlerts & { readonly detectors: Detectors; readonly stored: StoredAlerts };

/**
 * The detectors of a server and the sinks every alert reaches: the alerts table
 * (through the log's writer), WatchAlerts subscribers, and `extra` (metrics,
 * webhooks, suspension, ...).
 */
export function createLiveAlerts(
  config: DetectorConfig,
  log: AlertStore,
  extra: readonly AlertSink[],
  onStoreError: (message: string, alerts: number) => void,
): DetectingAlerts {
  const hub = new AlertHub();
  const stored = new StoredAlerts(log, onStoreError);
  const fanout = new AlertFanout([stored, hub, ...extra]);
  const detectors = new Detectors(config, (alert) => fanout.publish(alert));
  return { detectors, fanout, hub, stored };
}

/**
 * The alerting of a `--workers` worker: no detectors and no store of its own;
 * what the primary raises reaches this worker's WatchAlerts subscribers through
 * `fanout`.
 */
export function relayedAlerts(): LiveAlerts {
  const hub = new AlertHub();
  return { detectors: null, fanout: new AlertFanout([hub]), hub, stored: null };
}

/** Where alerts are stored: the decision log (a client of its writer, or the writer itself). */
export interface AlertStore {
  appendAlerts(rows: readonly AlertRow[]): Promise<void>;
}
