import { createHash } from 'node:crypto';
import { conditionErrorMessage, type ConditionInput } from '../policy/condition.js';
import type { CompiledLimit, LimitRate } from '../policy/limits.js';
import type { DecisionRequest } from '../types.js';
import { gcra, type GcraResult } from './gcra.js';
import type { RedisLimitBackend } from './redis.js';
import type { Reservation } from './settle.js';
import type { LoadBoard } from './load.js';
import { scaledRate } from './load.js';
import { MemoryLimitStore, type LimitStore, type Offence } from './memory.js';

/** The state of the limit a decision reports: the one that refused, or the tightest of those that applied. */
export interface LimitReport {
  readonly limit: CompiledLimit;
  readonly rate: LimitRate;
  readonly remaining: number;
  /** 0 when allowed. */
  readonly retryAfterMs: number;
  readonly resetMs: number;
  /** Set when the key is blocked as a repeat offender: until when (ms, the limiter's clock) and after how many offences. */
  readonly blockedUntil?: number;
  readonly offences?: number;
  /**
   * Which backend decided: `memory` (this process's budgets: the in-memory backend, or
   * with Redis a repeat offender's block, which each server keeps); `redis`; `local`
   * (Redis failed, counted in this process at the rate divided by the replicas); `open`
   * (Redis failed, let through uncounted).
   */
  readonly backend: LimitBackendName;
}

export type LimitBackendName = 'memory' | 'redis' | 'local' | 'open';

/**
 * What the limits made of a request the rules allowed:
 * - `allowed`: every limit that applies had budget; each took its share.
 * - `limited`: a limit had none; no limit took anything. `report` names the one with the longest wait.
 * - `error`: a limit's `when`, key or cost could not be evaluated; nothing was taken (fail closed).
 */
export type LimitOutcome =
  | { readonly kind: 'allowed'; readonly report: LimitReport; readonly reserved?: readonly Reservation[] }
  | { readonly kind: 'limited'; readonly report: LimitReport }
  | { readonly kind: 'error'; readonly limit: CompiledLimit; readonly message: string };

/** The clock limits read: milliseconds, never going back (performance.now on the process's time origin). */
export function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Longer keys are stored as their hash, so a long principal id or attribute costs bounded memory. */
const MAX_KEY_LENGTH = 200;

/** Whether a limit applies to the request: true, false, or why its `when` could not be evaluated. */
export function limitApplies(limit: CompiledLimit, request: DecisionRequest): boolean | string {
  if (limit.actions !== null && !limit.actions.has(request.action)) return false;
  if (limit.resourceTypes !== null && !limit.resourceTypes.has(request.resource.type)) return false;
  const holders = limit.roleHolders;
  if (holders !== null) {
    const roles = request.principal.roles;
    let held = false;
    for (let i = 0; i < roles.length && !held; i++) held = holders.has(roles[i]!);
    if (!held) return false;
  }
  const matchers = limit.matchers;
  // A value a matcher cannot compare (`["free"]` against `free`) must not slip past the limit: unless another
  // matcher rules the limit out, it is an error, and the call is refused as for a `when` that errs.
  let uncomparable: string | null = null;
  for (let i = 0; i < matchers.length; i++) {
    const matcher = matchers[i]!;
    const value = matcher.read(request);
    if (matcher.test(value)) continue;
    const mismatch = matcher.mismatch === null ? null : matcher.mismatch(value);
    if (mismatch === null) return false;
    uncomparable ??= `${matcher.label} ${mismatch}, so the limit cannot tell whether it applies`;
  }
  if (uncomparable !== null) return uncomparable;
  if (limit.condition === null) return true;
  try {
    const result = limit.condition(request as ConditionInput);
    if (result === true || result === false) return result;
    return `condition returned ${typeof result}, expected true or false`;
  } catch (error) {
    return conditionErrorMessage(error);
  }
}

/** The rate for this request: its tier's, else the limit's own. */
export function rateFor(limit: CompiledLimit, request: DecisionRequest): LimitRate {
  const tiers = limit.tiers;
  if (tiers === null) return limit.rate;
  const value = tiers.read(request);
  return (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? tiers.rates.get(String(value)) : undefined) ?? limit.rate;
}

