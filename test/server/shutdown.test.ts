import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { DecisionReader } from '../../src/decisions/query.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { startWriterThread } from '../../src/decisions/writer-thread.js';
import { startServer, type RunningServer } from '../../src/server/app.js';
import { resolveConfig } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logger.js';
import { ROOT, checkRequest, verdictClient } from '../helpers/verdict-process.js';

// What SIGTERM runs (RunningServer.close), with the decision log's appends held
// until every check is known to be in flight inside the server: then close() is
// called, the ports must stop accepting, and every check in flight, gRPC and
// forward-auth alike, must still get its answer once the appends go through.

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };
/** The example set's route for predict, as NGINX forwards it, with the caller named by a trusted header. */
const forwardAuthHeaders = {
  'x-original-method': 'POST',
  'x-original-uri': '/v1/models/fraud-v3/predict',
  'x-model-org': 'acme',
  'x-model-classification': 'internal',
  'x-user': 'dana',
  'x-roles': 'data_scientist',
  'x-org': 'acme',
  'x-employment': 'employee',
};

interface Held {
  readonly server: RunningServer;
  readonly db: string;
  /** Resolves once `count` appends are waiting. */
  waiting(count: number): Promise<void>;
  release(): void;
}

/** verdict on the example policies, in this process, its decision log's appends held until release(). */
async function startHeld(shutdownGraceMs: number): Promise<Held> {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-shutdown-'));
  dirs.push(dir);
  const db = join(dir, 'decisions.db');
  const config = resolveConfig([
    {
      policies: join(ROOT, 'policies'),
      db,
      grpc: '127.0.0.1:0',
      http: '127.0.0.1:0',
      watch: false,
      shutdownGraceMs,
      trustedPrincipal: { idHeader: 'x-user', rolesHeader: 'x-roles', attributeHeaders: { org: 'x-org', employment: 'x-employment' } },
    },
  ]);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let held = 0;
  const watchers: { count: number; resolve: () => void }[] = [];
  const server = await startServer(config, createLogger('silent'), {
    openLog: async (sensitive) => {
      const log = await startWriterThread({ path: db, mode: 'durable', checkpoints: null }, sensitive);
      const append = log.append.bind(log);
      log.append = async (record: DecisionRecord) => {
        held++;
        for (const w of watchers.filter((w) => w.count <= held)) w.resolve();
        await gate;
        return append(record);
      };
      return log;
    },
  });
  return {
    server,
    db,
    waiting: (count) => new Promise<void>((resolve) => (held >= count ? resolve() : watchers.push({ count, resolve }))),
    release,
  };
}

/** A forward-auth request on a connection of its own (as NGINX's subrequests use). */
function forwardAuth(port: number): Promise<{ status: number; decisionId: string | null }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/forward-auth', headers: forwardAuthHeaders, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, decisionId: (res.headers['x-verdict-decision-id'] as string | undefined) ?? null }));
    });
    req.on('error', reject);
    req.end();
  });
}

const GRPC_CHECKS = 40;
const FORWARD_AUTHS = 20;

describe('shutdown with checks in flight', () => {
  it('stops accepting on both ports, then answers every check in flight, gRPC and forward-auth, and records each', async () => {
    const held = await startHeld(60_000);
    const client = verdictClient(held.server.grpcPort);
    const checks = Array.from({ length: GRPC_CHECKS }, (_, i) =>
      client.call<{ effect: string; decisionId: string }>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel, requestId: `r${i}` }), { deadline: Date.now() + 120_000 }),
    );
    const gateways = Array.from({ length: FORWARD_AUTHS }, () => forwardAuth(held.server.httpPort));
    await held.waiting(GRPC_CHECKS + FORWARD_AUTHS);

    let closed = false;
    const closing = held.server.close().then(() => (closed = true));
    // Nothing new gets in: a new gRPC connection and a new HTTP connection are refused.
    const late = verdictClient(held.server.grpcPort, { ownConnection: true });
    await expect(late.call('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    late.close();
    await expect(forwardAuth(held.server.httpPort)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(closed).toBe(false);

    held.release();
    const answered = await Promise.all(checks);
    const gatewayAnswers = await Promise.all(gateways);
    await closing;
    client.close();
    expect(answered.map((a) => a.effect)).toEqual(Array(GRPC_CHECKS).fill('EFFECT_ALLOW'));
    expect(gatewayAnswers.map((a) => a.status)).toEqual(Array(FORWARD_AUTHS).fill(200));

    const reader = DecisionReader.open(held.db);
    try {
      const ids = [...answered.map((a) => a.decisionId), ...gatewayAnswers.map((a) => a.decisionId)];
      expect(ids.filter((id) => id === null || reader.get(id) === null)).toEqual([]);
    } finally {
      reader.close();
    }
  });

  it('cuts off what is still in flight once the grace has passed, and still stops', async () => {
    const held = await startHeld(300);
    const client = verdictClient(held.server.grpcPort);
    const check = client.call('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }), { deadline: Date.now() + 120_000 }).then(
      () => 'answered',
      (error: grpc.ServiceError) => `failed: ${error.code}`,
    );
    const gateway = forwardAuth(held.server.httpPort).then(
      () => 'answered',
      (error: NodeJS.ErrnoException) => `failed: ${error.code}`,
    );
    await held.waiting(2);
    await held.server.close();
    expect(await check).toBe(`failed: ${grpc.status.UNAVAILABLE}`);
    expect(await gateway).toBe('failed: ECONNRESET');
    client.close();
    held.release();
  });
});
