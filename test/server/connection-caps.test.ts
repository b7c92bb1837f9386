// Idle TCP connections to the gRPC port (gRPC keeps a connection as long as its client
// does) once used up the process's file descriptors: the HTTP port stopped answering and
// the suspension store could not be opened. These attack a real server.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { RESERVED_FILE_DESCRIPTORS, fitConnectionCaps, openFileLimit } from '../../src/server/connection-caps.js';
import { queryDecisions } from '../../src/decisions/query.js';
import { ROOT, ensureBuilt, shippedAllowedCheck, startVerdict, verdictClient, checkRequest } from '../helpers/verdict-process.js';

/** Opens `count` TCP connections to `port` that send nothing; resolves with those the server has not closed after a moment. */
async function idleConnections(port: number, count: number): Promise<{ open: Socket[]; all: Socket[] }> {
  const all: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    all.push(socket);
    await new Promise<void>((resolve) => {
      socket.once('connect', () => resolve());
      socket.once('close', () => resolve());
    });
  }
  // The server closes a connection over its cap as it arrives; give it a moment to be seen.
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { open: all.filter((s) => !s.destroyed && s.readyState === 'open'), all };
}

const shippedCheck = (requestId: string) =>
  checkRequest({
    principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
    action: 'read',
    resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } },
    requestId,
  });

describe('connections to the gRPC port', () => {
  it('are capped by grpcMaxConnections: more are closed as they arrive, and a gateway already connected is answered', async () => {
    ensureBuilt();
    const dir = mkdtempSync(join(tmpdir(), 'verdict-grpc-cap-'));
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, stringify({ grpcMaxConnections: 4, maxConnectionsPerClient: 4 }));
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', config, '--no-watch'] });
    const gateway = verdictClient(server.grpcPort, { ownConnection: true });
    try {
      expect(await gateway.call<{ effect: string }>('Authorization', 'Check', shippedCheck('before'))).toMatchObject({ effect: 'EFFECT_ALLOW' });
      const { open, all } = await idleConnections(server.grpcPort, 10);
      // The gateway's connection is one of the four.
      expect(open).toHaveLength(3);
      expect(await gateway.call<{ effect: string }>('Authorization', 'Check', shippedCheck('during'))).toMatchObject({ effect: 'EFFECT_ALLOW' });
      for (const socket of all) socket.destroy();
      // Once they are gone, a new connection is served.
      let effect = '';
      for (let attempt = 0; attempt < 50 && effect !== 'EFFECT_ALLOW'; attempt++) {
        effect = await shippedAllowedCheck(server.grpcPort).catch(() => new Promise<string>((resolve) => setTimeout(() => resolve(''), 100)));
      }
      expect(effect).toBe('EFFECT_ALLOW');
    } finally {
      gateway.close();
      expect(await server.stop()).toBe(0);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('leave file descriptors for the log and the HTTP port when the open-file limit is low: the caps are lowered, and said so', async () => {
    ensureBuilt();
    const dir = mkdtempSync(join(tmpdir(), 'verdict-grpc-fds-'));
    const db = join(dir, 'decisions.db');
    // 400 file descriptors: the default caps (4096 per listener) would let connections take them all.
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--no-watch'], openFiles: 400 });
    const gateway = verdictClient(server.grpcPort, { ownConnection: true });
    let idle: Socket[] = [];
    try {
      const warning = await server.waitForLog((line) => String(line.msg).startsWith('the open-file limit (400)'));
      expect(warning.msg).toContain('connections capped lower: grpcMaxConnections 4096 -> 72, httpMaxConnections 4096 -> 72');
      expect(await gateway.call<{ effect: string }>('Authorization', 'Check', shippedCheck('before'))).toMatchObject({ effect: 'EFFECT_ALLOW' });
      const attack = await idleConnections(server.grpcPort, 500);
      idle = attack.all;
      expect(attack.open.length).toBeLessThanOrEqual(72);
      // The HTTP port answers, the log records, and the suspension store opens: nothing ran out.
      expect((await fetch(`http://127.0.0.1:${server.httpPort}/readyz`, { signal: AbortSignal.timeout(5000) })).status).toBe(200);
      const answer = await gateway.call<{ effect: string; decisionId: string }>('Authorization', 'Check', shippedCheck('during'));
      expect(answer.effect).toBe('EFFECT_ALLOW');
      expect(queryDecisions(db, { limit: 5 }).map((r) => r.decisionId)).toContain(answer.decisionId);
      expect(server.logs.filter((line) => /could not be read|unable to open|EMFILE/.test(String(line.msg)))).toEqual([]);
    } finally {
      for (const socket of idle) socket.destroy();
      gateway.close();
      expect(await server.stop()).toBe(0);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('fitting the connection caps to the open-file limit', () => {
  it('reads the soft limit from /proc/self/limits', () => {
    const text = 'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n';
    expect(openFileLimit(text)).toBe(1024);
    expect(openFileLimit('Max open files            unlimited            unlimited            files\n')).toBeNull();
    expect(openFileLimit(null)).toBeNull();
    if (process.platform === 'linux') expect(openFileLimit()).toBeGreaterThan(0);
  });

  it('keeps caps that fit, and shares out what is left after the reserve when they do not', () => {
    expect(fitConnectionCaps({ grpcMaxConnections: 4096, httpMaxConnections: 4096 }, 20_000)).toEqual({ caps: { grpcMaxConnections: 4096, httpMaxConnections: 4096 }, warning: null });
    expect(fitConnectionCaps({ grpcMaxConnections: 4096, httpMaxConnections: 4096 }, null).warning).toBeNull();
    const fitted = fitConnectionCaps({ grpcMaxConnections: 4096, httpMaxConnections: 100, 'httpMaxConnections (ops)': 4096 }, 1024);
    const share = Math.floor((1024 - RESERVED_FILE_DESCRIPTORS) / 3);
    expect(fitted.caps).toEqual({ grpcMaxConnections: share, httpMaxConnections: 100, 'httpMaxConnections (ops)': share });
    expect(fitted.warning).toContain(`grpcMaxConnections 4096 -> ${share}, httpMaxConnections (ops) 4096 -> ${share}`);
    expect(fitConnectionCaps({ grpcMaxConnections: 10 }, 100).caps).toEqual({ grpcMaxConnections: 1 });
  });
});
