import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { analyzeLog, warmUpStart, WARM_UP_WINDOWS } from '../../src/analysis/analyze.js';
import { resolveDetectors, type DetectorSettings } from '../../src/analysis/detector-config.js';
import { Detectors } from '../../src/analysis/detectors.js';
import { runAnalyze } from '../../src/cli/analyze.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { useDecisionLog } from '../helpers/decision-log.js';
import { DAY_START, HOUR, record } from '../support/traffic.js';

const log = useDecisionLog();
const MINUTE = 60_000;
/** Volume alerts past 10 requests in the sliding hour. */
const SETTINGS: DetectorSettings = { volume: { maxRequests: 10 } };

/** `count` calls by `principalId`, one a minute from `from`. */
function calls(principalId: string, from: number, count: number): DecisionRecord[] {
  return Array.from({ length: count }, (_, i) => record({ time: from + i * MINUTE, principalId, resourceId: 'fraud-v3' }));
}

// Hours 1, 2 and 3 of the day: windows W1, W2, W3.
const W1 = DAY_START + HOUR;
const W2 = DAY_START + 2 * HOUR;
const W3 = DAY_START + 3 * HOUR;
const records = [
  // 8 late in W1 and 8 early in W2: neither window alone crosses 10, the sliding hour early in W2 does.
  ...calls('straddler', W1 + 50 * MINUTE, 8),
  ...calls('straddler', W2 + 1 * MINUTE, 8),
  // The same, and then 6 early in W3: W2 raised the alert, so W3 counts only its own 6 and raises nothing.
  // Read from W2 alone, W2 would not alert (its 8), and W3 would, on W2's share plus its own.
  ...calls('chain', W1 + 50 * MINUTE, 8),
  ...calls('chain', W2 + 1 * MINUTE, 8),
  ...calls('chain', W3 + 1 * MINUTE, 6),
].sort((a, b) => a.time - b.time);

describe('verdict analyze over a range starting mid-stream', () => {
  it('judges the range as the server did, reading the windows before it and printing only what the range raised', async () => {
    const live: Alert[] = [];
    const detectors = new Detectors(resolveDetectors(SETTINGS), (alert) => live.push(alert));
    for (const r of records) {
      await log().append(r);
      detectors.observe(r);
    }
    const liveFrom = (since: number) => live.filter((alert) => alert.raisedAt >= since);
    // What the server raised: straddler and chain in W2, nothing in W3.
    expect(live.map((a) => `${a.type} ${a.subject.id} ${a.windowStart === W2 ? 'W2' : a.windowStart}`).sort()).toEqual(['volume chain W2', 'volume straddler W2']);

    const fromW2 = analyzeLog(log().path, { since: W2, detectors: SETTINGS });
    expect(fromW2.alerts).toEqual(liveFrom(W2));
    expect(fromW2.decisions).toBe(8 + 8 + 6);
    expect(fromW2.warmUpDecisions).toBe(8 + 8);

    const fromW3 = analyzeLog(log().path, { since: W3, detectors: SETTINGS });
    // No alert in W3: the windows read before it show W2 raised chain's alert.
    expect(fromW3.alerts).toEqual(liveFrom(W3));
    expect(fromW3.alerts).toEqual([]);
    expect(fromW3.warmUpDecisions).toBe(8 + 8 + 8 + 8);

    // Mid-window: the window's start and the two before are read, the alerts raised after `since` printed.
    const midW2 = W2 + 2.5 * MINUTE;
    expect(analyzeLog(log().path, { since: midW2, detectors: SETTINGS }).alerts).toEqual(liveFrom(midW2));
    expect(liveFrom(midW2).length).toBeGreaterThan(0);
  });

  it('says on the command line how much it read before --since', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-analyze-'));
    try {
      const config = join(dir, 'verdict.yaml');
      writeFileSync(config, 'alerts:\n  detectors:\n    volume:\n      maxRequests: 10\n');
      let stdout = '';
      let stderr = '';
      const since = new Date(W2).toISOString();
      const until = new Date(W3 + HOUR).toISOString();
      const code = await runAnalyze(['--db', log().path, '--since', since, '--until', until, '--config', config], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
      expect(code).toBe(0);
      expect(stdout).toContain('straddler');
      expect(stdout).toContain('chain');
      expect(stderr).toBe('(22 decisions read, and 16 from the 2 windows before --since to count its first windows as the server did, 2 alerts)\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads two windows back from the start of the window the range starts in, never before the epoch', () => {
    expect(WARM_UP_WINDOWS).toBe(2);
    expect(warmUpStart(W3 + 17 * MINUTE, HOUR)).toBe(W1);
    expect(warmUpStart(W3, HOUR)).toBe(W1);
    expect(warmUpStart(30 * MINUTE, HOUR)).toBe(0);
  });
});