/** The units a call takes: 1, or the limit's cost expression (a finite number ≥ 0). */
function costOf(limit: CompiledLimit, request: DecisionRequest, burst: number): number | string {
  if (limit.cost === null) return 1;
  let value: unknown;
  try {
    value = limit.cost(request as ConditionInput);
  } catch (error) {
    return `cost could not be evaluated: ${conditionErrorMessage(error)}`;
  }
  const cost = typeof value === 'bigint' ? Number(value) : value;
  if (typeof cost !== 'number' || !Number.isFinite(cost) || cost < 0) return `cost must be a finite number of at least 0, got ${typeof value === 'number' ? String(value) : typeof value}`;
  // Refused as a limit would refuse it, it would be told to retry after a wait that never makes room.
  if (cost > burst) return `cost ${cost} is more than the ${burst} units a key may take at once (the limit's burst), so this call can never be allowed; ask for at most ${burst} at a time`;
  return cost;
}

/**
 * Where a limit keeps a key's budget: `<limit id>\0<key>`, or, for a key too long
 * to hold, `<limit id>\u0001<sha256 of the key>`. Limit ids hold no control
 * characters, so the character after the id tells the two apart: no key a caller
 * sends (`#<hash>` included) can name the budget of a hashed one.
 */
export function storeKey(limit: CompiledLimit, key: string): string {
  const full = `${limit.id}\u0000${key}`;
  return full.length <= MAX_KEY_LENGTH ? full : `${limit.id}\u0001${createHash('sha256').update(key).digest('base64url')}`;
}

/**
 * Applies rate limits to requests the rules allowed. Every limit that applies is
 * checked; a call is allowed only when all have budget, and only then does each
 * take its share (a refused call takes nothing). The clock is read once per call.
 *
 * @example
 * const limiter = new RateLimiter();
 * const outcome = limiter.apply(policySet.limits, request); // null when no limit applies
 */
export class RateLimiter {
  constructor(
    readonly store: LimitStore = new MemoryLimitStore(),
    readonly now: () => number = monotonicNow,
    /** A shared backend (Redis): budgets live there; `store` keeps offence records and the `local` fallback. */
    readonly shared: SharedLimits | null = null,
    /** Loads reported by ReportLoad, scaling the limits that opt in (loadAware). */
    readonly load: LoadBoard | null = null,
  ) {}

  /** In memory: the outcome at once. With a shared backend: a promise of it (one round trip, bounded by its timeout). */
  apply(limits: readonly CompiledLimit[], request: DecisionRequest): LimitOutcome | null | Promise<LimitOutcome | null> {
    if (limits.length === 0) return null;
    if (this.shared !== null) return applyShared(limits, request, this.store, this.shared, this.now(), this.load);
    return applyLimits(limits, request, this.store, this.now(), this.load);
  }
}

/**
 * Moves a reservation's key by `units` (negative gives back; positive takes even past
 * the burst, so an overspend waits for the refill) where it was taken; the units left
 * after. In memory at once, in Redis as a promise (the same cap in GCRA_LUA). A key
 * owes at most one whole burst beyond empty: a settle claiming 10^15 units on a key an
 * organisation shares makes it wait at most one period of its burst (a day for a daily
 * budget) before anything comes back, not for ages.
 */
export function adjustReservation(limiter: RateLimiter, reservation: Reservation, units: number): number | Promise<number> {
  const { key, emissionMs, burst } = reservation;
  if (reservation.backend === 'redis') {
    if (limiter.shared === null) return 0;
    const toleranceMs = reservation.fallbackToleranceMs;
    return limiter.shared.backend.adjust(key, emissionMs, burst, units).then((r) => {
      if (toleranceMs !== undefined) fallbackFollows(limiter.store, key, r.resetMs, toleranceMs, limiter.now());
      return r.remaining;
    });
  }
  const now = limiter.now();
  const stored = limiter.store.get(key, now);
  const tat = Math.min((stored === undefined || stored < now ? now : stored) + units * emissionMs, now + 2 * emissionMs * burst);
  limiter.store.set(key, Math.max(tat, now), now);
  const left = now + emissionMs * burst - tat;
  return left <= 0 ? 0 : Math.floor(left / emissionMs + 1e-6);
}

/** A backend every replica shares (RedisLimitBackend), and how many replicas share it. */
export interface SharedLimits {
  readonly backend: Pick<RedisLimitBackend, 'take' | 'adjust'>;
  /** The `local` fallback counts each key at the rate divided by this many replicas. */
  readonly replicas: number;
}

const dividedRates = new WeakMap<LimitRate, Map<number, LimitRate>>();

/** How long a key of this server's share of `rate` (dividedRate) takes from empty to its whole share. */
function shareToleranceMs(rate: LimitRate, replicas: number): number {
  const share = dividedRate(rate, replicas);
  return share.emissionMs * share.burst;
}

