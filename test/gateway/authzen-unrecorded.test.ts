import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { DecisionPipeline } from '../../src/decide/index.js';
import type { DecisionSink } from '../../src/decisions/log-client.js';
import { VerdictError } from '../../src/errors.js';
import { AuthZenEndpoint } from '../../src/gateway/authzen-http.js';
import { TrustedHeaderAuthenticator } from '../../src/gateway/trusted-headers.js';
import { loadFiles, removeTempDirs, rulesDoc } from '../helpers/policies.js';
import { useDecisionLog } from '../helpers/decision-log.js';

// A decision that cannot be recorded is never an allow: the AuthZEN endpoint answers
// 503 and no decision, whatever the rules would have said.

const policySet = loadFiles({ 'rules.yaml': rulesDoc([{ id: 'anyone-reads', effect: 'allow', actions: ['read'], resource: { type: 'doc' } }]) }).policySet;
const decisionLog = useDecisionLog();
afterAll(removeTempDirs);

describe('AuthZEN when the decision cannot be recorded', () => {
  it('answers 503 with no decision, and 200 again once the log records', async () => {
    let failWith: Error | null = new VerdictError('DECISION_LOG_UNAVAILABLE', 'disk full');
    const sink: DecisionSink = { path: decisionLog().path, append: (record) => (failWith ? Promise.reject(failWith) : decisionLog().append(record)) };
    const errors: unknown[] = [];
    const endpoint = new AuthZenEndpoint(new DecisionPipeline({ current: policySet }, sink), new TrustedHeaderAuthenticator({ idHeader: 'remote-user' }), {
      maxBodyBytes: 64 * 1024,
      certificateAuthenticates: false,
      peps: new Set(['trusted-header:pep']),
      onError: (error) => errors.push(error),
    });
    const server = createServer((req, res) => void endpoint.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const evaluation = { subject: { type: 'user', id: 'rita' }, action: { name: 'read' }, resource: { type: 'doc', id: 'd1' } };
      const ask = (path: string, body: object) => fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', 'remote-user': 'pep' }, body: JSON.stringify(body) });

      for (const [path, body] of [['/access/v1/evaluation', evaluation], ['/access/v1/evaluations', { evaluations: [evaluation, evaluation] }]] as const) {
        const unavailable = await ask(path, body);
        expect(unavailable.status).toBe(503);
        const answer = (await unavailable.json()) as Record<string, unknown>;
        expect(answer).toEqual({ error: 'the decision could not be recorded, so no decision is given' });
        expect(answer).not.toHaveProperty('decision');
      }
      expect(errors).toEqual([]);

      failWith = new TypeError('a bug');
      const internal = await ask('/access/v1/evaluation', evaluation);
      expect(internal.status).toBe(500);
      expect(await internal.text()).not.toMatch(/a bug/);
      expect(errors).toHaveLength(1);

      failWith = null;
      const recorded = await ask('/access/v1/evaluation', evaluation);
      expect(recorded.status).toBe(200);
      expect(((await recorded.json()) as { decision: boolean }).decision).toBe(true);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
