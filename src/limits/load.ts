import type { LimitRate } from '../policy/limits.js';

/** A limit's opt-in to load: the pool whose load scales it, the load from which it is scaled, and the least factor. */
export interface LoadAware {
  readonly pool: string;
  /** Load (0..1) up to which the rate is whole; above it the rate falls linearly to `min` at load 1. */
  readonly from: number;
  /** The least factor (0 < min ≤ 1): the rate at full load is rate × min. */
  readonly min: number;
}

/** The most pools a board holds; a report of another pool is refused. */
export const MAX_POOLS = 1000;

interface PoolLoad {
  readonly load: number;
  readonly reportedAt: number;
}

/**
 * The load reported for each named pool (ReportLoad: e.g. GPU utilisation from a
 * model server), and the factor it puts on the rates of limits that opt in. A
 * report older than `staleAfterMs` counts as no load (factor 1): a model server
 * that dies cannot keep the limits low.
 */
export class LoadBoard {
  private readonly pools = new Map<string, PoolLoad>();

  constructor(
    readonly staleAfterMs = 60_000,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Records a load (0..1) for a pool, reported at `reportedAt` (now by default; another
   * `--workers` process's report keeps its own time, so it goes stale when it would
   * there); false when the board is full and the pool is new.
   */
  report(pool: string, load: number, reportedAt: number = this.clock()): boolean {
    if (!this.pools.has(pool) && this.pools.size >= MAX_POOLS) {
      this.sweep();
      if (this.pools.size >= MAX_POOLS) return false;
    }
    this.pools.set(pool, { load, reportedAt });
    return true;
  }

  /** The reports that are not stale, with their times (for a `--workers` process that starts later). */
  current(): { pool: string; load: number; reportedAt: number }[] {
    const now = this.clock();
    const out: { pool: string; load: number; reportedAt: number }[] = [];
    for (const [pool, entry] of this.pools) if (now - entry.reportedAt <= this.staleAfterMs) out.push({ pool, load: entry.load, reportedAt: entry.reportedAt });
    return out;
  }

  /** The pool's current load, 0 when none was reported or the last report is stale. */
  loadOf(pool: string): { load: number; reportedAt: number | null } {
    const entry = this.pools.get(pool);
    if (entry === undefined || this.clock() - entry.reportedAt > this.staleAfterMs) return { load: 0, reportedAt: null };
    return entry;
  }

  /** The factor on a limit's rate now: 1 at rest, down to `min` at full load, in steps of 0.01. */
  factor(aware: LoadAware): number {
    return factorFor(aware, this.loadOf(aware.pool).load);
  }

  private sweep(): void {
    const now = this.clock();
    for (const [pool, entry] of this.pools) if (now - entry.reportedAt > this.staleAfterMs) this.pools.delete(pool);
  }
}

/** The factor for a load: 1 up to `from`, then linearly down to `min` at 1, rounded to 0.01 (never below min). */
export function factorFor(aware: LoadAware, load: number): number {
  if (load <= aware.from) return 1;
  const raw = 1 - ((1 - aware.min) * (Math.min(load, 1) - aware.from)) / (1 - aware.from);
  return Math.max(aware.min, Math.round(raw * 100) / 100);
}

const scaled = new WeakMap<LimitRate, Map<number, LimitRate>>();

/** A rate at `factor` of itself (count and burst; burst at least 1), cached per factor. */
export function scaledRate(rate: LimitRate, factor: number): LimitRate {
  if (factor >= 1) return rate;
  let byFactor = scaled.get(rate);
  if (byFactor === undefined) scaled.set(rate, (byFactor = new Map()));
  let out = byFactor.get(factor);
  if (out === undefined) {
    out = Object.freeze({ ...rate, count: rate.count * factor, burst: Math.max(1, Math.floor(rate.burst * factor)), emissionMs: rate.emissionMs / factor });
    byFactor.set(factor, out);
  }
  return out;
}
