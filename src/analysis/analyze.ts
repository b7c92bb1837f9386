/**
 * `verdict analyze`: the detectors (detectors.ts), the same code the server
 * runs live, over a time range of a decision log, in the log's order.
 */
import { DecisionReader } from '../decisions/query.js';
import type { Alert } from './alert.js';
import { resolveDetectors, type DetectorSettings } from './detector-config.js';
import { Detectors } from './detectors.js';

export interface AnalyzeOptions {
  readonly since?: number;
  readonly until?: number;
  readonly detectors?: DetectorSettings;
}

export interface Analysis {
  readonly alerts: Alert[];
  /** Decisions read in the range. */
  readonly decisions: number;
  /** Decisions read before `since` so that the range's first windows are counted as the server counted them (see WARM_UP_WINDOWS). */
  readonly warmUpDecisions: number;
  /** Subject states evicted to keep memory bounded. */
  readonly evictions: number;
}

/**
 * The alerts a range of the log at `path` raises, in the order raised.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE / DECISION_LOG_CORRUPT when the log cannot be read
 */
export function analyzeLog(path: string, options: AnalyzeOptions = {}): Analysis {
  const config = resolveDetectors(options.detectors);
  const since = options.since;
  const reader = DecisionReader.open(path);
  try {
    const alerts: Alert[] = [];
    // An alert raised before the range (by the decisions read to warm up) is not the range's.
    const detectors = new Detectors(config, (alert) => (since === undefined || alert.raisedAt >= since ? alerts.push(alert) : undefined));
    let decisions = 0;
    let warmUpDecisions = 0;
    for (const decision of reader.inLogOrder({ since: since === undefined ? undefined : warmUpStart(since, config.windowMs), until: options.until })) {
      detectors.observe(decision);
      if (since === undefined || decision.time >= since) decisions++;
      else warmUpDecisions++;
    }
    return { alerts, decisions, warmUpDecisions, evictions: detectors.evictions };
  } finally {
    reader.close();
  }
}

/**
 * Whole windows read before a range, so that its first windows are judged as the
 * server judged them: the sliding count of a window carries the window before's
 * share, unless that window raised the alert, which in turn depends on the window
 * before it (detectors.ts, "one burst, one alert"). Baseline figures, which follow
 * every window the server saw, are learned only from what is read.
 */
export const WARM_UP_WINDOWS = 2;

/** Where reading starts for a range from `since`: WARM_UP_WINDOWS before the start of the window `since` falls in (windows are aligned to the epoch). */
export function warmUpStart(since: number, windowMs: number): number {
  return Math.max(0, Math.floor(since / windowMs) * windowMs - WARM_UP_WINDOWS * windowMs);
}
