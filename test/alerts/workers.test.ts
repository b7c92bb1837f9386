import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { openAlertReader } from '../../src/analysis/alert-store.js';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import { BIN, ROOT, ensureBuilt, startVerdict, workersByClientPort, type VerdictProcess } from '../helpers/verdict-process.js';
import { forwardAuthHeaders, until } from './support.js';

// `verdict serve --workers 2`: the detectors count a principal's requests through
// every worker together (the primary watches every worker's rows), so a threshold
// holds for the whole server, not per worker. Each worker here answers part of the
// traffic, never more than the threshold; the whole crosses it once.

const run = promisify(execFile);
const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as { verdict: { v1: Record<string, typeof grpc.Client> } };

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** One request over `agent`, whose single kept-alive connection stays with one worker. */
function get(agent: Agent, port: number, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

const dirs: string[] = [];
const servers: VerdictProcess[] = [];
const closers: (() => void)[] = [];
beforeAll(ensureBuilt);
afterEach(async () => {
  for (const close of closers.splice(0)) close();
  for (const s of servers.splice(0)) await s.stop();
});
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('anomaly detection under --workers 2', () => {
  it('counts a principal through both workers together: one alert, stored, streamed, posted and suspending once', async () => {
    const deliveries: string[] = [];
    const hook: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        deliveries.push(Buffer.concat(chunks).toString('utf8'));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', () => resolve()));
    closers.push(() => hook.close());

    const dir = mkdtempSync(join(tmpdir(), 'verdict-alerts-workers-'));
    dirs.push(dir);
    const db = join(dir, 'decisions.db');
    const configFile = join(dir, 'verdict.yaml');
    writeFileSync(
      configFile,
      JSON.stringify({
        trustedPrincipal: { idHeader: 'x-user', rolesHeader: 'x-roles', attributeHeaders: { org: 'x-org', employment: 'x-employment' } },
        alerts: {
          detectors: { volume: { maxRequests: 10 }, baseline: { enabled: false } },
          webhooks: [{ url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hooks`, secret: 'whsec-workers-0123456789abcdef', types: ['volume'] }],
          suspend: { enabled: true, for: '15m', types: ['volume'] },
        },
      }),
    );
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--config', configFile, '--workers', '2', '--no-watch'] });
    servers.push(server);

    // A WatchAlerts stream on each of two fresh connections, which the primary hands to the workers in turn (checked below).
    const watched: { id: string }[][] = [];
    for (let i = 0; i < 2; i++) {
      const admin = new loaded.verdict.v1.Admin!(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      closers.push(() => admin.close());
      const stream = (admin as unknown as { WatchAlerts(request: unknown): grpc.ClientReadableStream<{ id: string }> }).WatchAlerts({ types: ['volume'] });
      closers.push(() => stream.cancel());
      const seen: { id: string }[] = [];
      watched.push(seen);
      stream.on('data', (a: { id: string }) => seen.push(a));
      stream.on('error', () => undefined);
    }
    await expect.poll(async () => (await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text()).match(/^verdict_alert_watchers (\d+)$/m)?.[1], { timeout: 10_000 }).toBe('2');
    // The streams' connections are the only ones to the gRPC port: one reached each worker.
    expect(new Set(workersByClientPort(server.grpcPort).values()).size).toBe(2);

    // One kept-alive connection to each worker, told apart by the pid /readyz answers with.
    const byPid = new Map<number, Agent>();
    for (let tries = 0; byPid.size < 2 && tries < 10; tries++) {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      const ready = await get(agent, server.httpPort, '/readyz');
      const pid = (JSON.parse(ready.body) as { pid: number }).pid;
      if (byPid.has(pid)) agent.destroy();
      else byPid.set(pid, agent);
    }
    expect(byPid.size).toBe(2);
    const [a, b] = [...byPid.values()] as [Agent, Agent];
    closers.push(() => a.destroy(), () => b.destroy());

    // Six checks through one worker and five through the other: neither crosses 10, the two together do.
    const check = (agent: Agent): Promise<Answer> => get(agent, server.httpPort, '/forward-auth', forwardAuthHeaders('mallory'));
    for (const [agent, n] of [[a, 6], [b, 5]] as const) {
      for (let i = 0; i < n; i++) expect((await check(agent)).status).toBe(200);
    }

    // Stored once, by the primary, with the figure of both workers' decisions.
    const reader = openAlertReader(db);
    closers.push(() => reader.close());
    const stored: Alert = await until('the stored alert', async () => (await reader.list({ type: 'volume', subjectId: 'mallory' }))[0]);
    expect(stored).toMatchObject({ subject: { kind: 'principal', id: 'mallory' }, observed: 11, threshold: 10 });

    // Suspended in both workers: at once in the one that responded, from the shared table within a second in the other.
    for (const agent of [a, b]) {
      const denied = await until('a suspended answer', async () => {
        const answer = await check(agent);
        return answer.status === 403 ? answer : undefined;
      });
      expect(denied.headers['x-verdict-decision-id']).toBeTruthy();
    }

    // Streamed to the subscriber on each worker, posted to the webhook once.
    await until('the alert on both streams', () => (watched.every((s) => s.length > 0) ? true : undefined));
    await until('the webhook delivery', () => deliveries[0]);
    await new Promise((r) => setTimeout(r, 300));
    expect(watched).toEqual([[expect.objectContaining({ id: stored.id })], [expect.objectContaining({ id: stored.id })]]);
    expect(deliveries).toHaveLength(1);
    expect((JSON.parse(deliveries[0]!) as { alert: { id: string } }).alert.id).toBe(stored.id);

    // Counted once in the cluster's /metrics, and the stored alerts are the only ones.
    const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^verdict_alerts_total\{type="volume"\} 1$/m);
    expect(metrics).toMatch(/^verdict_suspensions_total\{cause="volume"\} 1$/m);
    expect(await reader.list({})).toHaveLength(1);

    // The same alert, by id, from the log read afterwards.
    expect(await server.stop()).toBe(0);
    servers.splice(servers.indexOf(server), 1);
    const analysed = await run(process.execPath, [BIN, 'analyze', '--db', db, '--config', configFile, '--json'], { cwd: ROOT });
    expect(analysed.stdout).toContain(stored.id);
  }, 90_000);
});
