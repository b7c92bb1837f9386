import { afterAll, describe, expect, it } from 'vitest';
import { analyzeLog } from '../../src/analysis/analyze.js';
import { metricValue } from '../helpers/verdict-process.js';
import { Receiver, bearerForwardAuth, signToken, startJwtAlertServer, storedAlerts, type JwtAlertServer } from './support.js';

// Failed authentications in names the caller makes up, through a real server's
// forward-auth with JWT authentication and a real webhook receiver: refused
// tokens with a new `sub` every few requests (the sub of a token that does not
// verify is whatever the caller wrote), and refused requests from thirty
// addresses (all of 127.0.0.0/8 is loopback, so the test binds its client to
// 127.0.1.k; an attacker with an IPv6 prefix has more). Counted by name, each
// name past the threshold was one auth-failures alert: stored, POSTed to every
// webhook, sent to every WatchAlerts subscriber, burying the real ones.

/** A token whose payload cannot be read: refused, with no subject to count. */
const GARBAGE = 'eyJhbGciOiJFUzI1NiJ9.not-json.sig';

let t: JwtAlertServer | undefined;
const receiver = new Receiver();
afterAll(async () => {
  await t?.stop();
  await receiver.stop();
});

/** A forward-auth request for model `model` with `bearer`, sent from `from` (a loopback address). */
const forwardAuth = (bearer: string, from = '127.0.0.1', model = 'fraud-detector-v3'): Promise<number> => bearerForwardAuth(t!.server.httpPort, bearer, from, model);

describe('auth-failures about names the caller makes up', () => {
  it('raises at most 10 alerts per window about token subjects and 10 about sources, then one alert about the spread; batch agrees', async () => {
    await receiver.listen();
    // A week's window (aligned to the epoch), so the test is not split across two windows.
    const detectors = { windowSeconds: 7 * 86_400, authFailures: { maxFailures: 3 } };
    t = await startJwtAlertServer(detectors, receiver);
    const { server, db, issuer, forger } = t;

    const statuses = new Set<number>();
    // Thirty made-up token subjects, each past the threshold (four forged tokens apiece), from one address.
    for (let k = 0; k < 30; k++) for (let i = 0; i < 4; i++) statuses.add(await forwardAuth(await signToken(forger.privateKey, { sub: `made-up-${k}`, jti: `${k}-${i}` })));
    // Thirty more addresses, each past the threshold, with tokens that name nobody.
    for (let k = 0; k < 30; k++) for (let i = 0; i < 4; i++) statuses.add(await forwardAuth(GARBAGE, `127.0.1.${k + 1}`));
    expect([...statuses]).toEqual([401]);
    // Then a real alert: dana, with her genuine token, reads six models (reconnaissance, past five).
    const dana = await signToken(issuer.privateKey, { sub: 'dana' });
    for (let k = 0; k < 6; k++) await forwardAuth(dana, '127.0.0.1', `model-${k}`);

    // Delivered one at a time in the order raised: once dana's is in, every alert raised before it is too.
    await receiver.until(() => receiver.posted().some((a) => a.type === 'reconnaissance'), 60_000);
    const byKind = new Map<string, number>();
    for (const a of receiver.posted()) byKind.set(a.subject.kind, (byKind.get(a.subject.kind) ?? 0) + 1);
    // Unbounded, this was 30 token subjects and 31 sources (the thirty and 127.0.0.1).
    expect(Object.fromEntries(byKind)).toEqual({ 'token-subject': 10, 'many-token-subjects': 1, source: 10, 'many-sources': 1, principal: 1 });
    const spread = receiver.posted().filter((a) => a.subject.kind.startsWith('many-'));
    expect(spread.map((a) => [a.subject.kind, a.subject.id, a.observed, a.threshold])).toEqual([
      ['many-token-subjects', '*', 11, 10],
      ['many-sources', '*', 11, 10],
    ]);
    // What the two `*` alerts stand for: every failure of the 20 token subjects (127.0.0.1's made-up-10 to 29) and of the
    // 21 addresses (127.0.1.10 to 30) past the threshold that were not alerted by name, four each.
    expect(await metricValue(server.httpPort, 'verdict_alert_auth_failures_summarised_total{kind="token-subject"}')).toBe(20 * 4);
    expect(await metricValue(server.httpPort, 'verdict_alert_auth_failures_summarised_total{kind="source"}')).toBe(21 * 4);

    // The alerts table holds the same alerts, and `verdict analyze` over the log raises them too, with the same ids.
    const stored = await storedAlerts(db, receiver.posted().length);
    expect(stored.map((a) => a.id).sort()).toEqual(receiver.posted().map((a) => a.id).sort());
    const batch = analyzeLog(db, { detectors });
    expect(batch.alerts.map((a) => a.id)).toEqual(receiver.posted().map((a) => a.id));
  }, 120_000);
});
