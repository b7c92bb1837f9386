import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/server/config.js';
import { signWebhook, verifyWebhook } from '../../src/server/webhooks.js';
import { checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';
import { alertAbout, cleanUp, dana, fraudModel, Receiver, startTestServer, type TestServer } from './support.js';

// Webhooks on a real server (in this process, alerts published into its own
// sinks as its detectors do), POSTing to real HTTP receivers on 127.0.0.1.

const SECRET = 'whsec-test-0123456789abcdef';

const receivers: Receiver[] = [];
const servers: TestServer[] = [];
const clients: VerdictClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.stop();
  for (const r of receivers.splice(0)) await r.stop();
});
afterAll(cleanUp);

async function receiver(): Promise<Receiver> {
  const r = new Receiver();
  await r.listen();
  receivers.push(r);
  return r;
}

async function serve(webhook: Record<string, unknown>): Promise<TestServer> {
  const t = await startTestServer({ alerts: { webhooks: [{ secret: SECRET, backoff: { initialMs: 20, maxMs: 200 }, ...webhook }] } });
  servers.push(t);
  return t;
}

/** One sample of a metric from the server's /metrics. */
async function metric(t: TestServer, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${t.server.httpPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? NaN : Number(line.split(' ').pop());
}

function waitFor(predicate: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = async (): Promise<void> => {
      if (await predicate()) return resolve();
      if (Date.now() > deadline) return reject(new Error('condition not met in time'));
      setTimeout(() => void poll(), 20);
    };
    void poll();
  });
}

