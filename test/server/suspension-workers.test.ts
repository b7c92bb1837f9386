import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ServerMetrics } from '../../src/server/metrics.js';
import type { Alert } from '../../src/analysis/alert.js';
import { SuspensionService } from '../../src/server/suspension.js';

// Under --workers N each worker keeps its own book of suspensions and reads the shared
// table every second. Two workers on one real SQLite file, with one clock, stand for them.

const flushed = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

describe('suspensions shared by workers', () => {
  const dirs: string[] = [];
  const services: SuspensionService[] = [];
  afterEach(() => {
    for (const service of services.splice(0)) service.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  function twoWorkers(): { a: SuspensionService; b: SuspensionService; clock: () => number; later: (ms: number) => void; sync: (s: SuspensionService) => void; path: string; metrics: ServerMetrics; refusals: string[] } {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-suspension-workers-'));
    dirs.push(dir);
    const path = join(dir, 'decisions.db');
    new Database(path).close();
    let now = Date.UTC(2026, 11, 1, 10, 0, 0);
    const clock = (): number => now;
    const metrics = new ServerMetrics();
    const refusals: string[] = [];
    const a = SuspensionService.open(path, { metrics: metrics.alertResponses, now: clock, onRefused: (m) => refusals.push(m) });
    const b = SuspensionService.open(path, { metrics: new ServerMetrics().alertResponses, now: clock });
    services.push(a, b);
    // Each read is this test's own (sync), not the one-second timer's.
    for (const service of [a, b]) clearInterval((service as unknown as { timer: NodeJS.Timeout }).timer);
    return { a, b, clock, later: (ms) => void (now += ms), sync: (s) => (s as unknown as { sync(): void }).sync(), path, metrics, refusals };
  }

  it('a lift through one worker holds, though another extended the suspension since the first last read the table', async () => {
    const { a, b, later, sync } = twoWorkers();
    a.suspend('mallory', 15 * 60_000, { alertId: 'al_1', alertType: 'volume', note: 'volume' });
    await flushed();
    sync(b);
    later(500);
    // Another alert on worker A: a later end, stored before B reads the table again.
    a.suspend('mallory', 15 * 60_000, { alertId: 'al_2', alertType: 'probing', note: 'probing' });
    await flushed();
    expect(b.lift('mallory')).toBeDefined();
    await flushed();
    sync(b);
    sync(a);
    expect(b.list()).toEqual([]);
    expect(a.list()).toEqual([]);
  });

  it("a shorter suspension from one worker does not cut short a longer one another stored", async () => {
    const { a, b, sync } = twoWorkers();
    a.suspend('mallory', 24 * 3_600_000, { alertId: '', alertType: 'manual', note: 'INC-7' });
    await flushed();
    b.suspend('mallory', 15 * 60_000, { alertId: 'al_3', alertType: 'probing', note: 'probing' });
    await flushed();
    sync(a);
    sync(b);
    for (const worker of [a, b]) expect(worker.list()).toMatchObject([{ principalId: 'mallory', alertType: 'manual', note: 'INC-7' }]);
  });

  /** Counts the rows each of `service`'s reads of the table returns. */
  function rowsRead(service: SuspensionService): number[] {
    const store = (service as unknown as { store: { readChanges(after: number, limit: number): { changes: unknown[] } } }).store;
    const read = store.readChanges.bind(store);
    const counts: number[] = [];
    store.readChanges = (after, limit) => {
      const answer = read(after, limit);
      counts.push(answer.changes.length);
      return answer as never;
    };
    return counts;
  }

  const stored = (path: string): { principal_id: string; lifted: number }[] => {
    const db = new Database(path, { readonly: true });
    try {
      return db.prepare('SELECT principal_id, lifted FROM suspensions ORDER BY principal_id').all() as { principal_id: string; lifted: number }[];
    } finally {
      db.close();
    }
  };

  it('a worker reads only the rows changed since its last read, however many the table holds; a lift is such a change', async () => {
    const { a, b, sync } = twoWorkers();
    for (let i = 0; i < 300; i++) a.suspend(`p${i}`, 3_600_000, { alertId: `al_${i}`, alertType: 'volume', note: '' });
    await flushed();
    const reads = rowsRead(b);
    sync(b);
    expect(b.list()).toHaveLength(300);
    sync(b);
    a.suspend('mallory', 3_600_000, { alertId: 'al_m', alertType: 'probing', note: '' });
    await flushed();
    sync(b);
    expect(b.book.active('mallory')).toBeDefined();
    a.lift('p7');
    await flushed();
    sync(b);
    expect(b.book.active('p7')).toBeUndefined();
    expect(b.list()).toHaveLength(300);
    expect(reads).toEqual([300, 0, 1, 1]);
  });

  it('a worker far behind catches up in batches, each in a turn of its own', async () => {
    const { a, b, sync } = twoWorkers();
    for (let i = 0; i < 1200; i++) a.suspend(`p${i}`, 3_600_000, { alertId: `al_${i}`, alertType: 'volume', note: '' });
    await flushed();
    const reads = rowsRead(b);
    sync(b);
    // The first batch only, in this turn.
    expect(b.book.size).toBe(500);
    for (let turn = 0; turn < 100 && b.book.size < 1200; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(b.book.size).toBe(1200);
    expect(reads).toEqual([500, 500, 200]);
  });

  it('a suspension lifted and made again, shorter, reaches another worker as the new one', async () => {
    const { a, b, later, sync } = twoWorkers();
    a.suspend('mallory', 24 * 3_600_000, { alertId: '', alertType: 'manual', note: 'INC-9' });
    await flushed();
    sync(b);
    a.lift('mallory');
    a.suspend('mallory', 15 * 60_000, { alertId: 'al_4', alertType: 'probing', note: '' });
    await flushed();
    sync(b);
    expect(b.book.active('mallory')).toMatchObject({ alertId: 'al_4' });
    later(16 * 60_000);
    expect(b.book.active('mallory')).toBeUndefined();
  });

  it('rows whose time is up are deleted (lifted ones too), so the table does not grow for ever', async () => {
    const { a, b, later, sync, path } = twoWorkers();
    for (let i = 0; i < 50; i++) a.suspend(`p${i}`, 60_000, { alertId: `al_${i}`, alertType: 'volume', note: '' });
    a.suspend('lifted', 60_000, { alertId: '', alertType: 'manual', note: '' });
    a.suspend('long', 3_600_000, { alertId: '', alertType: 'manual', note: '' });
    await flushed();
    a.lift('lifted');
    await flushed();
    expect(stored(path)).toHaveLength(52);
    later(61_000);
    sync(b);
    // The long suspension, and the row of the last change (its number must not be taken again).
    expect(stored(path).map((r) => r.principal_id)).toEqual(['lifted', 'long']);
    // A new change after the prune still reaches a worker that read the last one.
    a.suspend('mallory', 600_000, { alertId: '', alertType: 'manual', note: '' });
    await flushed();
    sync(b);
    expect(b.book.active('mallory')).toBeDefined();
  });

  it('a lift takes off the rows of every spelling that folds alike, and a suspension made after it in the same flush stays, whatever its spelling', async () => {
    const { a, b, clock, later, sync, path } = twoWorkers();
    a.suspend('Dana', 600_000, { alertId: '', alertType: 'manual', note: '' });
    await flushed();
    later(1000);
    b.suspend('dana', 600_000, { alertId: '', alertType: 'manual', note: '' });
    await flushed();
    expect(stored(path)).toEqual([{ principal_id: 'Dana', lifted: 0 }, { principal_id: 'dana', lifted: 0 }]);
    // Queued in one turn, written in one flush: a lift, a new suspension, its lift, and one more under the first spelling.
    expect(a.lift('DANA')).toMatchObject({ principalId: 'Dana' });
    a.suspend('dana ', 600_000, { alertId: '', alertType: 'manual', note: '' });
    a.lift('dana ');
    a.suspend('Dana', 900_000, { alertId: '', alertType: 'manual', note: 'after the lift' });
    await flushed();
    sync(b);
    for (const worker of [a, b]) expect(worker.list()).toMatchObject([{ principalId: 'Dana', note: 'after the lift' }]);
    expect(stored(path)).toEqual([{ principal_id: 'Dana', lifted: 0 }, { principal_id: 'dana', lifted: 1 }]);
    // And lifted through the other worker, by yet another spelling: no row is left in force, so a restart holds none.
    expect(b.lift('da\u200Bna')).toBeDefined();
    await flushed();
    sync(a);
    expect(a.list()).toEqual([]);
    expect(stored(path).filter((r) => r.lifted === 0)).toEqual([]);
    const restarted = SuspensionService.open(path, { metrics: new ServerMetrics().alertResponses, now: clock });
    services.push(restarted);
    expect(restarted.list()).toEqual([]);
  });

  it('alerts past alerts.suspend.maxSuspended suspend nobody, counted and logged; an operator still suspends, and one already suspended is still extended', async () => {
    const { a, later, metrics, refusals } = twoWorkers();
    const sink = a.sink({ enabled: true, for: '15m', types: ['probing'], maxSuspended: 3 })!;
    const alert = (id: string, n: number): Alert => ({ id: `al_${n}`, type: 'probing', subject: { kind: 'principal', id }, windowStart: 0, windowEnd: 0, observed: 1, threshold: 1, decisionIds: [], raisedAt: 0, summary: 's' });
    for (let i = 0; i < 5; i++) sink.publish(alert(`p${i}`, i));
    expect(a.list().map((s) => s.principalId)).toEqual(['p0', 'p1', 'p2']);
    expect(await metrics.registry.getSingleMetricAsString('verdict_suspensions_refused_total')).toContain('verdict_suspensions_refused_total{cause="probing"} 2');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatch(/alerts\.suspend\.maxSuspended \(3\)/);
    later(60_000);
    sink.publish(alert('p0', 9));
    expect(a.book.active('p0')).toMatchObject({ alertId: 'al_9' });
    expect(a.suspendManually('dana', 600_000, 'INC-1')).toMatchObject({ principalId: 'dana' });
    expect(a.list()).toHaveLength(4);
  });
});
