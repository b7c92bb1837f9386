/**
 * An alert: a detector's finding about one subject (a principal, an API key, a
 * token subject or a source address) over one window of the decision stream.
 * The live detectors, `verdict analyze`, the alerts table, `WatchAlerts`, the
 * webhooks and the console all speak this one shape.
 */
export type AlertType = 'volume' | 'probing' | 'reconnaissance' | 'baseline' | 'extraction' | 'auth-failures';

/**
 * `many-token-subjects` and `many-sources` (id `*`) are the one alert a window raises
 * about the token subjects or sources past `authFailures.maxAlerts`; `all-callers`
 * (id `*`) the one about every failed authentication together past
 * `authFailures.maxTotal` (detectors.ts).
 */
export type AlertSubjectKind = 'principal' | 'api-key' | 'token-subject' | 'source' | 'many-token-subjects' | 'many-sources' | 'all-callers';

export interface AlertSubject {
  readonly kind: AlertSubjectKind;
  readonly id: string;
}

export interface Alert {
  /** Stable for the same finding: the same stream of decisions gives the same ids, live or in batch. */
  readonly id: string;
  readonly type: AlertType;
  readonly subject: AlertSubject;
  /** The window the figure was counted over, epoch milliseconds, [start, end). */
  readonly windowStart: number;
  readonly windowEnd: number;
  /** What was seen (requests, denied share in percent, distinct models, ...). */
  readonly observed: number;
  /** The configured threshold the figure crossed. */
  readonly threshold: number;
  /** For baseline alerts: the subject's own (or its peers') usual figure. */
  readonly baseline?: number;
  /** For extraction alerts: the model (resource) being called. */
  readonly resource?: { readonly type: string; readonly id: string };
  /** Ids of decisions behind the alert: a few examples, oldest first. */
  readonly decisionIds: readonly string[];
  /** Time of the decision that raised the alert, epoch milliseconds. */
  readonly raisedAt: number;
  /** One line for people: what crossed what. */
  readonly summary: string;
}

/** Where raised alerts go: the alerts table, WatchAlerts subscribers, webhooks, suspension. Must not block. */
export interface AlertSink {
  publish(alert: Alert): void;
}

export interface AlertQuery {
  readonly since?: number;
  readonly until?: number;
  readonly type?: AlertType;
  readonly subjectId?: string;
  readonly limit?: number;
}

/** Reads stored alerts, newest first. */
export interface AlertReader {
  list(query: AlertQuery): Promise<readonly Alert[]>;
}
