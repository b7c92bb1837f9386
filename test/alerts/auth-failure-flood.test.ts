import { afterAll, describe, expect, it } from 'vitest';
import { newApiKey, parseApiKey } from '../../src/authn/api-key-format.js';
import { metricValue } from '../helpers/verdict-process.js';
import { startGatewayVerdict, type GatewayVerdict } from '../gateway/support.js';
import { Receiver } from './support.js';

// An attacker sending API keys with a made-up id each time, through the real
// server's forward-auth, with a real webhook receiver: the refusals name the id
// the attacker chose (UNKNOWN_KEY), so counted by it they made one detector
// subject per id and one alert, one webhook POST, per id sent past the threshold.

const SECRET = 'whsec-test-0123456789abcdef';

let server: GatewayVerdict | undefined;
const receiver = new Receiver();
afterAll(async () => {
  await server?.stop();
  await receiver.stop();
});

async function forwardAuth(apiKey: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${server!.verdict.httpPort}/forward-auth`, {
    headers: { 'x-original-method': 'GET', 'x-original-uri': '/v1/models/fraud-detector-v3', 'x-api-key': apiKey, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
  });
  await response.text();
  return response.status;
}

interface Posted {
  readonly subject: { kind: string; id: string };
}

describe('auth-failures under a flood of made-up API key ids', () => {
  it('alerts once about the source, not once per id; a revoked real key is still alerted by its id', async () => {
    await receiver.listen();
    server = await startGatewayVerdict({
      config: { alerts: { detectors: { authFailures: { maxFailures: 5 } }, webhooks: [{ url: receiver.url, secret: SECRET, backoff: { initialMs: 20, maxMs: 200 } }] } },
    });
    const subjectsBefore = await metricValue(server.verdict.httpPort, 'verdict_alert_detector_subjects');

    // 20 made-up ids, each sent 6 times (past the threshold of 5), then 100 more sent once each.
    const statuses: number[] = [];
    for (let id = 0; id < 20; id++) {
      const key = newApiKey().key;
      for (let k = 0; k < 6; k++) statuses.push(await forwardAuth(key));
    }
    for (let k = 0; k < 100; k++) statuses.push(await forwardAuth(newApiKey().key));
    // A real key, revoked, used 6 times: its id is the key's own.
    for (let k = 0; k < 6; k++) statuses.push(await forwardAuth(server.revokedKey));
    expect(new Set(statuses)).toEqual(new Set([401]));

    const revokedId = parseApiKey(server.revokedKey)!.id;
    const posted = (): Posted[] => receiver.deliveries.map((d) => (JSON.parse(d.body) as { alert: Posted }).alert);
    // Delivered in order, so once the revoked key's alert is in, every alert before it is too.
    await receiver.until(() => posted().some((a) => a.subject.kind === 'api-key' && a.subject.id === revokedId));
    expect(posted().map((a) => `${a.subject.kind}:${a.subject.id}`)).toEqual(['source:127.0.0.1', `api-key:${revokedId}`]);
    // The 220 refusals added two subjects: the address and the real key.
    expect(await metricValue(server.verdict.httpPort, 'verdict_alert_detector_subjects')).toBe(subjectsBefore + 2);
  }, 120_000);
});
