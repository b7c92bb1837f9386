import { chmodSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { VerdictError } from '../../src/errors.js';
import { AdminGate, adminCallerOfGrpc, type AdminCaller } from '../../src/server/admin-auth.js';

function grpcCall(peer: string, metadata: Record<string, string> = {}): Parameters<typeof adminCallerOfGrpc>[0] {
  return {
    getPeer: () => peer,
    getAuthContext: () => ({}),
    metadata: { get: (name: string) => (metadata[name] === undefined ? [] : [metadata[name]]), getMap: () => ({ ...metadata }) } as never,
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

  it('ends a stream whose token was rotated while its admission was being recorded, and only such a stream', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-gate-'));
    const tokenFile = join(dir, 'admin.token');
    const OLD = 'o'.repeat(40);
    writeFileSync(tokenFile, OLD);
    // The log holds each admission until told to go on, as a slow disk would.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const slow = AdminGate.fromConfig({ tokenFile }, { tls: false }, { log: { path: 'x', append: () => held }, policyVersion: () => 'v1' });
    try {
      const caller: AdminCaller = { caller: '127.0.0.1:1', address: '127.0.0.1', certificate: null, token: OLD, requestId: null };
      const admitting = slow.admit(caller, { method: 'WatchAlerts' });
      // Rotated while the admission is being recorded; a later call reads the new file.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const next = join(dir, 'next');
      writeFileSync(next, 'n'.repeat(40));
      renameSync(next, tokenFile);
      const later = slow.admit(caller, { method: 'GetPolicyStatus' });
      release();
      const identity = await admitting;
      await expect(later).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
      let ended = 0;
      slow.whileAdmissionHolds(identity, () => ended++);
      expect(ended).toBe(1);
      // A caller admitted by loopback holds no token: nothing to end.
      slow.whileAdmissionHolds({ id: 'loopback', via: 'loopback' }, () => ended++);
      expect(ended).toBe(1);
    } finally {
      slow.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives whoever presents a token no detail of why the token file cannot be used', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-gate-'));
    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, 'k'.repeat(40));
    const rows: DecisionRecord[] = [];
    const g = gate({ tokenFile }, rows);
    try {
      rmSync(tokenFile);
      const caller: AdminCaller = { caller: '10.0.0.1:1', address: '10.0.0.1', certificate: null, token: 'k'.repeat(40), requestId: null };
      const refusal = await g.admit(caller, { method: 'GetPolicyStatus' }).catch((error: unknown) => error as VerdictError);
      expect(refusal).toMatchObject({ code: 'UNAUTHENTICATED', message: 'admin: no admin token is accepted now: the admin token file cannot be used (the server log says why)' });
      expect(JSON.stringify(rows)).not.toContain(dir);
      expect(JSON.stringify(rows)).not.toContain('ENOENT');
    } finally {
      g.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tells the start-up warning whether others may read the token file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-gate-'));
    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, 'k'.repeat(40));
    try {
      for (const [mode, loose] of [[0o644, '0644'], [0o640, '0640'], [0o600, null]] as const) {
        chmodSync(tokenFile, mode);
        const g = gate({ tokenFile }, []);
        expect(g.tokenFileLooseMode, mode.toString(8)).toBe(loose);
        g.close();
      }
      expect(gate({}, []).tokenFileLooseMode).toBe(null);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
