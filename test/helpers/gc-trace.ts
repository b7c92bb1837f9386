// Reading a real server's garbage collections (`node --trace-gc-nvp`) and driving it with
// checks, for the tests that hold what each check leaves to the collector.
import { shippedAllowedRequest, verdictClient, type LogLine } from './verdict-process.js';

/** One collection: young generation (gc=s) or full (gc=mc), and the fields a test reads. */
export interface Collection {
  readonly kind: 'young' | 'full';
  readonly allocated: number;
  readonly promoted: number;
  /** Heap bytes before and after (total_size_before / total_size_after). */
  readonly before: number;
  readonly after: number;
}

/** Each isolate's collections in order ([pid:address]: the deciding thread, and each worker thread under its own). */
export function collectionsByIsolate(logs: readonly LogLine[]): Map<string, Collection[]> {
  const byIsolate = new Map<string, Collection[]>();
  for (const line of logs) {
    const text = typeof line.msg === 'string' ? line.msg : '';
    const match = /^\[\d+:(0x[0-9a-f]+)\]\s+[\d.]+ ms: (.*)$/.exec(text);
    if (match === null) continue;
    const kind = /\bgc=s\b/.test(match[2]!) ? 'young' : /\bgc=mc\b/.test(match[2]!) ? 'full' : null;
    if (kind === null) continue;
    const field = (name: string): number => Number(new RegExp(`\\b${name}=(\\d+)`).exec(match[2]!)?.[1] ?? NaN);
    const list = byIsolate.get(match[1]!) ?? [];
    list.push({ kind, allocated: field('allocated'), promoted: field('promoted'), before: field('total_size_before'), after: field('total_size_after') });
    byIsolate.set(match[1]!, list);
  }
  return byIsolate;
}

/** Bytes the collections in `list` saw allocated (the deciding thread allocates tens of kilobytes a check). */
export const allocatedIn = (list: readonly Collection[]): number => list.reduce((sum, c) => sum + (Number.isFinite(c.allocated) ? c.allocated : 0), 0);

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

/** `count` allowed checks of the shipped policies over one connection of its own, `inFlight` at once. */
export async function allowedChecks(port: number, count: number, inFlight: number): Promise<void> {
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
