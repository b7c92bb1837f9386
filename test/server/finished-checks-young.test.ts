// A finished check's objects must die young. When something keeps them alive past two
// young-generation collections (a Map keyed by stream or call that churns: V8 keeps its
// outgrown hash tables, with every entry live at that moment), each check promotes kilobytes
// into the old generation, and the full collections that follow pause every check for tens
// of milliseconds (README, "What each check leaves to the garbage collector"). This drives a
// real server under --trace-gc-nvp and reads what its deciding thread's young collections
// promoted per check: about a dozen bytes as it should be, kilobytes when a check is kept.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';
import { allocatedIn, allowedChecks, collectionsByIsolate, type Collection } from '../helpers/gc-trace.js';
import { ROOT, ensureBuilt, startVerdict, type LogLine, type VerdictProcess } from '../helpers/verdict-process.js';

const running: VerdictProcess[] = [];
afterEach(async () => {
  for (const server of running.splice(0)) await server.stop('SIGKILL');
  removeTempDirs();
});

/** Each isolate's young-generation collections, in order. */
function scavengesByIsolate(logs: readonly LogLine[]): Map<string, Collection[]> {
  return new Map([...collectionsByIsolate(logs)].map(([isolate, list]) => [isolate, list.filter((c) => c.kind === 'young')]));
}

/** What the deciding thread's young collections promote per request (the median collection's share) over `measured` requests, after a warm-up. */
async function promotedPerRequest(server: VerdictProcess, run: (count: number) => Promise<void>, measured: number): Promise<{ promoted: number; collections: number }> {
  // Warm up: compiled code, caches and the first log pages are promoted once, not per request.
  await run(Math.round(measured / 4));
  const before = new Map([...scavengesByIsolate(server.logs)].map(([isolate, list]) => [isolate, list.length]));
  await run(measured);
  await new Promise((resolve) => setTimeout(resolve, 300));
  // The deciding thread is the isolate that allocated most while the requests ran (each allocates tens of kilobytes there).
  const since = [...scavengesByIsolate(server.logs)].map(([isolate, list]) => list.slice(before.get(isolate) ?? 0));
  const during = since.sort((a, b) => allocatedIn(b) - allocatedIn(a))[0] ?? [];
  // Enough young collections that a request kept alive is seen, and each request allocated (the lines were read).
  expect(during.length).toBeGreaterThanOrEqual(5);
  expect(during.reduce((sum, s) => sum + s.allocated, 0) / measured).toBeGreaterThan(1_000);
  // The median collection's share promoted, as bytes per request: a request kept alive is promoted by
  // most collections, while one collection that promotes megabytes now and then (seen once in a few
  // runs, cause unknown) does not move the median.
  const shares = during.map((s) => s.promoted / s.allocated).sort((a, b) => a - b);
  const median = shares[Math.floor(shares.length / 2)]!;
  return { promoted: (median * allocatedIn(during)) / measured, collections: during.length };
}

/**
 * Busy machines (a full test run beside this one) sometimes keep checks waiting so long
 * that the ones in flight outlive two collections and are promoted, though nothing keeps
 * them once answered. That shows in one server's run now and then; a check kept alive
 * after its answer is promoted in every run. So a fresh server is measured up to this many
 * times, and the checks pass when one run stays under the bound.
 */
const ATTEMPTS = 3;

describe('what a finished check leaves to the garbage collector', () => {
  it('checks over the direct lane, durable log: the young collections promote well under a kilobyte per check', async () => {
    ensureBuilt();
    const promotedRuns: number[] = [];
    const runs: string[] = [];
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(makeTempDir(), 'd.db'), nodeArgs: ['--trace-gc-nvp'] });
      running.push(server);
      const { promoted, collections } = await promotedPerRequest(server, (count) => allowedChecks(server.grpcPort, count, 64), 8_000);
      await server.stop('SIGKILL');
      running.splice(running.indexOf(server), 1);
      promotedRuns.push(promoted);
      runs.push(`${promoted.toFixed(0)} B per check over ${collections} young collections`);
      // Measured here: about 12 bytes per check; a Map churned by every check made it 2,600-3,300 in every run.
      if (promoted < 500) break;
    }
    expect(Math.min(...promotedRuns), `promoted, run by run: ${runs.join('; ')}`).toBeLessThan(500);
  }, 360_000);
});
