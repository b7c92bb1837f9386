import { describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { resolveDetectors } from '../../src/analysis/detector-config.js';
import { alertId, Detectors, sourceOf } from '../../src/analysis/detectors.js';
import { dayOfTraffic, DAY_START, HOUR, record } from '../support/traffic.js';

function run(records: ReturnType<typeof dayOfTraffic>, settings = {}): { alerts: Alert[]; detectors: Detectors } {
  const alerts: Alert[] = [];
  const detectors = new Detectors(resolveDetectors(settings), (a) => alerts.push(a));
  for (const r of records) detectors.observe(r);
  return { alerts, detectors };
}

const attacks = dayOfTraffic();
const normal = dayOfTraffic({ attackers: false });

describe('detectors over a simulated day', () => {
  it('raise nothing for the normal population', () => {
    expect(normal.length).toBeGreaterThan(40_000);
    expect(run(normal).alerts).toEqual([]);
  });

  it('raise each attacker its alert, and nothing for anyone else', () => {
    const { alerts } = run(attacks);
    const found = alerts.map((a) => `${a.type} ${a.subject.kind}:${a.subject.id}${a.resource ? ` ${a.resource.id}` : ''} @${(a.windowStart - DAY_START) / HOUR}`).sort();
    expect(found).toEqual(
      [
        // The guesser's UNKNOWN_KEY names an id it chose: counted by its address, not by the id.
        'auth-failures source:10.9.9.9 @3',
        // Forged tokens in maya's name, from forty addresses: only their (unverified) subject adds up.
        'auth-failures token-subject:maya @4',
        'baseline principal:extractor @14',
        'baseline principal:svc-stolen @12',
        'extraction principal:extractor fraud-v3 @14',
        'extraction principal:extractor fraud-v3 @15',
        // 1,000 predicts on one model in an hour is past the extraction threshold too. Early in hour 13
        // the sliding window still held most of them, but hour 12's alert stands for those: hour 13's own 10 raise nothing.
        'extraction principal:svc-stolen model-1 @12',
        'probing principal:prober @5',
        'reconnaissance principal:scraper @8',
        'volume principal:extractor @14',
        'volume principal:extractor @15',
        // Its usual 10 an hour, from hour 11 still in the sliding window, and the 1,000 of hour 12.
        'volume principal:svc-stolen @12',
      ].sort(),
    );
  });

  it('describe what crossed what, with example decisions from the window', () => {
    const { alerts } = run(attacks);
    const stolen = alerts.find((a) => a.type === 'baseline' && a.subject.id === 'svc-stolen')!;
    // The sliding count (this hour's calls and the share of the hour before's it still covers) on the call that crossed.
    expect(stolen.observed).toBeGreaterThan(stolen.threshold);
    expect(stolen.observed).toBeLessThanOrEqual(stolen.threshold + 1);
    expect(stolen.baseline).toBeGreaterThan(4);
    expect(stolen.baseline).toBeLessThan(20);
    expect(stolen.threshold).toBe(200);
    expect(stolen.windowEnd - stolen.windowStart).toBe(HOUR);
    expect(stolen.decisionIds).toHaveLength(5);
    const ids = new Set(attacks.filter((r) => r.principalId === 'svc-stolen').map((r) => r.decisionId));
    for (const id of stolen.decisionIds) expect(ids.has(id)).toBe(true);
    expect(stolen.summary).toContain('svc-stolen');
    const probe = alerts.find((a) => a.type === 'probing')!;
    expect(probe.observed).toBeGreaterThan(50);
    expect(probe.threshold).toBe(50);
    const scrape = alerts.find((a) => a.type === 'reconnaissance')!;
    expect([scrape.observed, scrape.threshold]).toEqual([6, 5]);
    const pulled = alerts.find((a) => a.type === 'extraction' && a.subject.id === 'extractor')!;
    expect(pulled.resource).toEqual({ type: 'model', id: 'fraud-v3' });
    expect([pulled.observed, pulled.threshold]).toEqual([501, 500]);
    expect(pulled.id).toBe(alertId('extraction', { kind: 'principal', id: 'extractor' }, pulled.windowStart, { type: 'model', id: 'fraud-v3' }));
  });

  it('give the same alerts, with the same ids, for the same stream', () => {
    expect(run(attacks).alerts).toEqual(run(attacks).alerts);
  });

  it('follow configured thresholds and switches', () => {
    const { alerts } = run(attacks, { volume: { maxRequests: 20_000 }, probing: { enabled: false }, reconnaissance: { maxResources: 50 }, extraction: { maxCalls: 6000 }, authFailures: { maxFailures: 100 }, baseline: { factor: 1000 } });
    expect(alerts).toEqual([]);
    const recon = run(attacks, { reconnaissance: { resourceType: 'dataset' } }).alerts.filter((a) => a.type === 'reconnaissance');
    expect(recon).toEqual([]);
  });

  it('judge a principal against its own baseline: a steady batch job is normal for it', () => {
    const job = [];
    for (let h = 0; h < 24; h++) for (let k = 0; k < 900; k++) job.push(record({ time: DAY_START + h * HOUR + k * 4000, principalId: 'batch-job', resourceId: 'model-1' }));
    const alerts = run(job).alerts.filter((a) => a.type === 'baseline');
    // Judged against the floor in its first window only; its own figure after.
    expect(alerts.map((a) => (a.windowStart - DAY_START) / HOUR)).toEqual([0]);
  });

  it('keep memory bounded, evicting the least recently active subjects and counting them', () => {
    const many = [];
    for (let p = 0; p < 5000; p++) many.push(record({ time: DAY_START + p, principalId: `p${p}`, resourceId: 'model-1' }));
    const { detectors } = run(many, { maxSubjects: 1000 });
    expect(detectors.subjects).toBeLessThanOrEqual(2000);
    expect(detectors.evictions).toBe(8000);
  });

  it('count a model again from zero once its evicted state comes back, for the principal that called it last too', () => {
    // P's last model stays fraud-v3 while Q's calls evict the pair (P, fraud-v3); 3 + 3 calls are then two counts of 3, never 6.
    const calls = [];
    for (let k = 0; k < 3; k++) calls.push(record({ time: DAY_START + k, principalId: 'P', resourceId: 'fraud-v3' }));
    calls.push(record({ time: DAY_START + 10, principalId: 'Q', resourceId: 'a' }), record({ time: DAY_START + 11, principalId: 'Q', resourceId: 'b' }));
    for (let k = 0; k < 3; k++) calls.push(record({ time: DAY_START + 20 + k, principalId: 'P', resourceId: 'fraud-v3' }));
    const settings = { maxSubjects: 2, extraction: { maxCalls: 4 }, volume: { maxRequests: 100 }, baseline: { enabled: false } };
    const { alerts, detectors } = run(calls, settings);
    expect(alerts).toEqual([]);
    expect(detectors.evictions).toBe(2);
    // Without the evictions, the same six calls are counted together.
    expect(run(calls, { ...settings, maxSubjects: 10 }).alerts.map((a) => [a.type, a.observed])).toEqual([['extraction', 5]]);
  });

  it('keep counting a model for a principal that was evicted while its model state stayed', () => {
    // R's read evicts P's state (principals hold 2), not the pair (P, fraud-v3): P's 3 + 2 calls are counted together.
    const calls = [];
    for (let k = 0; k < 3; k++) calls.push(record({ time: DAY_START + k, principalId: 'P', resourceId: 'fraud-v3' }));
    calls.push(record({ time: DAY_START + 10, principalId: 'Q', resourceId: 'fraud-v3' }), record({ time: DAY_START + 11, principalId: 'R', resourceId: 'fraud-v3', action: 'read' }));
    for (let k = 0; k < 2; k++) calls.push(record({ time: DAY_START + 20 + k, principalId: 'P', resourceId: 'fraud-v3' }));
    const { alerts, detectors } = run(calls, { maxSubjects: 2, extraction: { maxCalls: 4 }, volume: { maxRequests: 100 }, baseline: { enabled: false } });
    expect(alerts.map((a) => [a.type, a.subject.id, a.observed])).toEqual([['extraction', 'P', 5]]);
    expect(detectors.evictions).toBe(2);
  });

  it('read the source address without the port', () => {
    expect(sourceOf('10.0.0.7:41234')).toBe('10.0.0.7');
    expect(sourceOf('ipv4:10.0.0.7:41234')).toBe('10.0.0.7');
    expect(sourceOf('[::1]:5000')).toBe('[::1]');
    expect(sourceOf('spiffe://acme/gw')).toBe('spiffe://acme/gw');
  });
});

describe('auth-failures names an API key only from the authenticator\'s own words', () => {
  // A caller that is not a PEP could ask AuthZEN about a subject named "API key k_gw": the
  // NOT_A_PEP refusal quotes it, and a match anywhere in the message raised an alert on the gateway's key.
  it('counts REVOKED and EXPIRED refusals against their key, and no key a refusal merely quotes', () => {
    const quoted = Array.from({ length: 60 }, (_, k) =>
      record({ time: DAY_START + 3 * HOUR + k * 1000, principalId: '', resourceId: '/access/v1/evaluation', caller: `10.7.7.${k % 200}:4000`, unauthenticated: 'NOT_A_PEP: api-key:dana may ask only about subject "dana", not "API key k_gw"; list the caller in authzen.peps to let it ask about others' }),
    );
    const refused = Array.from({ length: 60 }, (_, k) =>
      record({ time: DAY_START + 3 * HOUR + k * 1000, principalId: '', resourceId: '/v1/models', caller: `10.6.6.${k % 200}:4000`, unauthenticated: 'REVOKED: API key k_old was revoked at 2025-01-01T00:00:00.000Z' }),
    );
    const keys = run([...quoted, ...refused]).alerts.filter((a) => a.type === 'auth-failures' && a.subject.kind === 'api-key').map((a) => a.subject.id);
    expect(keys).toEqual(['k_old']);
  });
});

describe('auth-failures under a flood of made-up key ids', () => {
  // UNKNOWN_KEY quotes whatever id the caller sent: one new id per request was one new subject each.
  const unknown = (k: number, id: string, source = '10.5.5.5'): ReturnType<typeof record> =>
    record({ time: DAY_START + 3 * HOUR + k, principalId: '', resourceId: '/v1/models', caller: `${source}:${40000 + (k % 20000)}`, unauthenticated: `UNKNOWN_KEY: API key ${id} is not recognised` });

  it('counts UNKNOWN_KEY by its source only: a thousand ids, each sent past the threshold, make one alert and one subject', () => {
    const flood = [];
    for (let k = 0; k < 6000; k++) flood.push(unknown(k, `k_made_up_${Math.floor(k / 6)}`));
    const { alerts, detectors } = run(flood, { authFailures: { maxFailures: 5 } });
    // The 501st failure is past maxTotal too: one alert about all callers together, in no map.
    expect(alerts.map((a) => `${a.subject.kind}:${a.subject.id}`)).toEqual(['source:10.5.5.5', 'all-callers:*']);
    expect(detectors.subjects).toBe(1);
  });

  it("keeps a real key's count through a flood of made-up token subjects and sources past the cap, and raises its alert", () => {
    const revoked = (k: number): ReturnType<typeof record> =>
      record({ time: DAY_START + 3 * HOUR + k, principalId: '', resourceId: '/v1/models', caller: `10.6.6.${k}:4000`, unauthenticated: 'REVOKED: API key k_leaked was revoked at 2025-01-01T00:00:00.000Z' });
    const stream = [revoked(0), revoked(1), revoked(2)];
    for (let k = 0; k < 500; k++)
      stream.push(record({ time: DAY_START + 3 * HOUR + 10 + k, principalId: '', resourceId: '/v1/models', caller: `10.4.${k >> 8}.${k & 255}:4000`, unauthenticated: 'BAD_SIGNATURE: token signature does not verify', tokenSubject: `junk-${k}` }));
    stream.push(revoked(600), revoked(601), revoked(602));
    const { alerts, detectors } = run(stream, { maxSubjects: 50, authFailures: { maxFailures: 5 } });
    expect(detectors.evictions).toBeGreaterThan(900);
    expect(alerts.filter((a) => a.subject.kind === 'api-key').map((a) => [a.subject.id, a.observed])).toEqual([['k_leaked', 6]]);
  });
});

describe('auth-failures about names a caller makes up: token subjects and sources', () => {
  const BAD = 'BAD_SIGNATURE: token signature does not verify';
  /** A refused token naming `sub`, from `source`, at `ms` past 03:00. */
  const refused = (ms: number, sub: string | undefined, source = '10.5.5.5'): ReturnType<typeof record> =>
    record({ time: DAY_START + 3 * HOUR + ms, principalId: '', resourceId: '/v1/models', caller: `${source}:4000`, unauthenticated: BAD, ...(sub === undefined ? {} : { tokenSubject: sub }) });
  const label = (a: Alert): string => `${a.subject.kind}:${a.subject.id}@${(a.windowStart - DAY_START) / HOUR}`;

  it('raise at most maxAlerts (10) per window about token subjects, then one about the spread; the next window starts again', () => {
    const stream = [];
    // 30 made-up subjects past the threshold in hour 3, from 30 addresses (3 failures each, so no address crosses).
    for (let k = 0; k < 30; k++) for (let i = 0; i < 6; i++) stream.push(refused(k * 10 + i, `made-up-${k}`, `10.6.${k}.${i}`));
    // 12 more in hour 5 (no carry from hour 3: a whole window between).
    for (let k = 0; k < 12; k++) for (let i = 0; i < 6; i++) stream.push(refused(2 * HOUR + k * 10 + i, `later-${k}`, `10.7.${k}.${i}`));
    const { alerts } = run(stream, { authFailures: { maxFailures: 5 } });
    expect(alerts.map(label)).toEqual([
      ...Array.from({ length: 10 }, (_, k) => `token-subject:made-up-${k}@3`),
      'many-token-subjects:*@3',
      ...Array.from({ length: 10 }, (_, k) => `token-subject:later-${k}@5`),
      'many-token-subjects:*@5',
    ]);
    const spread = alerts[10]!;
    expect(spread).toMatchObject({ type: 'auth-failures', observed: 11, threshold: 10, raisedAt: DAY_START + 3 * HOUR + 105 });
    // Every failure of the 20 names and the 2 names not alerted by name, six each: what the `*` alerts stand for.
    const { detectors } = run(stream, { authFailures: { maxFailures: 5 } });
    expect(detectors.summarised).toEqual({ tokenSubjects: (20 + 2) * 6, sources: 0 });
    expect(spread.id).toBe(alertId('auth-failures', { kind: 'many-token-subjects', id: '*' }, DAY_START + 3 * HOUR));
    expect(spread.summary).toContain('11 token subjects past 5 failed authentications each, more than the 10 alerted one by one in this window');
    expect(spread.decisionIds).toHaveLength(5);
  });

  it("raise at most maxAlerts per window about sources, then one about the spread; a token subject named '*' is its own alert", () => {
    const stream = [];
    // Seven addresses past the threshold with tokens naming nobody, then '*' as a token subject from one of them.
    for (let k = 0; k < 7; k++) for (let i = 0; i < 4; i++) stream.push(refused(k * 10 + i, undefined, `2001:db8::${k}`));
    for (let i = 0; i < 4; i++) stream.push(refused(100 + i, '*', '2001:db8::0'));
    const { alerts } = run(stream, { authFailures: { maxFailures: 3, maxAlerts: 4 } });
    expect(alerts.map(label)).toEqual(['source:2001:db8::0@3', 'source:2001:db8::1@3', 'source:2001:db8::2@3', 'source:2001:db8::3@3', 'many-sources:*@3', 'token-subject:*@3']);
    expect(alerts[4]).toMatchObject({ observed: 5, threshold: 4 });
    expect(new Set(alerts.map((a) => a.id)).size).toBe(alerts.length);
  });

  it('do not cap real API keys: every revoked key past the threshold is alerted', () => {
    const stream = [];
    for (let k = 0; k < 15; k++) for (let i = 0; i < 4; i++) stream.push(record({ time: DAY_START + 3 * HOUR + k * 10 + i, principalId: '', resourceId: '/v1/models', caller: `10.8.${k}.${i}:4000`, unauthenticated: `REVOKED: API key k_${k} was revoked at 2025-01-01T00:00:00.000Z` }));
    const keys = run(stream, { authFailures: { maxFailures: 3, maxAlerts: 2 } }).alerts.filter((a) => a.subject.kind === 'api-key');
    expect(keys).toHaveLength(15);
  });

  it("count token subjects and sources apart: one address sending a new sub each time cannot evict its own count", () => {
    // 500 refused tokens from one address, each with a new sub: in a map shared with the subs, the
    // address's count was the oldest entry and evicted every 50 failures, never reaching 100.
    const stream = Array.from({ length: 500 }, (_, k) => refused(k, `junk-${k}`));
    const { alerts } = run(stream, { maxSubjects: 50, authFailures: { maxFailures: 100 } });
    expect(alerts.map((a) => [label(a), a.observed])).toEqual([['source:10.5.5.5@3', 101]]);
  });

  it('count token subjects and sources apart: junk addresses cannot evict a token subject\'s count', () => {
    const stream = [refused(0, 'dana', '10.9.9.9'), refused(1, 'dana', '10.9.9.9'), refused(2, 'dana', '10.9.9.9')];
    for (let k = 0; k < 500; k++) stream.push(refused(10 + k, undefined, `10.4.${k >> 8}.${k & 255}`));
    stream.push(refused(600, 'dana', '10.9.9.9'), refused(601, 'dana', '10.9.9.9'), refused(602, 'dana', '10.9.9.9'));
    const { alerts } = run(stream, { maxSubjects: 50, authFailures: { maxFailures: 5 } });
    expect(alerts.filter((a) => a.subject.kind === 'token-subject').map((a) => [a.subject.id, a.observed])).toEqual([['dana', 6]]);
  });
});

describe('auth-failures from all callers together', () => {
  /** A refused token with a sub and an address of its own, at `ms` past 03:00: no name ever fails twice. */
  const sprayed = (ms: number, k: number): ReturnType<typeof record> =>
    record({ time: DAY_START + 3 * HOUR + ms, principalId: '', resourceId: '/v1/models', caller: `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}:4000`, unauthenticated: 'BAD_SIGNATURE: token signature does not verify', tokenSubject: `sprayed-${k}` });
  const spray = (n: number, from = 0, start = 0): ReturnType<typeof record>[] => Array.from({ length: n }, (_, k) => sprayed(start + k * 100, from + k));

  it('raise one alert past maxTotal (500) for a spray with a new token subject and a new source each time, which no name alerts', () => {
    expect(run(spray(500)).alerts).toEqual([]);
    const { alerts } = run(spray(3000));
    expect(alerts.map((a) => `${a.type} ${a.subject.kind}:${a.subject.id}`)).toEqual(['auth-failures all-callers:*']);
    const all = alerts[0]!;
    expect(all).toMatchObject({ observed: 501, threshold: 500, windowStart: DAY_START + 3 * HOUR, windowEnd: DAY_START + 4 * HOUR, raisedAt: DAY_START + 3 * HOUR + 500 * 100 });
    expect(all.id).toBe(alertId('auth-failures', { kind: 'all-callers', id: '*' }, DAY_START + 3 * HOUR));
    expect(all.summary).toContain('501 failed authentications in the sliding window from all callers together, more than 500');
    expect(all.decisionIds).toHaveLength(5);
  });

  it('raise it once per window, count across a window boundary, and follow authFailures.maxTotal and enabled', () => {
    // 30 in hour 3 and 30 in hour 5 (a whole window between: nothing carried), past a maxTotal of 25 in each.
    const twoWindows = [...spray(30), ...spray(30, 1000, 2 * HOUR)];
    expect(run(twoWindows, { authFailures: { maxTotal: 25 } }).alerts.map((a) => [(a.windowStart - DAY_START) / HOUR, a.observed])).toEqual([
      [3, 26],
      [5, 26],
    ]);
    // 20 at the end of hour 3 and 20 at the start of hour 4: 20 and 20 apart, 40 in the sliding hour.
    const split = [...spray(20, 0, HOUR - 3_000), ...spray(20, 1000, HOUR + 1_000)];
    expect(run(split, { authFailures: { maxTotal: 30 } }).alerts.map((a) => [(a.windowStart - DAY_START) / HOUR, a.subject.kind])).toEqual([[4, 'all-callers']]);
    expect(run(spray(3000), { authFailures: { maxTotal: 3000 } }).alerts).toEqual([]);
    expect(run(spray(3000), { authFailures: { enabled: false } }).alerts).toEqual([]);
  });

  it('count every failed authentication, alerted by name or not, and hold no state per name for it', () => {
    // One address failing 600 times is alerted by its name, and counted in the total too.
    const one = Array.from({ length: 600 }, (_, k) => record({ time: DAY_START + 3 * HOUR + k, principalId: '', resourceId: '/v1/models', caller: '10.5.5.5:4000', unauthenticated: 'UNKNOWN_KEY: API key k_x is not recognised' }));
    const { alerts, detectors } = run(one);
    expect(alerts.map((a) => [a.subject.kind, a.observed])).toEqual([
      ['source', 21],
      ['all-callers', 501],
    ]);
    expect(detectors.subjects).toBe(1);
    // Evicting every name (a map of 50 under a spray of 3,000) loses nothing of the total.
    expect(run(spray(3000), { maxSubjects: 50 }).alerts.map((a) => a.observed)).toEqual([501]);
  });
});

describe("a suspended principal's own refusals", () => {
  it('raise no alert about it, however many: they are the suspension at work, and would renew it for ever', () => {
    const calls = Array.from({ length: 600 }, (_, i) => ({ ...record({ time: DAY_START + i * 1000, principalId: 'dana', resourceId: 'fraud-v3', deny: true }), reason: 'DENIED_BY_SUSPENSION' as const }));
    expect(run(calls, { volume: { maxRequests: 100 } }).alerts).toEqual([]);
    // The same refusals for any other reason are probing, past the volume (and more).
    const denied = calls.map((c) => ({ ...c, reason: 'DENIED_BY_DEFAULT' as const }));
    expect(run(denied, { volume: { maxRequests: 100 } }).alerts.map((a) => a.type)).toEqual(expect.arrayContaining(['probing', 'volume']));
  });
});

const BOUNDARY = DAY_START + 10 * HOUR;
/** `n` decisions, `step` ms apart (a second by default), the first at `start`. */
const calls = (start: number, n: number, make: (time: number, k: number) => Parameters<typeof record>[0], step = 1000) => Array.from({ length: n }, (_, k) => record(make(start + k * step, k)));
/** Type, subject and window (hours since DAY_START) of each alert, baseline off unless `settings` turn it on. */
const alertsOf = (records: ReturnType<typeof record>[], settings: object) => run(records, { baseline: { enabled: false }, ...settings }).alerts.map((a) => [a.type, a.subject.id, (a.windowStart - DAY_START) / HOUR]);

describe('windows slide: a burst split across a window boundary is counted whole', () => {
  it('1,800 calls in the half hour around a boundary (900 on each side) raise volume and extraction; fixed windows saw 900 and 900', () => {
    const burst = calls(BOUNDARY - 900_000, 1_800, (time) => ({ time, principalId: 'split', resourceId: 'fraud-v3' }));
    expect(alertsOf(burst, { extraction: { maxCalls: 1_000 } })).toEqual([
      ['volume', 'split', 10],
      ['extraction', 'split', 10],
    ]);
  });

  it('probing, reconnaissance and auth failures split across a boundary are raised too', () => {
    const probing = calls(BOUNDARY - 12_000, 24, (time, k) => ({ time, principalId: 'prober', action: 'delete', resourceId: 'model-1', deny: k % 4 !== 0 }));
    const models = calls(BOUNDARY - 4_000, 8, (time, k) => ({ time, principalId: 'scraper', action: 'read', resourceId: `model-${k}` }));
    const failures = calls(BOUNDARY - 20_000, 40, (time) => ({ time, principalId: '', resourceId: '/v1/models', caller: '10.9.9.9:4000', unauthenticated: 'REVOKED: API key k_revoked was revoked at 2025-01-01T00:00:00.000Z' }));
    const settings = { probing: { minRequests: 20 }, reconnaissance: { maxResources: 5 }, authFailures: { maxFailures: 30 } };
    expect(alertsOf([...probing, ...models, ...failures].sort((a, b) => a.time - b.time), settings).sort()).toEqual(
      [
        ['auth-failures', 'k_revoked', 10],
        ['auth-failures', '10.9.9.9', 10],
        ['probing', 'prober', 10],
        ['reconnaissance', 'scraper', 10],
      ].sort(),
    );
  });

  it('a model touched in both windows counts once', () => {
    const twice = [...calls(BOUNDARY - 4_000, 4, (time, k) => ({ time, principalId: 'reader', action: 'read', resourceId: `model-${k}` })), ...calls(BOUNDARY, 4, (time, k) => ({ time, principalId: 'reader', action: 'read', resourceId: `model-${k}` }))];
    expect(alertsOf(twice, { reconnaissance: { maxResources: 5 } })).toEqual([]);
  });

  it('a steady rate just under the threshold raises nothing, hour after hour', () => {
    // 990 calls an hour, evenly spaced, for a day: the sliding count stays at 990.
    const steady = calls(DAY_START, 24 * 990, (time) => ({ time: DAY_START + Math.floor(((time - DAY_START) / 1000) * (HOUR / 990)), principalId: 'steady', resourceId: 'model-1' }));
    expect(alertsOf(steady, { extraction: { maxCalls: 1_000 } })).toEqual([]);
  });

  it('what the window before counted fades as this one goes on, and a gap of a whole window forgets it', () => {
    // 800 in the last minutes of hour 9, then 600 in hour 10: 600 + 800 × (1 − elapsed) passes 1,000 only early in hour 10.
    const before = calls(BOUNDARY - 800_000, 800, (time) => ({ time, principalId: 'fading', resourceId: 'model-1' }));
    const early = calls(BOUNDARY, 600, (time) => ({ time, principalId: 'fading', resourceId: 'model-1' }));
    const late = early.map((r) => ({ ...r, time: r.time + HOUR / 2 }));
    const gap = early.map((r) => ({ ...r, time: r.time + HOUR }));
    const settings = { extraction: { enabled: false } };
    expect(alertsOf([...before, ...early], settings)).toEqual([['volume', 'fading', 10]]);
    expect(alertsOf([...before, ...late], settings)).toEqual([]);
    expect(alertsOf([...before, ...gap], settings)).toEqual([]);
  });
});

describe('one burst that crosses a threshold late in a window pages once, not again in the next', () => {
  // Each burst crosses in the last minutes of 09:00–10:00; a handful of decisions after 10:00 then found the
  // sliding count still over (the carried share of the burst alone was), and the same burst was alerted twice.
  const BEFORE = BOUNDARY - 120_000;
  const after = (n: number, make: (time: number, k: number) => Parameters<typeof record>[0]) => calls(BOUNDARY, n, make);
  const REVOKED = 'REVOKED: API key k_revoked was revoked at 2025-01-01T00:00:00.000Z';
  const BAD = 'BAD_SIGNATURE: token signature does not verify';

  it('volume and extraction: 1,200 predicts in the last two minutes of hour 9, then five after 10:00', () => {
    const burst = [...calls(BEFORE, 1_200, (time) => ({ time, principalId: 'burst', resourceId: 'fraud-v3' }), 100), ...after(5, (time) => ({ time, principalId: 'burst', resourceId: 'fraud-v3' }))];
    expect(alertsOf(burst, {})).toEqual([
      ['extraction', 'burst', 9],
      ['volume', 'burst', 9],
    ]);
  });

  it('probing: 40 calls, three in four denied, in the last minute of hour 9, then five allowed after 10:00', () => {
    const probe = [...calls(BOUNDARY - 40_000, 40, (time, k) => ({ time, principalId: 'prober', action: 'delete', resourceId: 'model-1', deny: k % 4 !== 0 })), ...after(5, (time) => ({ time, principalId: 'prober', resourceId: 'model-1' }))];
    expect(alertsOf(probe, {})).toEqual([['probing', 'prober', 9]]);
  });

  it('reconnaissance: eight models in the last seconds of hour 9, then one of them again after 10:00', () => {
    const scan = [...calls(BOUNDARY - 8_000, 8, (time, k) => ({ time, principalId: 'scraper', action: 'read', resourceId: `model-${k}` })), ...after(5, (time) => ({ time, principalId: 'scraper', action: 'read', resourceId: 'model-0' }))];
    expect(alertsOf(scan, {})).toEqual([['reconnaissance', 'scraper', 9]]);
  });

  it('baseline: a principal usually at 10 an hour bursts at the end of hour 9 (with a slow average, alpha 0.05)', () => {
    const usual = calls(DAY_START + 3 * HOUR, 60, (time) => ({ time, principalId: 'usual', resourceId: 'model-1' }), HOUR / 10);
    const burst = calls(BEFORE, 1_200, (time) => ({ time, principalId: 'usual', resourceId: 'model-1' }), 100);
    const settings = { baseline: { enabled: true, alpha: 0.05 }, volume: { enabled: false }, extraction: { enabled: false } };
    // Closing hour 9 lifts its usual figure to 70 only (limit 700): the burst carried into 10:00 was over that too.
    expect(alertsOf([...usual, ...burst, ...after(5, (time) => ({ time, principalId: 'usual', resourceId: 'model-1' }))], settings)).toEqual([['baseline', 'usual', 9]]);
  });

  it('auth-failures: a revoked key failing 40 times in the last minute of hour 9, then three times after 10:00 (by key, source, and all callers)', () => {
    const failing = (time: number) => ({ time, principalId: '', resourceId: '/v1/models', caller: '10.9.9.9:4000', unauthenticated: REVOKED });
    const stream = [...calls(BOUNDARY - 40_000, 40, failing), ...after(3, failing)];
    expect(alertsOf(stream, { authFailures: { maxFailures: 30, maxTotal: 35 } })).toEqual([
      ['auth-failures', 'k_revoked', 9],
      ['auth-failures', '10.9.9.9', 9],
      ['auth-failures', '*', 9],
    ]);
  });

  it('auth-failures about made-up names: twelve token subjects past the threshold in hour 9, once each again after 10:00', () => {
    const refused = (time: number, sub: string, source: string) => ({ time, principalId: '', resourceId: '/v1/models', caller: `${source}:4000`, unauthenticated: BAD, tokenSubject: sub });
    const stream = [];
    for (let k = 0; k < 12; k++) stream.push(...calls(BOUNDARY - 60_000 + k * 10, 6, (time, i) => refused(time, `made-up-${k}`, `10.6.${k}.${i}`), 7));
    for (let k = 0; k < 12; k++) stream.push(...after(1, (time) => refused(time + k, `made-up-${k}`, `10.7.${k}.0`)));
    stream.sort((a, b) => a.time - b.time);
    const alerts = alertsOf(stream, { authFailures: { maxFailures: 5, maxAlerts: 10 } });
    expect(alerts).toEqual([...Array.from({ length: 10 }, (_, k) => ['auth-failures', `made-up-${k}`, 9]), ['auth-failures', '*', 9]]);
  });
});

describe('a subject alerted in a window is alerted again when the next window adds its own threshold', () => {
  /** `perHour` decisions an hour, evenly spaced, over hours 8 to 11. */
  const sustained = (perHour: number, make: (time: number, k: number) => Parameters<typeof record>[0]) => calls(DAY_START + 8 * HOUR, 4 * perHour, make, HOUR / perHour);
  const hours = [8, 9, 10, 11];

  it('an attack that keeps a rate over the threshold is alerted in every window it goes on: volume at 1,050 an hour, extraction at 1,500', () => {
    const steady = sustained(1_050, (time) => ({ time, principalId: 'steady', resourceId: 'model-1' }));
    expect(alertsOf(steady, { extraction: { enabled: false } })).toEqual(hours.map((h) => ['volume', 'steady', h]));
    // Hour 9's alert counts hour 9 alone (hour 8's was alerted), and says so.
    const second = run(steady, { baseline: { enabled: false }, extraction: { enabled: false } }).alerts[1]!;
    expect(second.observed).toBe(1_001);
    expect(second.summary).toContain('1001 requests in this window alone (the window before raised this alert, so its share is not counted again), more than 1000');
    const pulling = sustained(1_500, (time) => ({ time, principalId: 'puller', resourceId: 'fraud-v3' }));
    expect(alertsOf(pulling, { volume: { enabled: false } })).toEqual(hours.map((h) => ['extraction', 'puller', h]));
  });

  it('so are probing, reconnaissance and auth-failures (by name and in total); baseline learns a lasting rate as usual, by design', () => {
    const probe = sustained(40, (time, k) => ({ time, principalId: 'prober', action: 'delete', resourceId: 'model-1', deny: k % 4 !== 0 }));
    expect(alertsOf(probe, {})).toEqual(hours.map((h) => ['probing', 'prober', h]));
    const scan = sustained(8, (time, k) => ({ time, principalId: 'scraper', action: 'read', resourceId: `model-${k % 8}` }));
    expect(alertsOf(scan, {})).toEqual(hours.map((h) => ['reconnaissance', 'scraper', h]));
    const failing = sustained(40, (time) => ({ time, principalId: '', resourceId: '/v1/models', caller: '10.9.9.9:4000', unauthenticated: 'REVOKED: API key k_revoked was revoked at 2025-01-01T00:00:00.000Z' }));
    expect(alertsOf(failing, { authFailures: { maxFailures: 30, maxTotal: 35 } })).toEqual(hours.flatMap((h) => [['auth-failures', 'k_revoked', h], ['auth-failures', '10.9.9.9', h], ['auth-failures', '*', h]]));
  });

  it('a new burst in a later window is alerted, whether right after the first or hours later', () => {
    const predict = (time: number) => ({ time, principalId: 'twice', resourceId: 'model-1' });
    const first = calls(BOUNDARY - 120_000, 1_200, predict, 100);
    const handful = calls(BOUNDARY, 5, predict);
    const settings = { extraction: { enabled: false } };
    // A second burst of 1,100 at 10:30, right after the one alerted in hour 9: over the threshold on its own.
    expect(alertsOf([...first, ...handful, ...calls(BOUNDARY + HOUR / 2, 1_100, predict, 100)], settings)).toEqual([
      ['volume', 'twice', 9],
      ['volume', 'twice', 10],
    ]);
    // The same burst at 13:30, after quiet hours.
    expect(alertsOf([...first, ...handful, ...calls(BOUNDARY + 3.5 * HOUR, 1_100, predict, 100)], settings)).toEqual([
      ['volume', 'twice', 9],
      ['volume', 'twice', 13],
    ]);
    // 600 at 10:30 is the sliding count's 1,800, but what hour 10 adds (605) is under the threshold: hour 9's alert stands for it.
    expect(alertsOf([...first, ...handful, ...calls(BOUNDARY + HOUR / 2, 600, predict, 100)], settings)).toEqual([['volume', 'twice', 9]]);
  });
});