describe('alert webhooks on a real server', () => {
  it('a receiver that fails (500s, then refuses connections) and recovers gets every alert, each accepted exactly once, in order', async () => {
    const r = await receiver();
    let failing = 3;
    r.answer = () => (failing-- > 0 ? 500 : 204);
    const t = await serve({ url: r.url, maxAttempts: 100 });
    const alerts = Array.from({ length: 5 }, (_, i) => alertAbout(`p${i}`, 'volume'));
    for (const alert of alerts) t.server.publishAlert(alert);

    // Three 500s for the first alert; then the receiver goes away and connections are refused.
    await r.until(() => r.deliveries.length >= 3);
    expect(r.deliveries.map((d) => d.status)).toEqual([500, 500, 500]);
    const port = r.port;
    await r.stop();
    const failuresBefore = await metric(t, 'verdict_alert_webhook_failures_total', '');
    await waitFor(async () => (await metric(t, 'verdict_alert_webhook_failures_total', '')) >= failuresBefore + 3);
    // Back on the same port: it recovers.
    await r.listen(port);
    await r.until(() => r.accepted().size === alerts.length);
    // A moment for any stray duplicate to arrive (none may).
    await new Promise((resolve) => setTimeout(resolve, 200));

    expect([...r.accepted()]).toEqual(alerts.map((a) => [a.id, 1]));
    // Every attempt of an alert carries the same idempotency key; each is signed afresh and verifies.
    for (const d of r.deliveries) {
      expect(d.idempotencyKey).toBe(d.alertId);
      expect(verifyWebhook(SECRET, d.signature, d.timestamp, d.body)).toBe(true);
      expect(JSON.parse(d.body)).toMatchObject({ kind: 'verdict.alert', alert: { id: d.alertId, type: 'volume' } });
    }
    expect(JSON.parse(r.deliveries.at(-1)!.body).alert).toEqual(JSON.parse(JSON.stringify(alerts.at(-1))));
    expect(await metric(t, 'verdict_alert_webhook_deliveries_total', '')).toBe(5);
    expect(await metric(t, 'verdict_alert_webhook_failures_total', '')).toBeGreaterThanOrEqual(6);
    expect(await metric(t, 'verdict_alert_webhook_dropped_total', 'why="queue_full"')).toBe(0);
    // /metrics is read without credentials: the label names the host and a hash, never the path a receiver may keep its token in.
    const metrics = await (await fetch(`http://127.0.0.1:${t.server.httpPort}/metrics`)).text();
    const path = new URL(r.url).pathname;
    expect(metrics).toMatch(new RegExp(`verdict_alert_webhook_deliveries_total\\{webhook="http://127\\.0\\.0\\.1:${port}/#[0-9a-f]{8}"\\} 5`));
    expect(path.length).toBeGreaterThan(1);
    expect(metrics).not.toContain(path);
  });

  it('a receiver that hangs never holds up a check: checks complete while the delivery is still unanswered', async () => {
    const r = await receiver();
    r.answer = () => 'hang';
    const t = await serve({ url: r.url, timeoutMs: 120_000 });
    const client = verdictClient(t.server.grpcPort);
    clients.push(client);
    t.server.publishAlert(alertAbout('dana', 'extraction'));
    await r.until(() => r.hung.length === 1);

    // The receiver holds the delivery open; meanwhile more alerts are published and checks answered.
    const answers = [];
    for (let i = 0; i < 20; i++) {
      t.server.publishAlert(alertAbout(`q${i}`, 'extraction'));
      answers.push(await client.call<{ effect: string }>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel })));
    }
    expect(answers.map((a) => a.effect)).toEqual(Array(20).fill('EFFECT_ALLOW'));
    // Still hung, still the first delivery only: no check waited on it.
    expect(r.hung.length).toBe(1);
    expect(r.deliveries.length).toBe(1);
    expect(r.deliveries[0]!.status).toBe(0);
    expect(await metric(t, 'verdict_alert_webhook_queued', '')).toBe(21);
  });

  it('a full queue drops its oldest alerts, counts them, and keeps the newest', async () => {
    const r = await receiver();
    r.answer = () => 'hang';
    const t = await serve({ url: r.url, timeoutMs: 120_000, maxQueue: 3 });
    for (let i = 0; i < 10; i++) t.server.publishAlert(alertAbout(`s${i}`, 'volume'));
    await r.until(() => r.hung.length === 1);
    expect(await metric(t, 'verdict_alert_webhook_dropped_total', 'why="queue_full"')).toBe(7);
    expect(await metric(t, 'verdict_alert_webhook_queued', '')).toBe(3);
    expect(r.deliveries[0]!.alertId).toMatch(/-s7-/);
  });

  it('junk alerts that fill the queue first do not hide the real alerts raised after them', async () => {
    // A receiver slow for a while, and an attacker raising auth-failures alerts on made-up token subjects.
    const r = await receiver();
    let hang = true;
    r.answer = () => (hang ? 'hang' : 204);
    const t = await serve({ url: r.url, timeoutMs: 120_000, maxQueue: 10 });
    const junk = (i: number) => alertAbout(`made-up-${i}`, 'auth-failures', 'token-subject');
    const published = [junk(0)];
    t.server.publishAlert(published[0]!);
    await r.until(() => r.hung.length === 1);
    for (let i = 1; i <= 200; i++) published.push(junk(i));
    const extraction = alertAbout('svc-stolen', 'extraction');
    const leakedKey = alertAbout('k_leaked', 'auth-failures', 'api-key');
    published.push(extraction, leakedKey);
    for (let i = 201; i <= 400; i++) published.push(junk(i));
    for (const alert of published.slice(1)) t.server.publishAlert(alert);
    // One in flight and nine waiting: the two real alerts and the seven newest of the flood.
    expect(await metric(t, 'verdict_alert_webhook_queued', '')).toBe(10);
    expect(await metric(t, 'verdict_alert_webhook_dropped_total', 'why="queue_full"')).toBe(published.length - 10);

    // The receiver recovers: the hung attempt fails and is retried, then the rest go in the order raised.
    hang = false;
    for (const res of r.hung.splice(0)) res.destroy();
    const expected = [published[0]!, extraction, leakedKey, ...published.slice(-7)].map((a) => a.id);
    await r.until(() => r.accepted().size === expected.length);
    expect([...r.accepted().keys()]).toEqual(expected);
  });

  it('posts only the listed types', async () => {
    const r = await receiver();
    const t = await serve({ url: r.url, types: ['probing'] });
    t.server.publishAlert(alertAbout('a', 'volume'));
    const wanted = alertAbout('b', 'probing');
    t.server.publishAlert(wanted);
    await r.until(() => r.accepted().size === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect([...r.accepted().keys()]).toEqual([wanted.id]);
  });

  it('the signature verifies with the secret, and fails with another, a changed body or an old timestamp', async () => {
    const r = await receiver();
    const t = await serve({ url: r.url });
    t.server.publishAlert(alertAbout('dana', 'probing'));
    await r.until(() => r.accepted().size === 1);
    const d = r.deliveries[0]!;
    expect(d.signature).toMatch(/^v1=[0-9a-f]{64}$/);
    expect(Math.abs(Number(d.timestamp) - Date.now() / 1000)).toBeLessThan(60);
    expect(verifyWebhook(SECRET, d.signature, d.timestamp, d.body)).toBe(true);
    expect(verifyWebhook('another-secret-0123456789', d.signature, d.timestamp, d.body)).toBe(false);
    expect(verifyWebhook(SECRET, d.signature, d.timestamp, d.body.replace('dana', 'dann'))).toBe(false);
    expect(verifyWebhook(SECRET, d.signature, String(Number(d.timestamp) + 1), d.body)).toBe(false);
    expect(verifyWebhook(SECRET, d.signature, d.timestamp, d.body, Number(d.timestamp) + 301)).toBe(false);
    expect(verifyWebhook(SECRET, undefined, d.timestamp, d.body)).toBe(false);
    // A replay, re-signed with the old signature but a fresh timestamp, does not verify.
    const fresh = Number(d.timestamp) + 400;
    expect(verifyWebhook(SECRET, d.signature, String(fresh), d.body, fresh)).toBe(false);
    expect(verifyWebhook(SECRET, signWebhook(SECRET, fresh, d.body), String(fresh), d.body, fresh)).toBe(true);
  });
});

