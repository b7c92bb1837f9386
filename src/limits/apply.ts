import { createHash } from 'node:crypto';
import { conditionErrorMessage, type ConditionInput } from '../policy/condition.js';
import type { CompiledLimit, LimitRate } from '../policy/limits.js';
import type { DecisionRequest } from '../types.js';
import { gcra } from './gcra.js';
import { MemoryLimitStore, type LimitStore } from './memory.js';

/** The state of the limit a decision reports: the one that refused, or the tightest of those that applied. */
export interface LimitReport {
  readonly limit: CompiledLimit;
  readonly rate: LimitRate;
  readonly remaining: number;
  /** 0 when allowed. */
  readonly retryAfterMs: number;
  readonly resetMs: number;
}

/**
 * What the limits made of a request the rules allowed:
 * - `allowed`: every limit that applies had budget; each took its share.
 * - `limited`: a limit had none; no limit took anything. `report` names the one with the longest wait.
 * - `error`: a limit's `when`, key or cost could not be evaluated; nothing was taken (fail closed).
 */
export type LimitOutcome =
  | { readonly kind: 'allowed'; readonly report: LimitReport }
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
  for (let i = 0; i < matchers.length; i++) {
    const matcher = matchers[i]!;
    if (!matcher.test(matcher.read(request))) return false;
  }
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
function costOf(limit: CompiledLimit, request: DecisionRequest): number | string {
  if (limit.cost === null) return 1;
  let value: unknown;
  try {
    value = limit.cost(request as ConditionInput);
  } catch (error) {
    return `cost could not be evaluated: ${conditionErrorMessage(error)}`;
  }
  const cost = typeof value === 'bigint' ? Number(value) : value;
  if (typeof cost !== 'number' || !Number.isFinite(cost) || cost < 0) return `cost must be a finite number of at least 0, got ${typeof value === 'number' ? String(value) : typeof value}`;
  return cost;
}

function storeKey(limit: CompiledLimit, key: string): string {
  const full = `${limit.id}\u0000${key}`;
  return full.length <= MAX_KEY_LENGTH ? full : `${limit.id}\u0000#${createHash('sha256').update(key).digest('base64url')}`;
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
    private readonly clock: () => number = monotonicNow,
  ) {}

  apply(limits: readonly CompiledLimit[], request: DecisionRequest): LimitOutcome | null {
    if (limits.length === 0) return null;
    return applyLimits(limits, request, this.store, this.clock());
  }
}

/** applyLimits at a given time, `now` in milliseconds: what RateLimiter does, with the clock passed in. */
export function applyLimits(limits: readonly CompiledLimit[], request: DecisionRequest, store: LimitStore, now: number): LimitOutcome | null {
  let tightest: LimitReport | null = null;
  let refused: LimitReport | null = null;
  let writes: { key: string; tat: number }[] | null = null;
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
    const cost = costOf(limit, request);
    if (typeof cost === 'string') return { kind: 'error', limit, message: `limit ${limit.id}: ${cost}` };
    const rate = rateFor(limit, request);
    const result = gcra(store.get(key, now), now, rate.emissionMs, rate.burst, cost);
    const report: LimitReport = { limit, rate, remaining: result.remaining, retryAfterMs: result.retryAfterMs, resetMs: result.resetMs };
    if (!result.allowed) {
      if (refused === null || report.retryAfterMs > refused.retryAfterMs) refused = report;
      continue;
    }
    (writes ??= []).push({ key, tat: result.tat });
    if (tightest === null || report.remaining < tightest.remaining) tightest = report;
  }
  if (refused !== null) {
    const remaining = tightest === null ? refused.remaining : Math.min(refused.remaining, tightest.remaining);
    return { kind: 'limited', report: { ...refused, remaining } };
  }
  if (tightest === null) return null;
  for (const { key, tat } of writes!) store.set(key, tat, now);
  return { kind: 'allowed', report: tightest };
}
