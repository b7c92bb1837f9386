import { describe, expect, it } from 'vitest';
import { gcra } from '../../src/limits/gcra.js';
import { MemoryLimitStore } from '../../src/limits/memory.js';

/** Calls at the given times (ms) against one key; returns which were allowed. */
function run(times: readonly number[], emissionMs: number, burst: number, cost = 1): boolean[] {
  let tat: number | undefined;
  return times.map((now) => {
    const result = gcra(tat, now, emissionMs, burst, cost);
    if (result.allowed) tat = result.tat;
    return result.allowed;
  });
}

describe('the GCRA (pure, clock passed in)', () => {
  it('allows the burst at once, then one unit per emission interval, and says when to retry', () => {
    // 100/minute, burst 10: one unit every 600 ms.
    let tat: number | undefined;
    for (let i = 0; i < 10; i++) {
      const r = gcra(tat, 0, 600, 10, 1);
      expect(r).toMatchObject({ allowed: true, remaining: 9 - i, retryAfterMs: 0 });
      tat = r.tat;
    }
    const refused = gcra(tat, 0, 600, 10, 1);
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 600, resetMs: 6000 });
    expect(gcra(tat, 599, 600, 10, 1).allowed).toBe(false);
    expect(gcra(tat, 599, 600, 10, 1).retryAfterMs).toBe(1);
    expect(gcra(tat, 600, 600, 10, 1)).toMatchObject({ allowed: true, remaining: 0 });
    // After a rest as long as the whole burst takes to come back, the key is fresh.
    expect(gcra(tat, 6000, 600, 10, 1)).toMatchObject({ allowed: true, remaining: 9 });
  });

  it('gives no second burst at a window boundary: over any interval of t ms at most burst + t / emission units', () => {
    // 60/minute, burst 60. A fixed-window counter allows 60 at 59.9 s and 60 more at 60.0 s; the GCRA does not.
    const emission = 1000;
    const burst = 60;
    const lateInFirstMinute = Array.from({ length: 60 }, () => 59_900);
    const startOfSecondMinute = Array.from({ length: 60 }, () => 60_000);
    const allowed = run([...lateInFirstMinute, ...startOfSecondMinute], emission, burst);
    expect(allowed.slice(0, 60).every(Boolean)).toBe(true);
    // 100 ms later only what 100 ms refills: nothing (one unit needs 1000 ms).
    expect(allowed.slice(60).filter(Boolean).length).toBe(0);
    // A steady flood: at every instant the total stays within burst + elapsed / emission.
    const flood = Array.from({ length: 5000 }, (_, i) => i * 37);
    const results = run(flood, emission, burst);
    let taken = 0;
    results.forEach((ok, i) => {
      if (ok) taken += 1;
      expect(taken).toBeLessThanOrEqual(burst + Math.floor(flood[i]! / emission) + 1);
    });
    // and it is not stingy either: the flood gets the refill.
    expect(taken).toBeGreaterThanOrEqual(burst + Math.floor(flood.at(-1)! / emission));
  });

  it('counts cost: a call taking more units than are left waits for them, and takes nothing meanwhile', () => {
    // 1000 tokens a second, burst 1000.
    let tat: number | undefined;
    const first = gcra(tat, 0, 1, 1000, 800);
    expect(first).toMatchObject({ allowed: true, remaining: 200 });
    tat = first.tat;
    const second = gcra(tat, 0, 1, 1000, 300);
    expect(second).toMatchObject({ allowed: false, remaining: 200, retryAfterMs: 100 });
    expect(gcra(tat, 100, 1, 1000, 300)).toMatchObject({ allowed: true, remaining: 0 });
  });
});

describe('the in-memory store', () => {
  it('drops keys at rest as writes go by, and evicts the least recently written when full, counting it', () => {
    const store = new MemoryLimitStore(3);
    store.set('a', 100, 0);
    store.set('b', 200, 0);
    store.set('c', 300, 0);
    expect(store.get('a', 50)).toBe(100);
    expect(store.get('a', 100)).toBeUndefined(); // at rest: same as a fresh key
    // Full, nothing at rest: the oldest write goes.
    store.set('d', 400, 50);
    expect(store.size).toBe(3);
    expect(store.evictions).toBe(1);
    expect(store.get('a', 50)).toBeUndefined();
    // Rewriting a key moves it to the back; at time 250 `b` (200) is at rest and swept, not evicted.
    store.set('c', 900, 60);
    store.set('e', 500, 250);
    expect(store.evictions).toBe(1);
    expect(store.get('b', 250)).toBeUndefined();
    expect(store.size).toBe(3);
  });

  it('stays bounded under a flood of distinct keys', () => {
    const store = new MemoryLimitStore(1000);
    for (let i = 0; i < 50_000; i++) store.set(`k${i}`, 1e12, 0);
    expect(store.size).toBe(1000);
    expect(store.evictions).toBe(49_000);
  });
});

describe('eviction from a full in-memory store', () => {
  // A spent daily budget is refused, so never rewritten: under least-recently-written
  // eviction, a flood of other keys pushed it out and it came back with a fresh budget.
  it('keeps a spent long budget through a flood of fresh keys, evicting those closest to rest', () => {
    const store = new MemoryLimitStore(16);
    const day = 86_400_000;
    store.set('org:acme', day, 0); // a whole day's budget taken up front
    for (let i = 0; i < 10_000; i++) store.set(`principal:p${i}`, i + 1_000, i);
    expect(store.get('org:acme', 10_000)).toBe(day);
    expect(store.size).toBe(16);
    expect(store.evictions).toBeGreaterThan(9_000);
  });
});
