import { afterAll, describe, expect, it } from 'vitest';
import { analyzeLog } from '../../src/analysis/analyze.js';
import { getDecision } from '../../src/decisions/query.js';
import { checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';
import { Receiver, cleanUp, dana, fraudModel, startTestServer, storedAlerts, type TestServer } from './support.js';

// One burst that crosses `volume` in the last seconds of a clock-aligned window, on a
// real server with one-minute windows and a real webhook receiver, then a few checks
// just after the boundary. The carried share of the burst was over the threshold again
// by itself, and the receiver got two alerts (two pages) for the one burst.

const WINDOW_MS = 60_000;
const detectors = { windowSeconds: WINDOW_MS / 1000, volume: { maxRequests: 20 }, baseline: { enabled: false }, extraction: { enabled: false } };

let t: TestServer | undefined;
let client: VerdictClient | undefined;
const receiver = new Receiver();
afterAll(async () => {
  client?.close();
  await t?.stop();
  await receiver.stop();
  cleanUp();
});

const sleepUntil = (time: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, time - Date.now())));

describe('a burst across a window boundary, on a real server', () => {
  it('is posted to the webhook once, and `verdict analyze` over the log raises the same one alert', async () => {
    await receiver.listen();
    t = await startTestServer({ alerts: { detectors, webhooks: [{ url: receiver.url, secret: 'whsec-test-0123456789abcdef', backoff: { initialMs: 20, maxMs: 200 } }] } });
    client = verdictClient(t.server.grpcPort);
    const check = async (principal: { id: string }, resource = fraudModel): Promise<string> =>
      (await client!.call<{ decisionId: string }>('Authorization', 'Check', checkRequest({ principal: { ...dana, ...principal }, action: 'predict', resource }))).decisionId;

    // The next boundary at least 6 s away: 25 checks (past 20) start 4 s before it, 5 more follow just after.
    const boundary = Math.ceil((Date.now() + 6_000) / WINDOW_MS) * WINDOW_MS;
    await sleepUntil(boundary - 4_000);
    const burst: string[] = [];
    for (let i = 0; i < 25; i++) burst.push(await check({ id: 'mallory' }));
    await sleepUntil(boundary + 200);
    const handful: string[] = [];
    for (let i = 0; i < 5; i++) handful.push(await check({ id: 'mallory' }));
    const windowOf = (id: string): number => getDecision(t!.db, id)!.time - boundary;
    expect(burst.every((id) => windowOf(id) < 0), 'the burst was recorded before the boundary').toBe(true);
    expect(handful.every((id) => windowOf(id) >= 0), 'the handful was recorded after it').toBe(true);

    // A marker alert (six models read by another principal): webhooks deliver in order, so every alert raised before it is in once it is.
    for (let k = 0; k < 6; k++) await check({ id: 'marker' }, { ...fraudModel, id: `model-${k}` });
    await receiver.until(() => receiver.posted().some((a) => a.type === 'reconnaissance'), 30_000);
    const posted = receiver.posted();
    expect(posted.map((a) => `${a.type} ${a.subject.id}`)).toEqual(['volume mallory', 'reconnaissance marker']);
    expect(posted[0]).toMatchObject({ observed: 21, threshold: 20 });

    const stored = await storedAlerts(t.db, posted.length);
    expect(stored.map((a) => a.id).sort()).toEqual(posted.map((a) => a.id).sort());
    expect(analyzeLog(t.db, { detectors }).alerts.map((a) => a.id)).toEqual(posted.map((a) => a.id));
  }, 120_000);
});
