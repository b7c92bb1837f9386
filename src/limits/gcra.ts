/**
 * The generic cell rate algorithm (GCRA), pure: one number per key, the
 * theoretical arrival time (TAT) of the next unit, and no clock of its own.
 *
 * A key with a rate of one unit every `emissionMs` and a burst of B may take B
 * units at once from rest, then one every `emissionMs`: over any interval of
 * length t it takes at most B + t / emissionMs units. There are no windows, so
 * there is no boundary at which a second burst becomes available (the 2× burst
 * of fixed-window counters).
 */

export interface GcraResult {
  readonly allowed: boolean;
  /** The TAT to store when allowed; the unchanged TAT when not. */
  readonly tat: number;
  /** Units that could still be taken now, after this call. */
  readonly remaining: number;
  /** When refused, milliseconds until this call would be allowed; 0 when allowed. */
  readonly retryAfterMs: number;
  /** Milliseconds until the key is back at rest (its full burst available). */
  readonly resetMs: number;
}

// Rounding of float arithmetic must never cost a unit of budget.
const EPSILON = 1e-6;

/**
 * Decides whether `cost` units may be taken at time `now` (milliseconds) by a key
 * whose stored TAT is `storedTat` (undefined: never seen, or expired).
 *
 * @example
 * // 100/minute, burst 10: one unit every 600 ms
 * gcra(undefined, 0, 600, 10, 1) // { allowed: true, tat: 600, remaining: 9, retryAfterMs: 0, resetMs: 600 }
 */
export function gcra(storedTat: number | undefined, now: number, emissionMs: number, burst: number, cost: number): GcraResult {
  const tat = storedTat === undefined || storedTat < now ? now : storedTat;
  const tolerance = emissionMs * burst;
  const next = tat + cost * emissionMs;
  const allowAt = next - tolerance;
  if (allowAt > now + EPSILON) {
    return { allowed: false, tat, remaining: units(now + tolerance - tat, emissionMs), retryAfterMs: allowAt - now, resetMs: tat - now };
  }
  return { allowed: true, tat: next, remaining: units(now + tolerance - next, emissionMs), retryAfterMs: 0, resetMs: next - now };
}

function units(ms: number, emissionMs: number): number {
  return ms <= 0 ? 0 : Math.floor(ms / emissionMs + EPSILON);
}