/**
 * Keeps the `local` fallback at least as far from rest as the shared backend last
 * left a key: Redis said the key is `resetMs` from rest, so the fallback holds it
 * that long from rest at this server's share of the rate (at most its whole share).
 * Without it a key spent in Redis would start the fallback empty, and an outage (or
 * a Redis an attacker can slow past `timeoutMs`) would hand out a fresh budget.
 *
 * Never lowered: Redis has not seen what the fallback let through while it was
 * away, so its word that a key is at rest (or its give-back of a settled cost) must
 * not erase that; otherwise every recovery of a flapping Redis would start the next
 * outage with a fresh share. The fallback may so refuse a little longer than Redis
 * would: it errs toward refusing.
 */
function fallbackFollows(store: LimitStore, key: string, resetMs: number, localToleranceMs: number, now: number): void {
  if (!(resetMs > 0)) return;
  const tat = now + Math.min(resetMs, localToleranceMs);
  const stored = store.get(key, now);
  if (stored === undefined || tat > stored) store.set(key, tat, now);
}

/** A rate shared by `replicas`: each gets count/replicas (burst at least 1). */
export function dividedRate(rate: LimitRate, replicas: number): LimitRate {
  if (replicas <= 1) return rate;
  let byReplicas = dividedRates.get(rate);
  if (byReplicas === undefined) dividedRates.set(rate, (byReplicas = new Map()));
  let divided = byReplicas.get(replicas);
  if (divided === undefined) {
    divided = Object.freeze({ ...rate, count: rate.count / replicas, burst: Math.max(1, Math.floor(rate.burst / replicas)), emissionMs: rate.emissionMs * replicas });
    byReplicas.set(replicas, divided);
  }
  return divided;
}

interface SharedCheck {
  readonly limit: CompiledLimit;
  readonly key: string;
  readonly cost: number;
  readonly rate: LimitRate;
  readonly offence: Offence | undefined;
}

/**
 * applyLimits with budgets in a shared backend: every key that applies is sent at
 * once (one round trip), each taken atomically there. When one limit refuses, what
 * the others took is given back (a refused call takes nothing). A key the backend
 * could not answer for follows its limit's onBackendFailure: `deny` (DENIED_BY_ERROR
 * naming the limit), `allow` (uncounted) or `local` (counted in `store` at the rate
 * divided by the replicas). Repeat offenders' records stay in `store` (per replica).
 */
