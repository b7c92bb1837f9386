import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { openAlertReader } from '../../src/analysis/alert-store.js';
import { getDecision } from '../../src/decisions/query.js';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import { WEBHOOK_HEADERS, verifyWebhook } from '../../src/server/webhooks.js';
import { checkRequest, verdictClient, type VerdictClient } from '../helpers/verdict-process.js';
import { cleanUp, dana, forwardAuthHeaders, fraudModel, startTestServer, until, type TestServer } from './support.js';

// The whole alert path on one real server: checks over gRPC feed the live
// detectors, and the volume alert they raise reaches every place an alert goes
// — the alerts table, a WatchAlerts stream, /metrics, a webhook receiver on
// loopback, the suspension of its principal, and the console's alerts panel.

const SECRET = 'whsec-end-to-end-0123456789abcdef';
const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as { verdict: { v1: Record<string, typeof grpc.Client> } };

interface Delivery {
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** A webhook receiver on loopback that keeps every delivery and answers 204. */
async function receiver(): Promise<{ server: Server; url: string; deliveries: Delivery[] }> {
  const deliveries: Delivery[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      deliveries.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/verdict`, deliveries };
}

interface CheckAnswer {
  effect: string;
  reason: string;
  decisionId: string;
  errors: { ruleId: string; message: string }[];
}

interface WatchedAlert {
  id: string;
  type: string;
  subjectKind: string;
  subjectId: string;
}

const servers: TestServer[] = [];
const closers: (() => void)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) close();
  for (const s of servers.splice(0)) await s.stop();
});
afterAll(cleanUp);

describe('an alert raised by the live detectors, end to end', () => {
  it('is stored, streamed, counted, posted signed to the webhook, suspends its principal, and is listed by the console', async () => {
    const hook = await receiver();
    closers.push(() => hook.server.close());
    const t = await startTestServer({
      alerts: {
        detectors: { volume: { maxRequests: 10 }, baseline: { enabled: false } },
        webhooks: [{ url: hook.url, secret: SECRET, types: ['volume'] }],
        suspend: { enabled: true, for: '15m', types: ['volume'] },
      },
    });
    servers.push(t);
    const client: VerdictClient = verdictClient(t.server.grpcPort);
    closers.push(() => client.close());

    // A WatchAlerts subscriber, admitted (its call recorded) before the traffic starts.
    const admin = new loaded.verdict.v1.Admin!(`127.0.0.1:${t.server.grpcPort}`, grpc.credentials.createInsecure());
    closers.push(() => admin.close());
    const stream = (admin as unknown as { WatchAlerts(request: unknown): grpc.ClientReadableStream<WatchedAlert> }).WatchAlerts({ types: ['volume'] });
    closers.push(() => stream.cancel());
    const watched: WatchedAlert[] = [];
    stream.on('data', (a: WatchedAlert) => watched.push(a));
    stream.on('error', () => undefined);
    await until('the WatchAlerts subscription', async () => {
      const listed = await client.call<{ decisions: unknown[] }>('Admin', 'ListDecisions', { action: 'WatchAlerts' });
      return listed.decisions.length > 0 ? true : undefined;
    });

    // Ten checks are within the threshold; the eleventh raises the volume alert.
    const mallory = { ...dana, id: 'mallory' };
    const check = (): Promise<CheckAnswer> => client.call<CheckAnswer>('Authorization', 'Check', checkRequest({ principal: mallory, action: 'predict', resource: fraudModel }));
    const allowed: string[] = [];
    for (let i = 0; i < 11; i++) {
      const answer = await check();
      expect(answer).toMatchObject({ effect: 'EFFECT_ALLOW' });
      allowed.push(answer.decisionId);
    }

    // Suspended at once: the next check, over gRPC and through forward-auth, is denied and recorded so.
    const denied = await check();
    expect(denied).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_BY_SUSPENSION' });
    const row = getDecision(t.db, denied.decisionId)!;
    expect(row).toMatchObject({ principalId: 'mallory', effect: 'DENY', reason: 'DENIED_BY_SUSPENSION' });
    const suspension = (row.details as { suspension: { alertId: string; alertType: string; since: number; until: number } }).suspension;
    expect(suspension.alertType).toBe('volume');
    expect(suspension.until - suspension.since).toBe(15 * 60_000);
    const gateway = await fetch(`http://127.0.0.1:${t.server.httpPort}/forward-auth`, { headers: forwardAuthHeaders('mallory') });
    expect(gateway.status).toBe(403);
    expect(getDecision(t.db, gateway.headers.get('x-verdict-decision-id') ?? '')).toMatchObject({ reason: 'DENIED_BY_SUSPENSION' });
    // Nobody else is.
    expect(await client.call<CheckAnswer>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }))).toMatchObject({ effect: 'EFFECT_ALLOW' });

    // Stored beside the decisions, with the decisions behind it.
    const reader = openAlertReader(t.db);
    closers.push(() => reader.close());
    const stored: Alert = await until('the stored alert', async () => (await reader.list({ type: 'volume', subjectId: 'mallory' }))[0]);
    expect(stored).toMatchObject({ type: 'volume', subject: { kind: 'principal', id: 'mallory' }, observed: 11, threshold: 10 });
    expect(stored.decisionIds).toEqual(allowed.slice(-5));
    expect(suspension.alertId).toBe(stored.id);

    // Streamed once to the WatchAlerts subscriber.
    await until('the streamed alert', () => (watched.length > 0 ? true : undefined));
    expect(watched).toEqual([expect.objectContaining({ id: stored.id, type: 'volume', subjectKind: 'principal', subjectId: 'mallory' })]);

    // Posted once, signed: the HMAC over "<timestamp>.<body>" computed here, and the receiver's helper, agree.
    const delivery = await until('the webhook delivery', () => hook.deliveries[0]);
    const signature = delivery.headers[WEBHOOK_HEADERS.signature] as string;
    const timestamp = delivery.headers[WEBHOOK_HEADERS.timestamp] as string;
    expect(signature).toBe(`v1=${createHmac('sha256', SECRET).update(`${timestamp}.${delivery.body}`).digest('hex')}`);
    expect(verifyWebhook(SECRET, signature, timestamp, delivery.body)).toBe(true);
    expect(verifyWebhook('another-secret-0123456789abcdef', signature, timestamp, delivery.body)).toBe(false);
    expect(delivery.headers[WEBHOOK_HEADERS.alertId]).toBe(stored.id);
    expect(JSON.parse(delivery.body)).toEqual({ kind: 'verdict.alert', alert: JSON.parse(JSON.stringify(stored)) });

    // Counted in /metrics.
    const metrics = await (await fetch(`http://127.0.0.1:${t.server.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^verdict_alerts_total\{type="volume"\} 1$/m);
    expect(metrics).toMatch(/^verdict_suspensions_total\{cause="volume"\} 1$/m);
    expect(metrics).toMatch(/^verdict_alert_webhook_deliveries_total\{[^}]*\} 1$/m);

    // Listed by the console (loopback, no admin token configured), as stored.
    const answer = await fetch(`http://127.0.0.1:${t.server.httpPort}/console/api/alerts?since=1h&type=volume`);
    expect(answer.status).toBe(200);
    const listed = (await answer.json()) as { enabled: boolean; alerts: Alert[] };
    expect(listed.enabled).toBe(true);
    expect(listed.alerts).toEqual([stored]);
    // Each decision behind it opens in the console.
    const behind = await fetch(`http://127.0.0.1:${t.server.httpPort}/console/api/decision/${stored.decisionIds[0]}`);
    expect(await behind.json()).toMatchObject({ decisionId: stored.decisionIds[0], principalId: 'mallory' });

    // Only one delivery, one stream message, one alert: the suspended checks after it raised nothing new.
    expect(hook.deliveries).toHaveLength(1);
    expect(watched).toHaveLength(1);
  }, 60_000);
});
