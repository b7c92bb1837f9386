import { describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { alertRow, openAlertReader } from '../../src/analysis/alert-store.js';
import { analyzeLog } from '../../src/analysis/analyze.js';
import { resolveDetectors } from '../../src/analysis/detector-config.js';
import { Detectors } from '../../src/analysis/detectors.js';
import { useDecisionLog } from '../helpers/decision-log.js';
import { dayOfTraffic, DAY_START, HOUR } from '../support/traffic.js';

const log = useDecisionLog();

describe('alerts over a real decision log', () => {
  const records = dayOfTraffic({ principals: 40 });

  it('live (decisions as recorded) and batch (rows read back through the row codec) raise the same alerts', async () => {
    const live: Alert[] = [];
    const detectors = new Detectors(resolveDetectors(), (a) => live.push(a));
    const appends: Promise<void>[] = [];
    for (const r of records) {
      appends.push(log().append(r));
      detectors.observe(r);
    }
    await Promise.all(appends);
    expect(live.length).toBeGreaterThanOrEqual(10);
    const batch = analyzeLog(log().path);
    expect(batch.decisions).toBe(records.length);
    expect(batch.alerts).toEqual(live);

    // Stored by the writer, once per id, and read back newest first.
    await log().appendAlerts(live.map(alertRow));
    await log().appendAlerts(live.map(alertRow));
    const reader = openAlertReader(log().path);
    try {
      const stored = await reader.list({ limit: 1000 });
      expect(stored).toHaveLength(live.length);
      expect(new Set(stored.map((a) => a.id))).toEqual(new Set(live.map((a) => a.id)));
      expect(stored.map((a) => a.raisedAt)).toEqual([...stored.map((a) => a.raisedAt)].sort((a, b) => b - a));
      expect((await reader.list({ type: 'probing' })).map((a) => a.subject.id)).toEqual(['prober']);
      // The token subject read back from the rows' details, as the live detectors saw it.
      expect((await reader.list({ type: 'auth-failures', subjectId: 'maya' })).map((a) => a.subject)).toEqual([{ kind: 'token-subject', id: 'maya' }]);
      expect((await reader.list({ subjectId: 'extractor', type: 'extraction' })).length).toBe(2);
      expect((await reader.list({ since: DAY_START + 14 * HOUR, until: DAY_START + 15 * HOUR })).every((a) => a.subject.id === 'extractor')).toBe(true);
    } finally {
      reader.close();
    }
  });

  it('batch over a range sees only that range', () => {
    const range = analyzeLog(log().path, { since: DAY_START + 4 * HOUR, until: DAY_START + 9 * HOUR });
    expect(range.alerts.map((a) => `${a.type} ${a.subject.kind}`).sort()).toEqual(['auth-failures token-subject', 'probing principal', 'reconnaissance principal']);
  });
});
