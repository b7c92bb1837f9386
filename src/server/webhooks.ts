// Alerts POSTed to webhooks: signed, retried with backoff, from a bounded queue,
// never in the way of a check.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Alert, AlertSink, AlertSubjectKind, AlertType } from '../analysis/alert.js';
import { messageOf } from '../errors.js';
import type { WebhookConfig } from './alert-response-config.js';
import type { AlertResponseMetrics } from './metrics.js';

/** The headers of a delivery. */
export const WEBHOOK_HEADERS = {
  /** `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` */
  signature: 'x-verdict-signature',
  /** Unix seconds when this attempt was signed. */
  timestamp: 'x-verdict-timestamp',
  /** The alert's id: the same on every retry, so a receiver can de-duplicate. */
  alertId: 'x-verdict-alert-id',
  /** The same id under the header name many receivers already honour. */
  idempotencyKey: 'idempotency-key',
} as const;

/** How far a delivery's timestamp may be from the receiver's clock by default (seconds). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/**
 * The signature of a body sent at `timestamp` (Unix seconds): `v1=` and the hex
 * HMAC-SHA256, keyed with the webhook's secret, of `<timestamp>.<body>`.
 */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * What a receiver does with a delivery: true when the signature is the secret's
 * over this timestamp and this exact body, and the timestamp is within
 * `toleranceSeconds` of `nowSeconds` (so a captured delivery cannot be replayed
 * later). Then de-duplicate by the alert id header.
 *
 * @example
 * const ok = verifyWebhook(secret, req.headers['x-verdict-signature'], req.headers['x-verdict-timestamp'], rawBody);
 */