describe('alerts.webhooks configuration', () => {
  const base = { url: 'http://127.0.0.1:9/x' };
  it.each([
    [{ ...base }, 'alerts.webhooks.0: give the webhook exactly one of secret, secretFile, secretEnv'],
    [{ ...base, secret: SECRET, secretEnv: 'X' }, 'alerts.webhooks.0: give the webhook exactly one of secret, secretFile, secretEnv'],
    [{ ...base, secret: 'short' }, 'alerts.webhooks.0.secret: a webhook secret needs at least 16 characters'],
    [{ url: 'ftp://example.com/x', secret: SECRET }, 'alerts.webhooks.0.url: expected an http:// or https:// URL'],
    [{ url: 'https://user:pw@hooks.example/x', secret: SECRET }, 'alerts.webhooks.0.url: a webhook URL cannot carry a user name or password'],
    [{ ...base, secret: SECRET, types: ['spam'] }, 'alerts.webhooks.0.types.0: expected one of volume, probing'],
    [{ ...base, secret: SECRET, timeoutMs: 5 }, 'alerts.webhooks.0.timeoutMs:'],
  ])('refuses %j', (webhook, message) => {
    expect(() => resolveConfig([{ alerts: { webhooks: [webhook] } } as never])).toThrow(message);
  });

  it('refuses a suspend.for that is not a duration, or longer than 30 days', () => {
    expect(() => resolveConfig([{ alerts: { suspend: { enabled: true, for: '15 minutes' } } } as never])).toThrow('alerts.suspend.for: expected a duration such as 90s, 15m, 2h or 1d, at most 30d');
    expect(() => resolveConfig([{ alerts: { suspend: { enabled: true, for: '31d' } } } as never])).toThrow('alerts.suspend.for');
  });

  it('defaults: no webhooks, suspension off for 15m on every type', () => {
    expect(resolveConfig([]).alerts).toEqual({ enabled: true, webhooks: [], suspend: { enabled: false, for: '15m', maxSuspended: 10_000, types: ['volume', 'probing', 'reconnaissance', 'baseline', 'extraction', 'auth-failures'] } });
  });

  it('a secretEnv that is not set stops the start, naming it', async () => {
    await expect(startTestServer({ alerts: { webhooks: [{ ...base, secretEnv: 'VERDICT_TEST_UNSET_WEBHOOK_SECRET' }] } })).rejects.toThrow(
      'alerts.webhooks.0.secretEnv: the environment variable VERDICT_TEST_UNSET_WEBHOOK_SECRET is not set',
    );
  });
});