export async function applyShared(limits: readonly CompiledLimit[], request: DecisionRequest, store: LimitStore, shared: SharedLimits, now: number, load: LoadBoard | null = null): Promise<LimitOutcome | null> {
  const checks: SharedCheck[] = [];
  let refused: LimitReport | null = null;
  for (let i = 0; i < limits.length; i++) {
    const limit = limits[i]!;
    const applies = limitApplies(limit, request);
    if (applies === false) continue;
    if (applies !== true) return { kind: 'error', limit, message: `limit ${limit.id}: ${applies}` };
    let key: string;
    try {
      key = storeKey(limit, limit.key(request));
    } catch (error) {
      return { kind: 'error', limit, message: `limit ${limit.id}: its key could not be made: ${conditionErrorMessage(error)}` };
    }
    const configured = rateFor(limit, request);
    const cost = costOf(limit, request, configured.burst);
    if (typeof cost === 'string') return { kind: 'error', limit, message: `limit ${limit.id}: ${cost}` };
    const rate = limit.loadAware === null || load === null ? configured : scaledRate(configured, load.factor(limit.loadAware));
    const offence = limit.backoff === null ? undefined : store.getOffence(key, now);
    if (offence !== undefined && offence.blockedUntil > now) {
      const wait = offence.blockedUntil - now;
      const report: LimitReport = { limit, rate, remaining: 0, retryAfterMs: wait, resetMs: wait, blockedUntil: offence.blockedUntil, offences: offence.level, backend: 'memory' };
      if (refused === null || report.retryAfterMs > refused.retryAfterMs) refused = report;
      continue;
    }
    checks.push({ limit, key, cost, rate, offence });
  }
  // A blocked key refuses the call: nothing needs taking.
  if (refused !== null) return { kind: 'limited', report: refused };
  if (checks.length === 0) return null;
  const answers = await Promise.all(checks.map((c) => shared.backend.take(c.key, c.rate.emissionMs, c.rate.burst, c.cost).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))))));
  let tightest: LimitReport | null = null;
  let failedDeny: { limit: CompiledLimit; message: string } | null = null;
  let localWrites: { key: string; tat: number }[] | null = null;
  let reserved: Reservation[] | null = null;
  /** Checks Redis answered for a limit whose fallback is `local`. */
  let mirrored: number[] | null = null;
  for (let i = 0; i < checks.length; i++) {
    const { limit, key, cost, rate, offence } = checks[i]!;
    const answer = answers[i]!;
    let result: GcraResult;
    let backend: LimitBackendName = 'redis';
    let reportRate = rate;
    if (answer instanceof Error) {
      const mode = limit.onBackendFailure;
      if (mode === 'deny') {
        failedDeny ??= { limit, message: `limit ${limit.id}: its shared backend did not answer (${answer.message}); this limit denies while it cannot count (onBackendFailure: deny)` };
        continue;
      }
      if (mode === 'allow') {
        const report: LimitReport = { limit, rate, remaining: rate.burst, retryAfterMs: 0, resetMs: 0, backend: 'open' };
        if (tightest === null || report.remaining < tightest.remaining) tightest = report;
        continue;
      }
      backend = 'local';
      reportRate = dividedRate(rate, shared.replicas);
      if (cost > reportRate.burst) {
        // As for a cost over the whole burst: a wait would never make room in this server's share.
        failedDeny ??= { limit, message: `limit ${limit.id}: its shared backend did not answer (${answer.message}), and cost ${cost} is more than the ${reportRate.burst} units this server's share of the burst lets a key take at once; ask again when the backend answers` };
        continue;
      }
      result = gcra(store.get(key, now), now, reportRate.emissionMs, reportRate.burst, cost);
      if (result.allowed) (localWrites ??= []).push({ key, tat: result.tat });
    } else {
      result = answer;
      if (limit.onBackendFailure === 'local') (mirrored ??= []).push(i);
    }
    // A cost of 0 is kept too: what the call really used is still to be settled.
    if (result.allowed && limit.cost !== null && cost >= 0) {
      const fallback = backend === 'redis' && limit.onBackendFailure === 'local' ? { fallbackToleranceMs: shareToleranceMs(rate, shared.replicas) } : null;
      (reserved ??= []).push({ limitId: limit.id, key, emissionMs: reportRate.emissionMs, burst: reportRate.burst, units: cost, backend: backend === 'redis' ? 'redis' : 'memory', ...fallback });
    }
    let report: LimitReport = { limit, rate: reportRate, remaining: result.remaining, retryAfterMs: result.retryAfterMs, resetMs: result.resetMs, backend };
    if (!result.allowed) {
      if (limit.backoff !== null) {
        const next = strike(limit.backoff, offence, now);
        store.setOffence(key, next, now);
        if (next.blockedUntil > now) report = Object.assign({}, report, { retryAfterMs: next.blockedUntil - now, blockedUntil: next.blockedUntil, offences: next.level });
      }
      if (refused === null || report.retryAfterMs > refused.retryAfterMs) refused = report;
      continue;
    }
    if (tightest === null || report.remaining < tightest.remaining) tightest = report;
  }
  const givenBack = refused !== null || failedDeny !== null;
  if (mirrored !== null) {
    for (const i of mirrored) {
      const answer = answers[i] as GcraResult;
      const { key, rate, cost } = checks[i]!;
      const resetMs = givenBack && answer.allowed ? answer.resetMs - cost * rate.emissionMs : answer.resetMs;
      fallbackFollows(store, key, resetMs, shareToleranceMs(rate, shared.replicas), now);
    }
  }
  if (givenBack) {
    // Give back what the shared backend took for this call (the local fallback has not written yet).
    for (let i = 0; i < checks.length; i++) {
      const answer = answers[i]!;
      if (answer instanceof Error || !answer.allowed) continue;
      const { key, rate, cost } = checks[i]!;
      if (cost > 0) shared.backend.adjust(key, rate.emissionMs, rate.burst, -cost).catch(() => undefined);
    }
    if (failedDeny !== null) return { kind: 'error', limit: failedDeny.limit, message: failedDeny.message };
    const remaining = tightest === null ? refused!.remaining : Math.min(refused!.remaining, tightest.remaining);
    return { kind: 'limited', report: { ...refused!, remaining } };
  }
  if (tightest === null) return null;
  if (localWrites !== null) for (const { key, tat } of localWrites) store.set(key, tat, now);
  return reserved === null ? { kind: 'allowed', report: tightest } : { kind: 'allowed', report: tightest, reserved };
}

