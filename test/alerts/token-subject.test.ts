import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { openAlertReader } from '../../src/analysis/alert-store.js';
import { analyzeLog } from '../../src/analysis/analyze.js';
import { getDecision } from '../../src/decisions/query.js';
import { startServer, type RunningServer } from '../../src/server/app.js';
import { resolveConfig } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logger.js';
import { jwtServerSettings, signToken, tokenKeys } from './support.js';

// Authentication failures counted per token subject, through a real gateway
// path: forward-auth on a real server with JWT authentication, fed tokens in
// one subject's name that fail verification (a forged signature, an expired
// token). The subject is read from the refused token without trusting it,
// recorded as details.authn.tokenSubject, and raises an auth-failures alert
// about the token subject, which suspends nobody.

const now = (): number => Math.floor(Date.now() / 1000);

let dir: string;
let server: RunningServer;
afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function forwardAuth(bearer: string): Promise<{ status: number; decisionId: string }> {
  const response = await fetch(`http://127.0.0.1:${server.httpPort}/forward-auth`, {
    headers: { 'x-original-method': 'GET', 'x-original-uri': '/v1/models/fraud-detector-v3', authorization: `Bearer ${bearer}`, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
  });
  await response.text();
  return { status: response.status, decisionId: response.headers.get('x-verdict-decision-id') ?? '' };
}

describe('auth-failures per token subject', () => {
  it('counts refused tokens by their unverified sub, records it, alerts on it (live and batch alike), and suspends nobody', async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-token-subject-'));
    const { issuer, forger, jwks } = await tokenKeys(dir);
    const db = join(dir, 'decisions.db');
    const detectors = { authFailures: { maxFailures: 5 } };
    server = await startServer(
      resolveConfig([
        jwtServerSettings(db, jwks),
        { alerts: { detectors, webhooks: [], suspend: { enabled: true, for: '15m', types: ['auth-failures'], maxSuspended: 10_000 } } },
      ]),
      createLogger('silent'),
    );

    // A genuine token for dana is allowed.
    expect((await forwardAuth(await signToken(issuer.privateKey, { sub: 'dana' }))).status).toBe(200);

    // Six refused tokens in dana's name: three with a forged signature, three expired.
    const refused: string[] = [];
    for (let i = 0; i < 3; i++) {
      const answer = await forwardAuth(await signToken(forger.privateKey, { sub: 'dana', jti: `forged-${i}` }));
      expect(answer.status).toBe(401);
      refused.push(answer.decisionId);
    }
    for (let i = 0; i < 3; i++) {
      const answer = await forwardAuth(await signToken(issuer.privateKey, { sub: 'dana', iat: now() - 600, exp: now() - 300, jti: `expired-${i}` }));
      expect(answer.status).toBe(401);
      refused.push(answer.decisionId);
    }
    const forged = getDecision(db, refused[0]!)!;
    expect(forged).toMatchObject({ principalId: '', reason: 'DENIED_UNAUTHENTICATED', errors: [{ ruleId: 'authn', message: expect.stringMatching(/^BAD_SIGNATURE/) }] });
    expect(forged.details).toMatchObject({ authn: { tokenSubject: 'dana' } });
    expect(getDecision(db, refused[5]!)!).toMatchObject({ errors: [{ message: expect.stringMatching(/^EXPIRED/) }], details: { authn: { tokenSubject: 'dana' } } });

    // A token whose payload cannot be read records no subject; a huge sub is cut to 256 characters.
    const garbage = await forwardAuth('eyJhbGciOiJFUzI1NiJ9.not-json.sig');
    expect(garbage.status).toBe(401);
    expect(getDecision(db, garbage.decisionId)!.details).not.toHaveProperty('authn');
    const long = await forwardAuth(await signToken(forger.privateKey, { sub: 'x'.repeat(5000) }));
    expect((getDecision(db, long.decisionId)!.details as { authn: { tokenSubject: string } }).authn.tokenSubject).toBe('x'.repeat(256));

    // AuthZEN records the subject of a refused token the same way (it is counted too: seven after this).
    const authzen = await fetch(`http://127.0.0.1:${server.httpPort}/access/v1/evaluation`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await signToken(forger.privateKey, { sub: 'dana' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ subject: { type: 'user', id: 'dana' }, action: { name: 'predict' }, resource: { type: 'model', id: 'fraud-v3' } }),
    });
    expect(authzen.status).toBe(401);
    const authzenRow = getDecision(db, ((await authzen.json()) as { decision_id: string }).decision_id)!;
    expect(authzenRow).toMatchObject({ reason: 'DENIED_UNAUTHENTICATED', details: { authn: { tokenSubject: 'dana' } } });

    // The alert about the token subject, with the refused decisions behind it.
    const reader = openAlertReader(db);
    let alert: Alert | undefined;
    try {
      for (let tries = 0; alert === undefined; tries++) {
        if (tries > 400) throw new Error('no auth-failures alert about the token subject dana was stored');
        alert = (await reader.list({ type: 'auth-failures', subjectId: 'dana' })).find((a) => a.subject.kind === 'token-subject');
        if (alert === undefined) await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      reader.close();
    }
    expect(alert).toMatchObject({ type: 'auth-failures', subject: { kind: 'token-subject', id: 'dana' }, observed: 6, threshold: 5, decisionIds: refused.slice(1) });

    // Forged in someone's name, so it suspends nobody: dana's genuine token is still allowed.
    expect(server.suspensions.list()).toEqual([]);
    expect((await forwardAuth(await signToken(issuer.privateKey, { sub: 'dana' }))).status).toBe(200);

    // The batch detectors over the same log find the same alert.
    const batch = analyzeLog(db, { detectors });
    expect(batch.alerts.find((a) => a.id === alert.id)).toEqual(alert);
  }, 60_000);
});
