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

async function checks(port: number, count: number, inFlight: number): Promise<void> {
  const client = verdictClient(port, { ownConnection: true });
  const request = shippedAllowedRequest();
  let left = count;
  try {
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (left > 0) {
          left -= 1;
          const answer = await client.call<{ effect: string }>('Authorization', 'Check', request);
          if (answer.effect !== 'EFFECT_ALLOW') throw new Error(`expected an allow, got ${answer.effect}`);
        }
      }),
    );
  } finally {
    client.close();
  }
}

describe('what a finished check leaves to the garbage collector', () => {
  it('checks over the direct lane, durable log: the young collections promote well under a kilobyte per check', async () => {
    ensureBuilt();
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(makeTempDir(), 'd.db'), nodeArgs: ['--trace-gc-nvp'] });
    running.push(server);
    // Warm up: compiled code, caches and the first log pages are promoted once, not per check.
    await checks(server.grpcPort, 3_000, 64);
    const before = scavenges(server.logs).length;
    const measured = 12_000;
    await checks(server.grpcPort, measured, 64);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const during = scavenges(server.logs).slice(before);
    // 12,000 checks allocate some 250 MB: enough young collections that a check kept alive is seen.
    expect(during.length).toBeGreaterThanOrEqual(5);
    const promoted = during.reduce((sum, s) => sum + s.promoted, 0) / measured;
    const allocated = during.reduce((sum, s) => sum + s.allocated, 0) / measured;
    expect(allocated).toBeGreaterThan(1_000);
    // Measured here: about 12 bytes per check; a Map churned by every check made it 2,600.
    expect(promoted, `promoted ${promoted.toFixed(0)} B per check over ${during.length} young collections`).toBeLessThan(500);
  }, 120_000);
});
