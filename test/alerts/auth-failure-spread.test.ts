import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { openAlertReader } from '../../src/analysis/alert-store.js';
import { analyzeLog } from '../../src/analysis/analyze.js';
import { startServer, type RunningServer } from '../../src/server/app.js';
import { readConfigFile, resolveConfig } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logger.js';
import { Receiver, jwtServerSettings, signToken, tokenKeys } from './support.js';

// Failed authentications in names the caller makes up, through a real server's
// forward-auth with JWT authentication and a real webhook receiver: refused
// tokens with a new `sub` every few requests (the sub of a token that does not
// verify is whatever the caller wrote), and refused requests from thirty
// addresses (all of 127.0.0.0/8 is loopback, so the test binds its client to
// 127.0.1.k; an attacker with an IPv6 prefix has more). Counted by name, each
// name past the threshold was one auth-failures alert: stored, POSTed to every
// webhook, sent to every WatchAlerts subscriber, burying the real ones.

const SECRET = 'whsec-test-0123456789abcdef';
/** A token whose payload cannot be read: refused, with no subject to count. */
const GARBAGE = 'eyJhbGciOiJFUzI1NiJ9.not-json.sig';

let dir: string | undefined;
let server: RunningServer | undefined;
const receiver = new Receiver();
afterAll(async () => {
  await server?.close();
  await receiver.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A forward-auth request for model `model` with `bearer`, sent from `from` (a loopback address). */
function forwardAuth(bearer: string, from = '127.0.0.1', model = 'fraud-detector-v3'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: server!.httpPort,
        path: '/forward-auth',
        localAddress: from,
        agent: false,
        headers: { 'x-original-method': 'GET', 'x-original-uri': `/v1/models/${model}`, authorization: `Bearer ${bearer}`, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('auth-failures about names the caller makes up', () => {
  it('raises at most 10 alerts per window about token subjects and 10 about sources, then one alert about the spread; batch agrees', async () => {
    await receiver.listen();
    dir = mkdtempSync(join(tmpdir(), 'verdict-auth-spread-'));
    const { issuer, forger, jwks } = await tokenKeys(dir);
    const db = join(dir, 'decisions.db');
    // A week's window (aligned to the epoch), so the test is not split across two windows.
    const detectors = { windowSeconds: 7 * 86_400, authFailures: { maxFailures: 3 } };
    // Read from a file, as the server reads its --config.
    const configFile = join(dir, 'verdict.yaml');
    writeFileSync(configFile, JSON.stringify({ alerts: { detectors, webhooks: [{ url: receiver.url, secret: SECRET, backoff: { initialMs: 20, maxMs: 200 } }] } }));
    server = await startServer(
      resolveConfig([
        jwtServerSettings(db, jwks),
        readConfigFile(configFile),
      ]),
      createLogger('silent'),
    );

    const statuses = new Set<number>();
    // Thirty made-up token subjects, each past the threshold (four forged tokens apiece), from one address.
    for (let k = 0; k < 30; k++) for (let i = 0; i < 4; i++) statuses.add(await forwardAuth(await signToken(forger.privateKey, { sub: `made-up-${k}`, jti: `${k}-${i}` })));
    // Thirty more addresses, each past the threshold, with tokens that name nobody.
    for (let k = 0; k < 30; k++) for (let i = 0; i < 4; i++) statuses.add(await forwardAuth(GARBAGE, `127.0.1.${k + 1}`));
    expect([...statuses]).toEqual([401]);
    // Then a real alert: dana, with her genuine token, reads six models (reconnaissance, past five).
    const dana = await signToken(issuer.privateKey, { sub: 'dana' });
    for (let k = 0; k < 6; k++) await forwardAuth(dana, '127.0.0.1', `model-${k}`);

    interface Posted {
      readonly id: string;
      readonly type: string;
      readonly subject: { kind: string; id: string };
      readonly observed: number;
      readonly threshold: number;
    }
    const posted = (): Posted[] => receiver.deliveries.map((d) => (JSON.parse(d.body) as { alert: Posted }).alert);
    // Delivered one at a time in the order raised: once dana's is in, every alert raised before it is too.
    await receiver.until(() => posted().some((a) => a.type === 'reconnaissance'), 60_000);
    const byKind = new Map<string, number>();
    for (const a of posted()) byKind.set(a.subject.kind, (byKind.get(a.subject.kind) ?? 0) + 1);
    // Unbounded, this was 30 token subjects and 31 sources (the thirty and 127.0.0.1).
    expect(Object.fromEntries(byKind)).toEqual({ 'token-subject': 10, 'many-token-subjects': 1, source: 10, 'many-sources': 1, principal: 1 });
    const spread = posted().filter((a) => a.subject.kind.startsWith('many-'));
    expect(spread.map((a) => [a.subject.kind, a.subject.id, a.observed, a.threshold])).toEqual([
      ['many-token-subjects', '*', 11, 10],
      ['many-sources', '*', 11, 10],
    ]);

    // The alerts table holds the same alerts, and `verdict analyze` over the log raises them too, with the same ids.
    const reader = openAlertReader(db);
    let stored: readonly Alert[] = [];
    try {
      for (let tries = 0; stored.length < posted().length; tries++) {
        if (tries > 400) throw new Error(`${stored.length} alerts stored, ${posted().length} posted`);
        stored = await reader.list({ limit: 1000 });
        if (stored.length < posted().length) await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      reader.close();
    }
    expect(stored.map((a) => a.id).sort()).toEqual(posted().map((a) => a.id).sort());
    const batch = analyzeLog(db, { detectors });
    expect(batch.alerts.map((a) => a.id)).toEqual(posted().map((a) => a.id));
  }, 120_000);
});
