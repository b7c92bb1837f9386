import { describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { resolveDetectors } from '../../src/analysis/detector-config.js';
import { Detectors } from '../../src/analysis/detectors.js';
import { observeRows } from '../../src/analysis/observed-row.js';
import type { RowValue } from '../../src/decisions/columns.js';
import { ROW_WIDTH, encodeRecord } from '../../src/decisions/row.js';
import { DAY_START, HOUR, dayOfTraffic, record } from '../support/traffic.js';

// The --workers primary shows the detectors the rows its writer receives (flat
// values), not the records a worker built: both must raise the same alerts.

const alertsOf = (feed: (detectors: Detectors) => void): Alert[] => {
  const alerts: Alert[] = [];
  feed(new Detectors(resolveDetectors({}), (a) => alerts.push(a)));
  return alerts;
};

describe('detectors over stored rows', () => {
  // A day of traffic with its attackers, and a revoked API key used from many addresses in hour 3.
  const revoked = Array.from({ length: 30 }, (_, k) =>
    record({ time: DAY_START + 3 * HOUR + k * 1000, principalId: '', resourceId: '/v1/models', caller: `10.6.6.${k}:4000`, unauthenticated: 'REVOKED: API key k_old was revoked at 2025-01-01T00:00:00.000Z' }),
  );
  const day = [...dayOfTraffic(), ...revoked].sort((x, y) => x.time - y.time);

  it('raise the same alerts from a day of rows, in batches, as from its records', () => {
    const batches: RowValue[][] = [];
    for (let i = 0; i < day.length; i += 300) {
      const values: RowValue[] = [];
      for (const record of day.slice(i, i + 300)) encodeRecord(values, record);
      batches.push(values);
    }
    const fromRecords = alertsOf((d) => day.forEach((r) => d.observe(r)));
    // Every kind of alert is in the day, auth failures by token subject, key and source among them.
    expect(new Set(fromRecords.map((a) => a.subject.kind))).toEqual(new Set(['principal', 'token-subject', 'source', 'api-key']));
    expect(alertsOf((d) => batches.forEach((values) => observeRows(values, new Set(), (o) => d.observe(o))))).toEqual(fromRecords);
  });

  it('leave out the rows the database refused', () => {
    const values: RowValue[] = [];
    const rows = day.filter((r) => r.principalId === 'scraper').slice(0, 40);
    for (const record of rows) encodeRecord(values, record);
    const seen: string[] = [];
    observeRows(values, new Set([0, 39]), (o) => seen.push(o.decisionId));
    expect(values.length).toBe(40 * ROW_WIDTH);
    expect(seen).toEqual(rows.slice(1, 39).map((r) => r.decisionId));
  });
});
