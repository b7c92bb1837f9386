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
  /** Decisions read. */
  readonly decisions: number;
  /** Subject states evicted to keep memory bounded. */
  readonly evictions: number;
}

/**
 * The alerts a range of the log at `path` raises, in the order raised.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE / DECISION_LOG_CORRUPT when the log cannot be read
 */
export function analyzeLog(path: string, options: AnalyzeOptions = {}): Analysis {
  const reader = DecisionReader.open(path);
  try {
    const alerts: Alert[] = [];
    const detectors = new Detectors(resolveDetectors(options.detectors), (alert) => alerts.push(alert));
    let decisions = 0;
    for (const decision of reader.inLogOrder({ since: options.since, until: options.until })) {
      detectors.observe(decision);
      decisions++;
    }
    return { alerts, decisions, evictions: detectors.evictions };
  } finally {
    reader.close();
  }
}
