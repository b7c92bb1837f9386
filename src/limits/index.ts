/**
 * Rate limits and cost quotas: the GCRA (pure), the stores that keep its state,
 * and the limiter the decide core applies to what the rules allowed.
 */
export { gcra, type GcraResult } from './gcra.js';
export { MemoryLimitStore, type LimitStore, type Offence } from './memory.js';
export { RateLimiter, adjustReservation, applyLimits, applyShared, dividedRate, storeKey, type LimitBackendName, type SharedLimits, limitApplies, monotonicNow, rateFor, strike, type LimitOutcome, type LimitReport } from './apply.js';
export { RedisLimitBackend, BackendUnavailable, GCRA_LUA, type BackendEvents, type BackendHealth, type RedisLimitOptions } from './redis.js';
export { SettlementBook, sameCaller, type Reservation, type SettleEntry } from './settle.js';
export { LoadBoard, MAX_POOLS, factorFor, scaledRate, type LoadAware } from './load.js';
