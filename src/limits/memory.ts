/**
 * A repeat offender's record for one key (see backoff in limits files): refusals
 * counted in the current window, the offences so far, and the block in force.
 */
export interface Offence {
  /** Refusals since `windowStart`. */
  readonly strikes: number;
  readonly windowStart: number;
  /** Blocks so far: the next lasts block × 2^level, up to the maximum. */
  readonly level: number;
  /** The key is refused until then (0: not blocked). */
  readonly blockedUntil: number;
  /** After this the record holds nothing a fresh key would not, and may be dropped. */
  readonly forgetAt: number;
}

/** Where a limiter keeps the TAT of each key (see gcra.ts) and repeat offenders' records. */
export interface LimitStore {
  /** The key's stored TAT; undefined when it has none or it has passed (the key is at rest). */
  get(key: string, now: number): number | undefined;
  set(key: string, tat: number, now: number): void;
  /** The key's offence record; undefined when it has none or it has been forgotten. */
  getOffence(key: string, now: number): Offence | undefined;
  setOffence(key: string, offence: Offence, now: number): void;
}

/** Entries looked at for expiry on each write: enough to keep up with writes, bounded per call. */
const SWEEP_PER_WRITE = 4;
/** The oldest entries compared when one must be evicted. */
const EVICTION_SAMPLE = 8;

/**
 * A map of at most `max` entries, each with the time after which it is worthless:
 * those are dropped as writes go by (no timer), and when it is full the entry
 * closest to expiring among the 8 written longest ago is evicted (counted by `onEvict`).
 */
class ExpiringMap<V> {
  /** Insertion order is last-write order: a write moves its key to the end. */
  private readonly entries = new Map<string, V>();

  constructor(
    private readonly max: number,
    private readonly expiresAt: (value: V) => number,
    private readonly onEvict: () => void,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string, now: number): V | undefined {
    const value = this.entries.get(key);
    return value === undefined || this.expiresAt(value) <= now ? undefined : value;
  }

  set(key: string, value: V, now: number): void {
    if (this.entries.has(key)) this.entries.delete(key);
    let looked = 0;
    for (const [k, v] of this.entries) {
      if (looked++ >= SWEEP_PER_WRITE || this.expiresAt(v) > now) break;
      this.entries.delete(k);
    }
    if (this.entries.size >= this.max) {
      const victim = this.soonestToExpireOfOldest();
      if (victim !== undefined) {
        this.entries.delete(victim);
        this.onEvict();
      }
    }
    this.entries.set(key, value);
  }

  /**
   * Of the entries written longest ago, the one closest to expiring: it loses the
   * least. Plain least-recently-written would let a flood of fresh keys push out a
   * spent daily budget that is refused (and so not rewritten), handing it a new one.
   */
  private soonestToExpireOfOldest(): string | undefined {
    let victim: string | undefined;
    let soonest = Infinity;
    let looked = 0;
    for (const [k, v] of this.entries) {
      if (looked++ >= EVICTION_SAMPLE) break;
      const at = this.expiresAt(v);
      if (victim === undefined || at < soonest) {
        victim = k;
        soonest = at;
      }
    }
    return victim;
  }
}

const identity = (tat: number): number => tat;

/**
 * Keys in memory, for one replica: zero set-up, bounded. A key whose TAT has
 * passed is at rest and holds nothing a fresh key would not, so it is dropped as
 * writes go by (idle keys expire without a timer). When `maxKeys` are held and
 * none has expired, of the 8 keys written longest ago the one closest to rest is
 * evicted (it gets a fresh budget when it comes back) and `evictions` counts it. Offence records are kept
 * the same way, in a map of their own of the same size.
 */
export class MemoryLimitStore implements LimitStore {
  private readonly tats: ExpiringMap<number>;
  private readonly offences: ExpiringMap<Offence>;
  /** Keys (and offence records) evicted while still counting, because the store was full. */
  evictions = 0;

  constructor(readonly maxKeys = 100_000) {
    const evicted = (): void => void (this.evictions += 1);
    this.tats = new ExpiringMap(maxKeys, identity, evicted);
    this.offences = new ExpiringMap(maxKeys, (o) => o.forgetAt, evicted);
  }

  /** Keys held: budgets and offence records. */
  get size(): number {
    return this.tats.size + this.offences.size;
  }

  get(key: string, now: number): number | undefined {
    return this.tats.get(key, now);
  }

  set(key: string, tat: number, now: number): void {
    this.tats.set(key, tat, now);
  }

  getOffence(key: string, now: number): Offence | undefined {
    return this.offences.get(key, now);
  }

  setOffence(key: string, offence: Offence, now: number): void {
    this.offences.set(key, offence, now);
  }
}
