import { afterAll, describe, expect, it } from 'vitest';
import { analyzeLog } from '../../src/analysis/analyze.js';
import { metricValue } from '../helpers/verdict-process.js';
import { Receiver, bearerForwardAuth, signToken, startJwtAlertServer, storedAlerts, type JwtAlertServer } from './support.js';

// A token-forging spray through a real server's forward-auth with JWT
// authentication and a real webhook receiver: every forged token names a new
// `sub` and comes from a new address (all of 127.0.0.0/8 is loopback, so the
// client binds to 127.0.2.k), or names and addresses are reused a few times
// each, under the per-name threshold. Counted by name alone, no name ever
// crossed it, and the spray raised nothing however many it sent.

const MAX_TOTAL = 40;

let t: JwtAlertServer | undefined;
const receiver = new Receiver();
afterAll(async () => {
  await t?.stop();
  await receiver.stop();
});

/** A forward-auth request for `model` with `bearer`, sent from the loopback address `from`. */
const forwardAuth = (bearer: string, from: string, model?: string): Promise<number> => bearerForwardAuth(t!.server.httpPort, bearer, from, model);

describe('auth-failures from all callers together, on a real server', () => {
  it('raise nothing up to maxTotal, then exactly one alert for the window, for a spray no name alerts; batch agrees', async () => {
    await receiver.listen();
    // A week's window (aligned to the epoch), so the test is not split across two windows; maxFailures stays 20.
    const detectors = { windowSeconds: 7 * 86_400, authFailures: { maxTotal: MAX_TOTAL } };
    t = await startJwtAlertServer(detectors, receiver);
    const { server, db, issuer, forger } = t;

    /** A real alert (reconnaissance: six models read with a genuine token) after which, delivered in order, every alert raised before is in. */
    const marker = async (sub: string): Promise<void> => {
      const token = await signToken(issuer.privateKey, { sub });
      for (let k = 0; k < 6; k++) await forwardAuth(token, '127.0.0.1', `model-${k}`);
      await receiver.until(() => receiver.posted().some((a) => a.type === 'reconnaissance' && a.subject.id === sub), 60_000);
    };
    const statuses = new Set<number>();
    const forged = async (sub: string, from: string): Promise<void> => {
      statuses.add(await forwardAuth(await signToken(forger.privateKey, { sub }), from));
    };

    // MAX_TOTAL forged tokens, each with a sub and an address of its own: at the threshold, not past it.
    for (let k = 0; k < MAX_TOTAL; k++) await forged(`sprayed-${k}`, `127.0.2.${k + 1}`);
    await marker('marker-1');
    expect(receiver.posted().map((a) => a.subject.kind)).toEqual(['principal']);

    // Twice as many again, 20 subs four times each from ten addresses eight times each: every name under 20.
    for (let k = 0; k < 2 * MAX_TOTAL; k++) await forged(`reused-${k % 20}`, `127.0.3.${(k % 10) + 1}`);
    await marker('marker-2');
    expect([...statuses]).toEqual([401]);
    expect(receiver.posted().map((a) => `${a.type} ${a.subject.kind}:${a.subject.id}`)).toEqual([
      'reconnaissance principal:marker-1',
      'auth-failures all-callers:*',
      'reconnaissance principal:marker-2',
    ]);
    expect(receiver.posted()[1]).toMatchObject({ observed: MAX_TOTAL + 1, threshold: MAX_TOTAL });
    expect(await metricValue(server.httpPort, 'verdict_alerts_total{type="auth-failures"}')).toBe(1);

    // The alerts table holds the same alerts, and `verdict analyze` over the log raises them too, with the same ids.
    const stored = await storedAlerts(db, receiver.posted().length);
    expect(stored.map((a) => a.id).sort()).toEqual(receiver.posted().map((a) => a.id).sort());
    const batch = analyzeLog(db, { detectors });
    expect(batch.alerts.map((a) => a.id)).toEqual(receiver.posted().map((a) => a.id));
    expect(batch.alerts[1]).toMatchObject({ subject: { kind: 'all-callers', id: '*' }, observed: MAX_TOTAL + 1 });
  }, 120_000);
});
