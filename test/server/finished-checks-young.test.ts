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
import { ROOT, ensureBuilt, shippedAllowedRequest, startVerdict, verdictClient, type LogLine, type VerdictProcess } from '../helpers/verdict-process.js';

const running: VerdictProcess[] = [];
afterEach(async () => {
  for (const server of running.splice(0)) await server.stop('SIGKILL');
  removeTempDirs();
});

interface Scavenge {
  readonly allocated: number;
  readonly promoted: number;
}

/** The young-generation collections of the isolate that collects most often (the deciding thread; the writer and audit threads print under their own). */
function scavenges(logs: readonly LogLine[]): Scavenge[] {
  const byIsolate = new Map<string, Scavenge[]>();
  for (const line of logs) {
    const text = typeof line.msg === 'string' ? line.msg : '';
    const match = /^\[\d+:(0x[0-9a-f]+)\]\s+[\d.]+ ms: (.*)$/.exec(text);
    if (match === null || !/\bgc=s\b/.test(match[2]!)) continue;
    const field = (name: string): number => Number(new RegExp(`\\b${name}=(\\d+)`).exec(match[2]!)?.[1] ?? NaN);
    const list = byIsolate.get(match[1]!) ?? [];
    list.push({ allocated: field('allocated'), promoted: field('promoted') });
    byIsolate.set(match[1]!, list);
  }
  return [...byIsolate.values()].sort((a, b) => b.length - a.length)[0] ?? [];
}

/** Runs `ask` `count` times, `inFlight` at once. */
async function load(count: number, inFlight: number, ask: () => Promise<void>): Promise<void> {
  let left = count;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (left > 0) {
        left -= 1;
        await ask();
      }
    }),
  );
}

async function checks(port: number, count: number, inFlight: number): Promise<void> {
  const client = verdictClient(port, { ownConnection: true });
  const request = shippedAllowedRequest();
  try {
    await load(count, inFlight, async () => {
      const answer = await client.call<{ effect: string }>('Authorization', 'Check', request);
      if (answer.effect !== 'EFFECT_ALLOW') throw new Error(`expected an allow, got ${answer.effect}`);
    });
  } finally {
    client.close();
  }
}

/** What the deciding thread's young collections promoted per request over `measured` requests, after a warm-up. */
async function promotedPerRequest(server: VerdictProcess, run: (count: number) => Promise<void>, measured: number): Promise<{ promoted: number; collections: number }> {
  // Warm up: compiled code, caches and the first log pages are promoted once, not per request.
  await run(Math.round(measured / 4));
  const before = scavenges(server.logs).length;
  await run(measured);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const during = scavenges(server.logs).slice(before);
  // Enough young collections that a request kept alive is seen, and each request allocated (the lines were read).
  expect(during.length).toBeGreaterThanOrEqual(5);
  expect(during.reduce((sum, s) => sum + s.allocated, 0) / measured).toBeGreaterThan(1_000);
  return { promoted: during.reduce((sum, s) => sum + s.promoted, 0) / measured, collections: during.length };
}

describe('what a finished check leaves to the garbage collector', () => {
  it('checks over the direct lane, durable log: the young collections promote well under a kilobyte per check', async () => {
    ensureBuilt();
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(makeTempDir(), 'd.db'), nodeArgs: ['--trace-gc-nvp'] });
    running.push(server);
    const { promoted, collections } = await promotedPerRequest(server, (count) => checks(server.grpcPort, count, 64), 8_000);
    // Measured here: about 12 bytes per check; a Map churned by every check made it 2,600-3,300.
    expect(promoted, `promoted ${promoted.toFixed(0)} B per check over ${collections} young collections`).toBeLessThan(500);
  }, 120_000);

  it('CheckBatch calls of ten items: well under a kilobyte per call', async () => {
    ensureBuilt();
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(makeTempDir(), 'd.db'), nodeArgs: ['--trace-gc-nvp'] });
    running.push(server);
    const shipped = shippedAllowedRequest() as { principal: unknown; action: string; resource: unknown; context: unknown };
    const batch = { principal: shipped.principal, context: shipped.context, items: Array.from({ length: 10 }, () => ({ action: shipped.action, resource: shipped.resource })) };
    const batches = async (calls: number): Promise<void> => {
      const client = verdictClient(server.grpcPort, { ownConnection: true });
      try {
        await load(calls, 16, async () => {
          const answer = await client.call<{ results: Array<{ effect: string }> }>('Authorization', 'CheckBatch', batch);
          if (answer.results.length !== 10 || answer.results.some((r) => r.effect !== 'EFFECT_ALLOW')) throw new Error('expected ten allows');
        });
      } finally {
        client.close();
      }
    };
    // Per call, not per decision: a call's own objects kept alive (its stream, its slicer) are then as visible as a check's.
    const { promoted, collections } = await promotedPerRequest(server, batches, 1_200);
    expect(promoted, `promoted ${promoted.toFixed(0)} B per call of ten decisions over ${collections} young collections`).toBeLessThan(500);
  }, 120_000);
});
