// The console's query parameters: what /console/api/... accepts, bounded and
// checked before anything is read; a bad value is a 400 naming the parameter.

import type { AlertQuery, AlertType } from '../analysis/alert.js';
import type { DecisionFilters } from '../decisions/query.js';
import { VerdictError } from '../errors.js';
import { LAST_REPRESENTABLE_MS, durationMs, readIsoTime } from '../time-text.js';
import { EFFECTS, REASONS, type Effect, type Reason } from '../types.js';

/** The longest query string the console reads; a longer one is refused (414) unread. */
export const MAX_QUERY_CHARS = 4096;
/** The longest value of one parameter. */
const MAX_VALUE_CHARS = 1024;
/** Rows of one page of the decision list: default and most. */
export const DEFAULT_LIST_ROWS = 50;
export const MAX_LIST_ROWS = 200;
/** Buckets of the chart: default and most. */
export const DEFAULT_BUCKETS = 60;
export const MAX_BUCKETS = 500;
/** Alerts listed at most. */
export const MAX_ALERTS = 500;

const ALERT_TYPES: readonly AlertType[] = ['volume', 'probing', 'reconnaissance', 'baseline', 'extraction', 'auth-failures'];

/** The earliest time the console reads: 2000-01-01T00:00:00Z. */
const EARLIEST_MS = Date.UTC(2000, 0, 1);

/** A parameter the caller got wrong: answered 400 with its name. */
export class ParameterError extends VerdictError {
  constructor(
    readonly parameter: string,
    message: string,
  ) {
    super('USAGE', `${parameter}: ${message}`);
  }
}

/** Every parameter some console endpoint reads; the values of these, and only these, are recorded. */
const CONSOLE_PARAMETERS: ReadonlySet<string> = new Set(['action', 'buckets', 'effect', 'limit', 'own', 'page', 'policyVersion', 'principal', 'reason', 'resourceId', 'resourceType', 'rule', 'since', 'subject', 'type', 'until']);
/** What the row holds for the value of a parameter no endpoint reads. */
export const UNRECORDED_VALUE = '(not recorded: not a console parameter)';

/** The parameters of one request, each read at most once; unknown ones are refused by `done()`. */
export class Parameters {
  private readonly values = new Map<string, string>();
  private readonly read = new Set<string>();

  constructor(search: URLSearchParams) {
    for (const [name, value] of search) {
      if (this.values.has(name)) throw new ParameterError(name, 'is given more than once');
      if (value.length > MAX_VALUE_CHARS) throw new ParameterError(name, `is longer than ${MAX_VALUE_CHARS} characters`);
      this.values.set(name, value);
    }
  }

  /**
   * The parameters as recorded in the call's row. A name no endpoint reads is kept
   * (it says what was tried) but not its value: someone pasting the admin token as
   * `?token=` must not leave it in a log that can never be edited.
   */
  record(): Record<string, string> {
    const recorded: Record<string, string> = {};
    for (const [name, value] of this.values) recorded[name] = CONSOLE_PARAMETERS.has(name) ? value : UNRECORDED_VALUE;
    return recorded;
  }

  text(name: string): string | undefined {
    this.read.add(name);
    const value = this.values.get(name);
    return value === undefined || value === '' ? undefined : value;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const text = this.text(name);
    if (text === undefined) return fallback;
    if (!/^\d{1,9}$/.test(text)) throw new ParameterError(name, `must be a whole number from ${min} to ${max}`);
    const value = Number(text);
    if (value < min || value > max) throw new ParameterError(name, `must be a whole number from ${min} to ${max}, not ${value}`);
    return value;
  }

  /**
   * ISO 8601 (UTC without an offset), a duration ago (`15m`, `24h`, `7d`), or epoch
   * milliseconds, from 2000 on: the answer gives the times back as epoch milliseconds
   * for the next page to send, and every time from 2000 reads back as one.
   */
  time(name: string, now: number): number | undefined {
    const text = this.text(name);
    if (text === undefined) return undefined;
    const ago = durationMs(text);
    let ms: number;
    if (ago !== null) ms = now - ago;
    else if (/^\d{12,15}$/.test(text)) ms = Number(text);
    else if (/^\d{9,11}$/.test(text)) throw new ParameterError(name, `${text} reads as epoch seconds; give epoch milliseconds (${text}000) or an ISO 8601 time`);
    else {
      const iso = readIsoTime(text);
      if (iso !== null && 'notADay' in iso) throw new ParameterError(name, `${iso.notADay} is not a day of the calendar`);
      if (iso === null) throw new ParameterError(name, 'must be an ISO 8601 time (2026-12-04T09:00:00Z), a duration ago (15m, 24h, 7d) or epoch milliseconds');
      ms = iso.ms;
    }
    // The log holds nothing older; a time before it (or before 1970, or past what a Date holds) would answer with a time the next page cannot send.
    if (ms < EARLIEST_MS) throw new ParameterError(name, `${text} is before 2000; leave ${name} out to read from the first decision`);
    if (ms > LAST_REPRESENTABLE_MS) throw new ParameterError(name, `${text} is later than a time can be written`);
    return ms;
  }

  /** Refuses parameters no one read. */
  done(): void {
    for (const name of this.values.keys()) {
      if (!this.read.has(name)) throw new ParameterError(name, `is not a parameter here; use ${[...this.read].sort().join(', ') || 'none'}`);
    }
  }
}

/** The filters of `verdict decisions`, as the console takes them. */
export function decisionFilters(p: Parameters, now: number): DecisionFilters {
  const effectText = p.text('effect');
  const reasonText = p.text('reason');
  let effect: Effect | undefined;
  let reason: Reason | undefined;
  if (effectText !== undefined) {
    effect = EFFECTS.find((e) => e === effectText.toUpperCase());
    if (effect === undefined) throw new ParameterError('effect', `must be one of ${EFFECTS.join(', ').toLowerCase()}`);
  }
  if (reasonText !== undefined) {
    reason = REASONS.find((r) => r === reasonText.toUpperCase());
    if (reason === undefined) throw new ParameterError('reason', `must be one of ${REASONS.join(', ').toLowerCase()}`);
  }
  const since = p.time('since', now);
  const until = p.time('until', now);
  if (since !== undefined && until !== undefined && until <= since) throw new ParameterError('until', 'must be after since');
  const filters: Record<string, unknown> = {
    principalId: p.text('principal'),
    action: p.text('action'),
    resourceType: p.text('resourceType'),
    resourceId: p.text('resourceId'),
    ruleId: p.text('rule'),
    policyVersion: p.text('policyVersion'),
    effect,
    reason,
    since,
    until,
  };
  for (const key of Object.keys(filters)) if (filters[key] === undefined) delete filters[key];
  return filters as DecisionFilters;
}

/** What the alerts panel asks the AlertReader. */
export function alertQuery(p: Parameters, now: number): AlertQuery {
  const typeText = p.text('type');
  const type = typeText === undefined ? undefined : ALERT_TYPES.find((t) => t === typeText);
  if (typeText !== undefined && type === undefined) throw new ParameterError('type', `must be one of ${ALERT_TYPES.join(', ')}`);
  const since = p.time('since', now);
  const until = p.time('until', now);
  const subjectId = p.text('subject');
  const limit = p.integer('limit', 100, 1, MAX_ALERTS);
  return { ...(since !== undefined ? { since } : {}), ...(until !== undefined ? { until } : {}), ...(type ? { type } : {}), ...(subjectId !== undefined ? { subjectId } : {}), limit };
}
