// An unknown API key id and a known id with a wrong secret, through the real
// server's forward-auth: the same answer and the same recorded failure, so
// neither tells an attacker which ids exist. (Timing: bench/api-keys.mjs.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey, parseApiKey } from '../../src/authn/api-key-format.js';
import { getDecision } from '../../src/decisions/query.js';
import { startGatewayVerdict, type GatewayVerdict } from '../gateway/support.js';

let server: GatewayVerdict;

beforeAll(async () => {
  server = await startGatewayVerdict();
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

async function refusal(apiKey: string): Promise<{ status: number; body: Record<string, unknown>; recorded: string }> {
  const response = await fetch(`http://127.0.0.1:${server.verdict.httpPort}/forward-auth`, {
    headers: { 'x-original-method': 'GET', 'x-original-uri': '/v1/models/fraud-detector-v3', 'x-api-key': apiKey, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
  });
  const body = JSON.parse(await response.text()) as Record<string, unknown>;
  const row = getDecision(server.db, response.headers.get('x-verdict-decision-id')!)!;
  return { status: response.status, body, recorded: `${row.reason} ${row.errors.map((e) => `${e.ruleId}: ${e.message}`).join('; ')}` };
}

describe('API keys: unknown id and wrong secret are told apart by nothing', () => {
  it('answers and records both the same way, but for the id', async () => {
    const knownId = parseApiKey(server.keys.dana)!.id;
    const unknownId = newApiKey().id;
    const wrongSecret = await refusal(newApiKey(knownId).key);
    const unknown = await refusal(newApiKey(unknownId).key);
    expect(wrongSecret.status).toBe(401);
    expect(unknown.status).toBe(401);
    const shape = (r: typeof unknown, id: string) => ({ ...r, body: { ...r.body, decisionId: 'x', detail: String(r.body.detail).replace(id, '<id>') }, recorded: r.recorded.replace(id, '<id>') });
    expect(shape(unknown, unknownId)).toEqual(shape(wrongSecret, knownId));
    expect(shape(unknown, unknownId).body.detail).toBe('UNKNOWN_KEY: API key <id> is not recognised');
    // The real key still works.
    const ok = await fetch(`http://127.0.0.1:${server.verdict.httpPort}/forward-auth`, {
      headers: { 'x-original-method': 'GET', 'x-original-uri': '/v1/models/fraud-detector-v3', 'x-api-key': server.keys.dana, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
    });
    expect(ok.status).toBe(200);
  });
});
