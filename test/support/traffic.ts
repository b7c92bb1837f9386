import type { DecisionRecord } from '../../src/decisions/record.js';

/**
 * Synthetic decision traffic for the detectors: a normal population over a
 * simulated day, plus the attackers the alerts are for. Deterministic (seeded),
 * in time order, as complete DecisionRecords so the same stream can be fed to
 * the detectors directly and appended to a real decision log.
 */

export const DAY_START = Date.UTC(2026, 11, 3, 0, 0, 0);
export const HOUR = 3_600_000;

/** A small seeded PRNG (mulberry32): the same traffic on every run. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let counter = 0;

export interface Call {
  readonly time: number;
  readonly principalId: string;
  readonly action?: string;
  readonly resourceType?: string;
  readonly resourceId: string;
  readonly deny?: boolean;
  readonly caller?: string;
  readonly unauthenticated?: string;
  /** With `unauthenticated`: the unverified `sub` of the refused bearer token, as a gateway records it. */
  readonly tokenSubject?: string;
}

/** One decision as the pipeline would record it. */
export function record(call: Call): DecisionRecord {
  counter++;
  const deny = call.deny === true || call.unauthenticated !== undefined;
  return {
    decisionId: `0190aaaa-0000-7000-8000-${counter.toString(16).padStart(12, '0')}`,
    time: call.time,
    caller: call.caller ?? '10.0.0.1:5000',
    requestId: null,
    principalId: call.unauthenticated !== undefined ? '' : call.principalId,
    action: call.action ?? 'predict',
    resourceType: call.resourceType ?? 'model',
    resourceId: call.resourceId,
    effect: deny ? 'DENY' : 'ALLOW',
    reason: call.unauthenticated !== undefined ? 'DENIED_UNAUTHENTICATED' : deny ? 'DENIED_BY_DEFAULT' : 'ALLOWED_BY_RULE',
    ruleIds: deny ? [] : ['allow-predict'],
    errors: call.unauthenticated !== undefined ? [{ ruleId: 'authn', message: call.unauthenticated }] : [],
    policyVersion: 'sha256:test',
    request: { principal: { roles: [], attributes: {} }, resource: { attributes: {} }, context: { attributes: {} } },
    latencyUs: 10,
    ...(call.tokenSubject === undefined ? {} : { details: { authn: { tokenSubject: call.tokenSubject } } }),
  };
}

/** `n` calls spread over the hour starting at `start`. */
function spread(rand: () => number, start: number, n: number, make: (time: number, k: number) => Call): Call[] {
  const out: Call[] = [];
  for (let k = 0; k < n; k++) out.push(make(start + Math.floor(rand() * HOUR), k));
  return out;
}

export interface Traffic {
  readonly records: DecisionRecord[];
}

export interface TrafficOptions {
  readonly principals?: number;
  readonly hours?: number;
  /** Add the attackers (stolen key, prober, scraper, extraction, failing key). */
  readonly attackers?: boolean;
  readonly seed?: number;
}

/**
 * A day of traffic: `principals` normal users (5 to 15 predicts an hour on
 * their own 3 models, 3% denied, now and then a mistyped key), and with
 * `attackers`: `svc-stolen` (10 an hour, then 1,000 in hour 12: 100×),
 * `prober` (100 calls in hour 5, 80% denied), `scraper` (40 models in hour 8),
 * `extractor` (10,000 predicts on `fraud-v3` over hours 14-15) and a stolen
 * key guesser (60 failed authentications with key `k_guess` from 10.9.9.9 in hour 3)
 * and a token forger (40 bearer tokens in `maya`'s name refused in hour 4, each
 * from another address).
 */
export function dayOfTraffic(options: TrafficOptions = {}): DecisionRecord[] {
  const rand = random(options.seed ?? 7);
  const hours = options.hours ?? 24;
  const calls: Call[] = [];
  for (let p = 0; p < (options.principals ?? 200); p++) {
    const id = `user-${p}`;
    const models = [0, 1, 2].map((m) => `model-${(p * 3 + m) % 50}`);
    for (let h = 0; h < hours; h++) {
      const n = 5 + Math.floor(rand() * 11);
      calls.push(...spread(rand, DAY_START + h * HOUR, n, (time) => ({ time, principalId: id, resourceId: models[Math.floor(rand() * 3)]!, deny: rand() < 0.03 })));
      if (rand() < 0.05) calls.push({ time: DAY_START + h * HOUR + Math.floor(rand() * HOUR), principalId: '', resourceId: '/v1/models', caller: `10.1.${p % 250}.7:4000`, unauthenticated: `UNKNOWN_KEY: API key k_typo${p} is not recognised` });
    }
  }
  if (options.attackers !== false) {
    for (let h = 0; h < hours; h++) {
      const n = h === 12 ? 1000 : 10;
      calls.push(...spread(rand, DAY_START + h * HOUR, n, (time) => ({ time, principalId: 'svc-stolen', resourceId: 'model-1' })));
    }
    calls.push(...spread(rand, DAY_START + 5 * HOUR, 100, (time, k) => ({ time, principalId: 'prober', action: ['predict', 'delete', 'export', 'admin', 'train'][k % 5], resourceId: 'model-2', deny: k % 5 !== 0 })));
    calls.push(...spread(rand, DAY_START + 8 * HOUR, 80, (time, k) => ({ time, principalId: 'scraper', action: 'describe', resourceId: `model-${k % 40}` })));
    for (const h of [14, 15]) calls.push(...spread(rand, DAY_START + h * HOUR, 5000, (time) => ({ time, principalId: 'extractor', resourceId: 'fraud-v3' })));
    calls.push(...spread(rand, DAY_START + 3 * HOUR, 60, (time, k) => ({ time, principalId: '', resourceId: '/v1/models', caller: `10.9.9.9:${40000 + k}`, unauthenticated: 'UNKNOWN_KEY: API key k_guess is not recognised' })));
    calls.push(...spread(rand, DAY_START + 4 * HOUR, 40, (time, k) => ({ time, principalId: '', resourceId: '/v1/models', caller: `10.8.${k}.1:4000`, unauthenticated: 'BAD_SIGNATURE: token signature does not verify', tokenSubject: 'maya' })));
  }
  // Stable order: by time, then by the order made.
  return calls
    .map((call, i) => ({ call, i }))
    .sort((a, b) => a.call.time - b.call.time || a.i - b.i)
    .map(({ call }) => record(call));
}
