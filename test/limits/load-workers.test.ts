import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, startVerdict, verdictClient, workersByClientPort, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

// ReportLoad under `verdict serve --workers 2`: a report that reaches one worker
// scales the load-aware limits of every worker, and of a worker started later.
// Each worker is reached over a kept-alive HTTP connection of its own (forward-auth),
// told apart by the pid its /readyz answers with.

const POLICIES = `
kind: rules
rules:
  - { id: everyone-predicts, effect: allow, actions: [predict], resource: { type: model } }
---
kind: routes
routes:
  - { method: POST, path: "/v1/models/{model}/predict", action: predict, resource: { type: model, id: "{model}" } }
---
kind: limits
limits:
  - id: predict-gpu
    actions: [predict]
    rate: 600/minute
    burst: 10
    loadAware: { pool: gpu-a, min: 0.1, from: 0.5 }
`;

function get(agent: Agent, port: number, path: string, method = 'GET', headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`${method} ${path}: no answer within 5 s`)));
    req.end();
  });
}

describe('ReportLoad under --workers 2', () => {
  let dir: string;
  let verdict: VerdictProcess;
  const agents: Agent[] = [];
  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'verdict-load-workers-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'policies.yaml'), POLICIES);
    writeFileSync(join(dir, 'verdict.yaml'), stringify({ trustedPrincipal: { idHeader: 'x-user' } }));
    verdict = await startVerdict({ policies: join(dir, 'policies'), db: join(dir, 'decisions.db'), args: ['--config', join(dir, 'verdict.yaml'), '--no-watch', '--workers', '2'] });
  });
  afterAll(async () => {
    for (const agent of agents) agent.destroy();
    await verdict?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A kept-alive connection to each worker serving now whose pid is not in `skip`, by pid. */
  async function connections(wanted: number, skip: ReadonlySet<number> = new Set()): Promise<Map<number, Agent>> {
    const byPid = new Map<number, Agent>();
    for (let tries = 0; byPid.size < wanted && tries < 20; tries++) {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      agents.push(agent);
      const pid = (JSON.parse((await get(agent, verdict.httpPort, '/readyz')).body) as { pid: number }).pid;
      if (byPid.has(pid) || skip.has(pid)) agent.destroy();
      else byPid.set(pid, agent);
    }
    expect(byPid.size).toBe(wanted);
    return byPid;
  }

  let principals = 0;
  /** How many of 4 predicts by a fresh principal the worker behind `agent` allows. */
  async function allowedThrough(agent: Agent): Promise<number> {
    const principal = `p${++principals}`;
    let allowed = 0;
    for (let i = 0; i < 4; i++) if ((await get(agent, verdict.httpPort, '/forward-auth', 'GET', { 'x-original-method': 'POST', 'x-original-uri': '/v1/models/m/predict', 'x-user': principal })).status === 200) allowed++;
    return allowed;
  }

  async function eventually(agent: Agent, allowed: number): Promise<void> {
    const deadline = Date.now() + 5000;
    let seen = await allowedThrough(agent);
    while (seen !== allowed && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      seen = await allowedThrough(agent);
    }
    expect(seen).toBe(allowed);
  }

  it('scales the limits of every worker, whichever one the report reached, and of a worker started after it', async () => {
    const workers = await connections(2);
    for (const agent of workers.values()) expect(await allowedThrough(agent)).toBe(4);

    // Reported through one connection, which reaches one of the workers.
    const admin = verdictClient(verdict.grpcPort, { ownConnection: true });
    try {
      const answer = await admin.call<{ loadFactors: { factor: number }[] }>('Admin', 'ReportLoad', { pool: 'gpu-a', load: 1 });
      expect(answer.loadFactors).toEqual([expect.objectContaining({ limitId: 'predict-gpu', factor: 0.1 })]);
    } finally {
      admin.close();
    }
    // A tenth of the burst of 10: one predict per fresh principal, through either worker.
    for (const agent of workers.values()) await eventually(agent, 1);

    // A worker that replaces one that died takes up the load still in force.
    const [dead] = [...workers.keys()];
    process.kill(dead!, 'SIGKILL');
    // Its replacement's start (the third `worker serving` line): a connection made before the primary saw the death could go to the dead worker.
    await expect.poll(() => verdict.logs.filter((l) => l.msg === 'worker serving').length, { timeout: 20_000 }).toBe(3);
    const [fresh] = [...(await connections(1, new Set(workers.keys()))).values()];
    expect(await allowedThrough(fresh!)).toBe(1);
  }, 60_000);

  it('ends with every worker counting the same report when two workers take reports of one pool at once', async () => {
    // An Admin connection to each worker, told apart by the pid serving it.
    const byPid = new Map<number, VerdictClient>();
    const extra: VerdictClient[] = [];
    try {
      for (let tries = 0; byPid.size < 2 && tries < 10; tries++) {
        const before = workersByClientPort(verdict.grpcPort);
        const client = verdictClient(verdict.grpcPort, { ownConnection: true });
        await client.call('Admin', 'GetPolicyStatus', {});
        const fresh = [...workersByClientPort(verdict.grpcPort)].filter(([port]) => !before.has(port));
        expect(fresh).toHaveLength(1);
        if (byPid.has(fresh[0]![1])) extra.push(client);
        else byPid.set(fresh[0]![1], client);
      }
      const [a, b] = [...byPid.values()];
      expect(b).toBeDefined();
      const loadSeen = async (client: VerdictClient): Promise<number> =>
        (await client.call<{ loadFactors: { pool: string; load: number }[] }>('Admin', 'GetPolicyStatus', {})).loadFactors.find((f) => f.pool === 'gpu-a')!.load;
      const disagreed: string[] = [];
      for (let round = 0; round < 30; round++) {
        // Both at once: each worker takes its own report and is passed the other's.
        await Promise.all([a!.call('Admin', 'ReportLoad', { pool: 'gpu-a', load: round / 100 }), b!.call('Admin', 'ReportLoad', { pool: 'gpu-a', load: 0.5 + round / 100 })]);
        await new Promise((r) => setTimeout(r, 30));
        const seen = [await loadSeen(a!), await loadSeen(b!)];
        if (Math.abs(seen[0]! - seen[1]!) > 1e-9) disagreed.push(`round ${round}: ${seen.join(' vs ')}`);
      }
      expect(disagreed).toEqual([]);
    } finally {
      for (const client of [...byPid.values(), ...extra]) client.close();
    }
  }, 60_000);
});
