import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ServerMetrics } from '../../src/server/metrics.js';
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

  function twoWorkers(): { a: SuspensionService; b: SuspensionService; later: (ms: number) => void; sync: (s: SuspensionService) => void } {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-suspension-workers-'));
    dirs.push(dir);
    const path = join(dir, 'decisions.db');
    new Database(path).close();
    let now = Date.UTC(2026, 11, 1, 10, 0, 0);
    const clock = (): number => now;
    const a = SuspensionService.open(path, { metrics: new ServerMetrics().alertResponses, now: clock });
    const b = SuspensionService.open(path, { metrics: new ServerMetrics().alertResponses, now: clock });
    services.push(a, b);
    return { a, b, later: (ms) => void (now += ms), sync: (s) => (s as unknown as { sync(): void }).sync() };
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
});
