// Full collections come often enough to stay short. Every HTTP/2 request leaves its
// header values behind as external strings in the old generation, which only a full
// collection frees, one by one in its final pause. Left to V8's own heuristics a serving
// verdict let them pile up for some 70 MB and then paused 270-340 ms at once (README,
// "Full collections"); `verdict serve` sets the old generation's growth (gc-pacing.ts).
// This drives a real server under --trace-gc-nvp and reads its deciding thread's full
// collections while checks arrive.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HEAP_GROWING_PERCENT, paceFullCollections } from '../../src/gc-pacing.js';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';
import { ROOT, ensureBuilt, shippedAllowedRequest, startVerdict, verdictClient, type LogLine, type VerdictProcess } from '../helpers/verdict-process.js';

const running: VerdictProcess[] = [];
afterEach(async () => {
  for (const server of running.splice(0)) await server.stop('SIGKILL');
  removeTempDirs();
});

interface Collection {
  readonly kind: 'young' | 'full';
  /** Heap bytes before and after (total_size_before/after). */
  readonly before: number;
  readonly after: number;
  readonly allocated: number;
}

/** Each isolate's collections in order, from --trace-gc-nvp lines ([pid:address]: the deciding thread and each worker thread under its own). */
function collectionsByIsolate(logs: readonly LogLine[]): Map<string, Collection[]> {
  const byIsolate = new Map<string, Collection[]>();
  for (const line of logs) {
    const text = typeof line.msg === 'string' ? line.msg : '';
    const match = /^\[\d+:(0x[0-9a-f]+)\]\s+[\d.]+ ms: (.*)$/.exec(text);
    if (match === null) continue;
    const kind = /\bgc=s\b/.test(match[2]!) ? 'young' : /\bgc=mc\b/.test(match[2]!) ? 'full' : null;
    if (kind === null) continue;
    const field = (name: string): number => Number(new RegExp(`\\b${name}=(\\d+)`).exec(match[2]!)?.[1] ?? NaN);
    const list = byIsolate.get(match[1]!) ?? [];
    list.push({ kind, before: field('total_size_before'), after: field('total_size_after'), allocated: field('allocated') });
    byIsolate.set(match[1]!, list);
  }
  return byIsolate;
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

const MB = 1024 * 1024;

describe('full collections under sustained checks', () => {
  it('the old generation is collected every few megabytes of header garbage, not after it has tripled', async () => {
    ensureBuilt();
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(makeTempDir(), 'd.db'), nodeArgs: ['--trace-gc-nvp'] });
    running.push(server);
    // Warm-up: start-up's own full collections (modules, policies, the first log pages) are behind it.
    await checks(server.grpcPort, 5_000, 64);
    const before = new Map([...collectionsByIsolate(server.logs)].map(([isolate, list]) => [isolate, list.length]));
    const measured = 60_000;
    await checks(server.grpcPort, measured, 64);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const all = collectionsByIsolate(server.logs);
    // The deciding thread is the isolate that allocated most while the checks ran.
    const [isolate, during] = [...all].map(([id, list]) => [id, list.slice(before.get(id) ?? 0)] as const).sort((a, b) => sum(b[1]) - sum(a[1]))[0]!;
    const history = all.get(isolate)!;
    const full = history.map((c, i) => ({ ...c, i })).filter((c) => c.kind === 'full' && c.i >= (before.get(isolate) ?? 0));
    const report = history.filter((c) => c.kind === 'full').map((c) => `${(c.before / MB).toFixed(1)} -> ${(c.after / MB).toFixed(1)} MB`).join('; ');
    // Each check left garbage in this isolate: the lines were read.
    expect(sum(during) / measured).toBeGreaterThan(1_000);
    // Measured here: four full collections in 60,000 checks (each began at 44-48 MB, after
    // 23-27 MB had been kept), and none without the pacing: V8's own limit was not reached.
    expect(full.length, `full collections of the deciding thread: ${report}`).toBeGreaterThanOrEqual(1);
    // None starts with more than 2.5 times what the one before it kept (with V8's own limit: 3-4x,
    // 100 MB against 24-30). Measured with the pacing: 1.7-1.9x, since V8 grows the limit by at
    // least a fixed step (about 16 MB at this size) and checks allocate while marking runs.
    for (const collection of full) {
      const previous = history.slice(0, collection.i).reverse().find((c) => c.kind === 'full');
      if (previous === undefined) continue;
      expect(collection.before, `full collections of the deciding thread: ${report}`).toBeLessThan(2.5 * previous.after);
    }
  }, 240_000);

  it("leaves V8's growth alone when the operator set it (a node flag or NODE_OPTIONS)", () => {
    expect(paceFullCollections(['--heap-growing-percent=50'], '')).toBeNull();
    expect(paceFullCollections([], '--max-old-space-size=4096 --heap_growing_percent=80')).toBeNull();
    expect(HEAP_GROWING_PERCENT).toBeGreaterThan(0);
  });
});

function sum(list: readonly Collection[]): number {
  return list.reduce((total, c) => total + (Number.isFinite(c.allocated) ? c.allocated : 0), 0);
}
