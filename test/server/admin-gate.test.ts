import { describe, expect, it } from 'vitest';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { VerdictError } from '../../src/errors.js';
import { AdminGate, adminCallerOfGrpc, type AdminCaller } from '../../src/server/admin-auth.js';

function grpcCall(peer: string, metadata: Record<string, string> = {}): Parameters<typeof adminCallerOfGrpc>[0] {
  return {
    getPeer: () => peer,
    getAuthContext: () => ({}),
    metadata: { get: (name: string) => (metadata[name] === undefined ? [] : [metadata[name]]) } as never,
  };
}

function gate(config: Parameters<typeof AdminGate.fromConfig>[0], rows: DecisionRecord[], tls = false): AdminGate {
  return AdminGate.fromConfig(config, { tls }, { log: { path: 'x', append: async (r) => void rows.push(r) }, policyVersion: () => 'v1' });
}

describe('the admin gate', () => {
  it('knows loopback in every spelling grpc-js gives a peer, and nothing else', () => {
    const open = gate({}, []);
    for (const peer of ['127.0.0.1:5000', '127.8.9.1:1', '::1:5000', '[::1]:5000', '::ffff:127.0.0.1:5000']) {
      expect(open.identify(adminCallerOfGrpc(grpcCall(peer))), peer).toEqual({ id: 'loopback', via: 'loopback' });
    }
    for (const peer of ['10.0.0.1:5000', '::2:5000', '[fe80::1]:5000', '::ffff:10.0.0.1:5000', '128.0.0.1:1', 'unix:/tmp/x']) {
      expect(() => open.identify(adminCallerOfGrpc(grpcCall(peer))), peer).toThrow(VerdictError);
    }
  });

  it('turns loopback off by default with TLS', () => {
    expect(gate({}, [], true).describe()).toEqual({ token: false, clients: [], loopback: false });
    expect(() => gate({}, [], true).identify(adminCallerOfGrpc(grpcCall('127.0.0.1:1')))).toThrow(/administration is not enabled/);
  });

  it('presents another authorization scheme as a token that is refused', () => {
    const caller = adminCallerOfGrpc(grpcCall('127.0.0.1:1', { authorization: 'Basic YWRtaW46YWRtaW4=' }));
    expect(caller.token).toBe('');
    expect(() => gate({}, []).identify(caller)).toThrow(expect.objectContaining({ code: 'UNAUTHENTICATED' }) as Error);
  });

  it('does nothing for a call it cannot record', async () => {
    const failing = AdminGate.fromConfig({}, { tls: false }, {
      log: { path: 'x', append: () => Promise.reject(new VerdictError('DECISION_LOG_UNAVAILABLE', 'disk full')) },
      policyVersion: () => 'v1',
    });
    const caller: AdminCaller = { caller: '127.0.0.1:1', address: '127.0.0.1', certificate: null, token: null, requestId: null };
    await expect(failing.admit(caller, { method: 'ReloadPolicies' })).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
  });

  it('records an admitted call with its request id', async () => {
    const rows: DecisionRecord[] = [];
    await gate({}, rows).admit(adminCallerOfGrpc(grpcCall('127.0.0.1:1', { 'x-request-id': 'r-9' })), { method: 'GetDecision', target: 'd-1' });
    expect(rows).toMatchObject([{ requestId: 'r-9', action: 'GetDecision', resourceType: 'verdict.admin', resourceId: 'd-1', principalId: 'loopback', policyVersion: 'v1', effect: 'ALLOW' }]);
  });
});