export function verifyWebhook(
  secret: string,
  signature: string | undefined,
  timestamp: string | undefined,
  body: string,
  nowSeconds: number = Math.floor(Date.now() / 1000),
  toleranceSeconds: number = DEFAULT_TOLERANCE_SECONDS,
): boolean {
  if (signature === undefined || timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) return false;
  const sentAt = Number(timestamp);
  if (Math.abs(nowSeconds - sentAt) > toleranceSeconds) return false;
  const expected = Buffer.from(signWebhook(secret, sentAt, body));
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The body of a delivery: `{"kind":"verdict.alert","alert":{…}}`. */
export function webhookBody(alert: Alert): string {
  return JSON.stringify({ kind: 'verdict.alert', alert });
}

/**
 * The label a webhook's metrics and log lines carry: its scheme and host, and a
 * short hash of the rest, never the path itself. Many receivers put the secret in
 * the path (`/services/T0/B0/<token>`), and `/metrics` is read without credentials.
 */
export function webhookLabel(url: string): string {
  const u = new URL(url);
  const rest = createHash('sha256').update(`${u.pathname}${u.search}`).digest('hex').slice(0, 8);
  return `${u.protocol}//${u.host}/#${rest}`;
}

export interface WebhookSinkOptions {
  readonly secret: string;
  readonly metrics: AlertResponseMetrics;
  /** Told of each failed attempt and each alert given up (for the log). */
  readonly onFailure?: (event: { readonly webhook: string; readonly alertId: string; readonly attempt: number; readonly error: string; readonly gaveUp: boolean }) => void;
  /** Told of each alert a full queue drops (for the log): the alert dropped, and how many were dropped so far. */
  readonly onDropped?: (event: { readonly webhook: string; readonly alertId: string; readonly type: AlertType; readonly subjectKind: AlertSubjectKind; readonly dropped: number }) => void;
  /** Random number in [0, 1) for the jitter; Math.random by default. */
  readonly random?: () => number;
}

interface Queued {
  readonly alert: Alert;
  /** Publication order, so delivery follows it across groups. */
  readonly sequence: number;
}

/** A first-in first-out list with O(1) push and shift. */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    // Compact once the taken part is most of the array.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

/**
 * One webhook, as an AlertSink. `publish` only filters by type and appends to a
 * bounded queue, then returns: nothing a receiver does (hang, refuse, fail)
 * reaches the caller, which is a detector on the decision path. A delivery loop
 * sends one alert at a time, in the order published, each attempt signed afresh
 * and bounded by `timeoutMs`; a failed attempt waits a jittered, doubling backoff
 * and retries the same alert, up to `maxAttempts`.
 *
 * A full queue makes room rather than refusing the newcomer: the alerts wait in
 * groups by type and subject kind, and the oldest alert of the largest group is
 * dropped (counted, and told to `onDropped`). Dropping the newcomer let whoever
 * filled the queue first (made-up token subjects, many addresses: auth-failures
 * cost an attacker nothing) hide every real alert raised after; now a flood of
 * one kind drops only its own kind, and the newest of every kind stays.
 *
 * @example
 * const sink = new WebhookSink(config.alerts.webhooks[0], { secret, metrics: metrics.alertResponses });
 * sink.publish(alert); // queued; POSTed soon, retried until accepted
 */
export class WebhookSink implements AlertSink {
  readonly label: string;
  private readonly types: ReadonlySet<AlertType> | null;
  /** Alerts waiting, by `type/subject kind`; a group stays once made (at most 27: six types by four subject kinds, and auth-failures' three summaries). */
  private readonly groups = new Map<string, Fifo<Queued>>();
  private waiting = 0;
  private sequence = 0;
  private inFlight = false;
  private droppedCount = 0;
  private running = false;
  private closed = false;
  private readonly stop = new AbortController();
  private idle: Promise<void> = Promise.resolve();
  private readonly random: () => number;
  private readonly deliveries;
  private readonly failures;
  private readonly queued;
  private readonly queueFull;

  constructor(
    private readonly config: WebhookConfig,
    private readonly options: WebhookSinkOptions,
  ) {
    this.label = webhookLabel(config.url);
    this.types = config.types === undefined ? null : new Set(config.types);
    this.random = options.random ?? Math.random;
    // Children bound once, so publish does no label lookup.
    this.deliveries = options.metrics.webhookDeliveries.labels(this.label);
    this.failures = options.metrics.webhookFailures.labels(this.label);
    this.queued = options.metrics.webhookQueued.labels(this.label);
    this.queueFull = options.metrics.webhookDropped.labels(this.label, 'queue_full');
    this.deliveries.inc(0);
    this.failures.inc(0);
    this.queueFull.inc(0);
  }

  /** Alerts waiting (the one being delivered included). */
  get pending(): number {
    return this.waiting + (this.inFlight ? 1 : 0);
  }

  /** Alerts a full queue dropped, since the start. */
  get dropped(): number {
    return this.droppedCount;
  }

  publish(alert: Alert): void {
    if (this.closed || (this.types !== null && !this.types.has(alert.type))) return;
    const key = `${alert.type}/${alert.subject.kind}`;
    let group = this.groups.get(key);
    if (group === undefined) {
      group = new Fifo<Queued>();
      this.groups.set(key, group);
    }
    if (this.pending >= this.config.maxQueue) {
      // The newcomer counts toward its own group, so a flood's next alert drops the flood's oldest.
      const victim = this.largestGroup(group);
      if (victim === null) {
        // Only the delivery in flight holds the queue (maxQueue 1): nothing waiting to drop but the newcomer.
        this.drop(alert);
        return;
      }
      this.drop(victim.shift()!.alert);
      this.waiting--;
      this.queued.dec();
    }
    group.push({ alert, sequence: this.sequence++ });
    this.waiting++;
    this.queued.inc();
    if (!this.running) {
      this.running = true;
      // Started on a later turn: the publisher's turn does no I/O.
      this.idle = new Promise((resolve) => setImmediate(() => void this.drain().finally(resolve)));
    }
  }

  /** Stops delivering: the attempt in flight is abandoned, what is still queued is dropped and counted. */
  async close(): Promise<void> {
    this.closed = true;
    this.stop.abort();
    await this.idle;
    const left = this.pending;
    if (left > 0) this.options.metrics.webhookDropped.labels(this.label, 'shutdown').inc(left);
    this.queued.set(0);
    this.groups.clear();
    this.waiting = 0;
    this.inFlight = false;
  }

  /** The group with the most alerts waiting, `extra` counted one more (ties: the one whose oldest is oldest); null when none waits. */
  private largestGroup(extra: Fifo<Queued>): Fifo<Queued> | null {
    let best: Fifo<Queued> | null = null;
    let bestSize = 0;
    for (const group of this.groups.values()) {
      if (group.size === 0) continue;
      const size = group.size + (group === extra ? 1 : 0);
      if (best === null || size > bestSize || (size === bestSize && group.peek()!.sequence < best.peek()!.sequence)) {
        best = group;
        bestSize = size;
      }
    }
    return best;
  }

  private drop(alert: Alert): void {
    this.droppedCount++;
    this.queueFull.inc();
    this.options.onDropped?.({ webhook: this.label, alertId: alert.id, type: alert.type, subjectKind: alert.subject.kind, dropped: this.droppedCount });
  }

  /** The alert published first among those waiting, taken out of its group. */
  private next(): Alert | undefined {
    let first: Fifo<Queued> | null = null;
    for (const group of this.groups.values()) {
      const head = group.peek();
      if (head !== undefined && (first === null || head.sequence < first.peek()!.sequence)) first = group;
    }
    const taken = first?.shift();
    if (taken === undefined) return undefined;
    this.waiting--;
    return taken.alert;
  }

  private async drain(): Promise<void> {
    try {
      while (!this.closed) {
        const alert = this.next();
        if (alert === undefined) return;
        this.inFlight = true;
        await this.deliver(alert);
        if (this.closed) return;
        this.inFlight = false;
        this.queued.dec();
      }
    } finally {
      this.running = false;
    }
  }

  /** Attempts one alert until it is accepted, attempts run out, or the sink closes. */
  private async deliver(alert: Alert): Promise<void> {
    const body = webhookBody(alert);
    const { maxAttempts, backoff } = this.config;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const error = await this.attempt(alert, body);
      if (error === null) {
        this.deliveries.inc();
        return;
      }
      if (this.closed) return;
      this.failures.inc();
      const gaveUp = attempt === maxAttempts;
      this.options.onFailure?.({ webhook: this.label, alertId: alert.id, attempt, error, gaveUp });
      if (gaveUp) {
        this.options.metrics.webhookDropped.labels(this.label, 'gave_up').inc();
        return;
      }
      // Full jitter: a random wait below the doubling ceiling, so many servers do not retry in step.
      const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (attempt - 1));
      await this.sleep(Math.max(1, Math.floor(this.random() * ceiling)));
      if (this.closed) return;
    }
  }

  /** One signed POST; null when the receiver answered 2xx, else why not. */
  private async attempt(alert: Alert, body: string): Promise<string | null> {
    const timestamp = Math.floor(Date.now() / 1000);
    const signal = AbortSignal.any([this.stop.signal, AbortSignal.timeout(this.config.timeoutMs)]);
    try {
      const response = await fetch(this.config.url, {
        method: 'POST',
        body,
        redirect: 'manual',
        signal,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'verdict-alerts/1',
          [WEBHOOK_HEADERS.timestamp]: String(timestamp),
          [WEBHOOK_HEADERS.signature]: signWebhook(this.options.secret, timestamp, body),
          [WEBHOOK_HEADERS.alertId]: headerSafe(alert.id),
          [WEBHOOK_HEADERS.idempotencyKey]: headerSafe(alert.id),
        },
      });
      // The answer's body is not read past what is needed to free the connection.
      await response.body?.cancel().catch(() => undefined);
      return response.status >= 200 && response.status < 300 ? null : `HTTP ${response.status}`;
    } catch (error) {
      if (signal.aborted && !this.stop.signal.aborted) return `no answer within ${this.config.timeoutMs} ms`;
      const cause = (error as { cause?: { code?: string } }).cause;
      // An error may quote the URL, and with it the secret a path or query holds.
      return cause?.code ?? messageOf(error).split(this.config.url).join(this.label);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.stop.signal;
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** An id as a header value: as it is when printable ASCII, else percent-encoded (the body keeps it as it is). */
function headerSafe(id: string): string {
  return /^[\x21-\x7e]{1,512}$/.test(id) ? id : encodeURIComponent(id.toWellFormed()).slice(0, 2048);
}
