/** Where a limiter keeps the TAT of each key (see gcra.ts). */
export interface LimitStore {
  /** The key's stored TAT; undefined when it has none or it has passed (the key is at rest). */
  get(key: string, now: number): number | undefined;
  set(key: string, tat: number, now: number): void;
}

/** Entries looked at for expiry on each write: enough to keep up with writes, bounded per call. */
const SWEEP_PER_WRITE = 4;

/**
 * Keys in memory, for one replica: zero set-up, bounded. A key whose TAT has
 * passed is at rest and holds nothing a fresh key would not, so it is dropped as
 * writes go by (idle keys expire without a timer). When `maxKeys` are held and
 * none has expired, the key written longest ago is evicted (it gets a fresh
 * budget when it comes back) and `evictions` counts it.
 */
export class MemoryLimitStore implements LimitStore {
  /** Insertion order is last-write order: a write moves its key to the end. */
  private readonly tats = new Map<string, number>();
  /** Keys evicted while still counting, because the store was full. */
  evictions = 0;

  constructor(readonly maxKeys = 100_000) {}

  get size(): number {
    return this.tats.size;
  }

  get(key: string, now: number): number | undefined {
    const tat = this.tats.get(key);
    return tat === undefined || tat <= now ? undefined : tat;
  }

  set(key: string, tat: number, now: number): void {
    if (this.tats.has(key)) this.tats.delete(key);
    this.sweep(now, SWEEP_PER_WRITE);
    if (this.tats.size >= this.maxKeys) {
      const oldest = this.tats.keys().next();
      if (!oldest.done) {
        this.tats.delete(oldest.value);
        this.evictions += 1;
      }
    }
    this.tats.set(key, tat);
  }

  /** Drops up to `budget` of the least recently written keys that are at rest. */
  private sweep(now: number, budget: number): void {
    let looked = 0;
    for (const [key, tat] of this.tats) {
      if (looked++ >= budget || tat > now) return;
      this.tats.delete(key);
    }
  }
}