/** applyLimits at a given time, `now` in milliseconds: what RateLimiter does, with the clock passed in. */
export function applyLimits(limits: readonly CompiledLimit[], request: DecisionRequest, store: LimitStore, now: number, load: LoadBoard | null = null): LimitOutcome | null {
  let tightest: LimitReport | null = null;
  let refused: LimitReport | null = null;
  let writes: { key: string; tat: number }[] | null = null;
  let reserved: Reservation[] | null = null;
  for (let i = 0; i < limits.length; i++) {
    const limit = limits[i]!;
    const applies = limitApplies(limit, request);
    if (applies === false) continue;
    if (applies !== true) return { kind: 'error', limit, message: `limit ${limit.id}: ${applies}` };
    let key: string;
    try {
      key = storeKey(limit, limit.key(request));
    } catch (error) {
      return { kind: 'error', limit, message: `limit ${limit.id}: its key could not be made: ${conditionErrorMessage(error)}` };
    }
    const configured = rateFor(limit, request);
    const cost = costOf(limit, request, configured.burst);
    if (typeof cost === 'string') return { kind: 'error', limit, message: `limit ${limit.id}: ${cost}` };
    const rate = limit.loadAware === null || load === null ? configured : scaledRate(configured, load.factor(limit.loadAware));
    const offence = limit.backoff === null ? undefined : store.getOffence(key, now);
    if (offence !== undefined && offence.blockedUntil > now) {
      // Blocked: refused without looking at the budget, and without a further strike.
      const wait = offence.blockedUntil - now;
      const report: LimitReport = { limit, rate, remaining: 0, retryAfterMs: wait, resetMs: wait, blockedUntil: offence.blockedUntil, offences: offence.level, backend: 'memory' };
      if (refused === null || report.retryAfterMs > refused.retryAfterMs) refused = report;
      continue;
    }
    const result = gcra(store.get(key, now), now, rate.emissionMs, rate.burst, cost);
    let report: LimitReport = { limit, rate, remaining: result.remaining, retryAfterMs: result.retryAfterMs, resetMs: result.resetMs, backend: 'memory' };
    if (!result.allowed) {
      if (limit.backoff !== null) {
        const next = strike(limit.backoff, offence, now);
        store.setOffence(key, next, now);
        if (next.blockedUntil > now) report = Object.assign({}, report, { retryAfterMs: next.blockedUntil - now, blockedUntil: next.blockedUntil, offences: next.level });
      }
      if (refused === null || report.retryAfterMs > refused.retryAfterMs) refused = report;
      continue;
    }
    (writes ??= []).push({ key, tat: result.tat });
    if (limit.cost !== null && cost >= 0) (reserved ??= []).push({ limitId: limit.id, key, emissionMs: rate.emissionMs, burst: rate.burst, units: cost, backend: 'memory' });
    if (tightest === null || report.remaining < tightest.remaining) tightest = report;
  }
  if (refused !== null) {
    const remaining = tightest === null ? refused.remaining : Math.min(refused.remaining, tightest.remaining);
    return { kind: 'limited', report: { ...refused, remaining } };
  }
  if (tightest === null) return null;
  for (const { key, tat } of writes!) store.set(key, tat, now);
  return reserved === null ? { kind: 'allowed', report: tightest } : { kind: 'allowed', report: tightest, reserved };
}

/**
 * A refusal's mark on a key's record: `after` refusals within `withinMs` block the
 * key for blockMs × 2^(offences so far), at most `maxMs`. The record (and with it the
 * count of offences) is forgotten once the key has gone `maxMs` since its last block
 * without one.
 */
export function strike(backoff: NonNullable<CompiledLimit['backoff']>, prior: Offence | undefined, now: number): Offence {
  const inWindow = prior !== undefined && now - prior.windowStart < backoff.withinMs;
  let strikes = inWindow ? prior.strikes + 1 : 1;
  let windowStart = inWindow ? prior.windowStart : now;
  let level = prior?.level ?? 0;
  let blockedUntil = prior?.blockedUntil ?? 0;
  if (strikes >= backoff.after) {
    blockedUntil = now + Math.min(backoff.blockMs * 2 ** Math.min(level, 40), backoff.maxMs);
    level += 1;
    strikes = 0;
    windowStart = now;
  }
  const forgetAt = Math.max(windowStart + backoff.withinMs, level > 0 ? blockedUntil + backoff.maxMs : 0);
  return { strikes, windowStart, level, blockedUntil, forgetAt };
}
