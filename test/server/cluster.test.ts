import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, checkRequest, ensureBuilt, signalWhileLoading, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };
const dirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-cluster-'));
  dirs.push(dir);
  return dir;
}

function rows(db: string): number {
  const conn = new Database(db, { readonly: true });
  try {
    return (conn.prepare('SELECT count(*) AS n FROM decisions').get() as { n: number }).n;
  } finally {
    conn.close();
  }
}

function verdict(...argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...argv], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Pids that answered /readyz over `n` fresh connections (the cluster hands each to the next worker). */
async function readyPids(httpPort: number, n: number): Promise<Set<number>> {
  const pids = new Set<number>();
  for (let i = 0; i < n; i += 1) {
    const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`, { headers: { connection: 'close' } });
    expect(res.status).toBe(200);
    pids.add(((await res.json()) as { pid: number }).pid);
  }
  return pids;
}

/** `total` allowed checks spread over `connections` separate connections; returns the decision ids. */
async function checksOver(grpcPort: number, connections: number, total: number): Promise<string[]> {
  const clients: VerdictClient[] = Array.from({ length: connections }, () => verdictClient(grpcPort, { ownConnection: true }));
  try {
    const answers = await Promise.all(
      Array.from({ length: total }, (_, i) =>
        clients[i % connections]!.call<{ effect: string; decisionId: string }>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel })),
      ),
    );
    for (const answer of answers) expect(answer.effect).toBe('EFFECT_ALLOW');
    return answers.map((a) => a.decisionId);
  } finally {
    for (const client of clients) client.close();
  }
}

beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('verdict serve --workers 2', () => {
  let server: VerdictProcess;
  let db: string;
  let policies: string;
  const answered = new Set<string>();

  beforeAll(async () => {
    const dir = tempDir();
    db = join(dir, 'decisions.db');
    policies = join(dir, 'policies');
    cpSync(join(ROOT, 'policies'), policies, { recursive: true });
    server = await startVerdict({ policies, db, args: ['--workers', '2', '--no-watch'] });
  }, 60_000);
  afterAll(async () => {
    if (server?.child.exitCode === null) await server.stop('SIGKILL');
  });

  it('serves from two worker processes on the same ports', async () => {
    const serving = server.logs.find((l) => l.msg === 'verdict serving');
    expect(serving?.workers).toBe(2);
    expect(server.logs.filter((l) => l.msg === 'worker serving')).toHaveLength(2);
    // The shipped policies have rate limits and the budgets are in memory: the primary warns that each worker counts alone.
    const perWorker = server.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('rate limits are counted by each worker on its own'));
    expect(perWorker).toHaveLength(1);
    expect(perWorker[0]).toMatchObject({ level: 40, workers: 2, backend: 'memory' });
    const pids = await readyPids(server.httpPort, 6);
    expect(pids.size).toBe(2);
    expect(pids.has(server.child.pid!)).toBe(false);
  });

  it('records every answered check from every worker in one log, and /metrics counts them all', async () => {
    for (const id of await checksOver(server.grpcPort, 4, 400)) answered.add(id);
    expect(answered.size).toBe(400);
    expect(rows(db)).toBe(400);
    const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
    const counted = metrics
      .split('\n')
      .filter((line) => line.startsWith('verdict_decisions_total{'))
      .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
    expect(counted).toBe(400);
    expect(metrics).toMatch(/verdict_decision_log_batch_rows_count \d+/);
    // State gauges are not summed over the processes.
    expect(metrics).toMatch(/^verdict_decision_log_healthy 1$/m);
    const ready = (await (await fetch(`http://127.0.0.1:${server.httpPort}/readyz`)).json()) as { policyVersion: string };
    expect(metrics).toContain(`verdict_policy_info{version="${ready.policyVersion}"} 1`);
  });

  it('reloads every worker when one of them is asked to', async () => {
    writeFileSync(join(policies, 'extra.yaml'), 'kind: rules\nrules:\n  - id: extra-rule\n    effect: allow\n    actions: [describe]\n    principal:\n      roles: [data_scientist]\n    resource:\n      type: model\n');
    const admin = verdictClient(server.grpcPort, { ownConnection: true });
    const reloaded = await admin.call<{ reloaded: boolean; status: { version: string } }>('Admin', 'ReloadPolicies', {});
    admin.close();
    expect(reloaded.reloaded).toBe(true);
    // Every worker, reached over fresh connections, ends up on the new version.
    await expect
      .poll(
        async () => {
          const versions = new Set<string>();
          for (let i = 0; i < 6; i += 1) {
            const client = verdictClient(server.grpcPort, { ownConnection: true });
            versions.add((await client.call<{ version: string }>('Admin', 'GetPolicyStatus', {})).version);
            client.close();
          }
          return [...versions];
        },
        { timeout: 10_000 },
      )
      .toEqual([reloaded.status.version]);
  });

  it('replaces a worker that dies, keeps answering, and loses no answered decision', async () => {
    const pids = [...(await readyPids(server.httpPort, 4))];
    process.kill(pids[0]!, 'SIGKILL');
    await server.waitForLog((l) => l.msg === 'a worker exited; starting a new one');
    await server.waitForLog((l) => l.msg === 'worker serving' && l.pid !== pids[0] && !pids.includes(l.pid as number), 20_000);
    for (const id of await checksOver(server.grpcPort, 4, 100)) answered.add(id);
    expect(rows(db)).toBeGreaterThanOrEqual(answered.size);
  });

  it('stops cleanly on SIGTERM: workers first, then the log, which verifies with every answered decision in it', async () => {
    expect(await server.stop('SIGTERM')).toBe(0);
    const conn = new Database(db, { readonly: true });
    const stored = new Set((conn.prepare('SELECT decision_id FROM decisions').pluck().all() as string[]));
    conn.close();
    for (const id of answered) expect(stored.has(id)).toBe(true);
    const verified = verdict('audit', 'verify', '--db', db);
    expect(verified.stderr).toBe('');
    expect(verified.status).toBe(0);
  });
});

describe('verdict serve --workers 2 sent SIGHUP while its workers load the policies', () => {
  it('has the worker that was loading reload once it serves, so every worker denies what the push denies', async () => {
    const dir = tempDir();
    const policies = join(dir, 'policies');
    cpSync(join(ROOT, 'policies'), policies, { recursive: true });
    // A worker logs `loading policies`: the signal reaches the primary in the middle of the workers' start.
    const server = await startVerdict({ policies, db: join(dir, 'decisions.db'), args: ['--workers', '2', '--no-watch'], startTimeoutMs: 120_000, onLine: signalWhileLoading(policies) });
    try {
      // Nothing else reloads (no watching): the worker whose line set off the signal was loading, and reloads once it serves.
      // (A worker that began loading after the push read it then.)
      await server.waitForLog((l) => l.msg === 'policies reloaded', 60_000);
      const everyConnectionDenies = async (): Promise<boolean> => {
        // Eight connections, handed to the workers in turn.
        const clients = Array.from({ length: 8 }, () => verdictClient(server.grpcPort, { ownConnection: true }));
        try {
          const answers = await Promise.all(clients.map((client) => client.call<{ effect: string; ruleIds: string[] }>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }))));
          return answers.every((answer) => answer.effect === 'EFFECT_DENY' && answer.ruleIds[0] === 'freeze-predictions');
        } finally {
          for (const client of clients) client.close();
        }
      };
      await expect.poll(everyConnectionDenies, { timeout: 60_000, interval: 500 }).toBe(true);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  }, 180_000);
});

describe('verdict serve --workers 2 whose primary is killed', () => {
  it('leaves no worker answering without the decision log', async () => {
    const dir = tempDir();
    const server = await startVerdict({ policies: join(ROOT, 'policies'), db: join(dir, 'decisions.db'), args: ['--workers', '2'] });
    const pids = (server.logs.find((l) => l.msg === 'verdict serving')?.pids ?? []) as number[];
    expect(pids).toHaveLength(2);
    await server.stop('SIGKILL');
    const alive = (pid: number): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await expect.poll(() => pids.filter(alive), { timeout: 10_000 }).toEqual([]);
  });
});

describe('verdict serve --workers 2 that cannot start', () => {
  it('exits 3 for invalid policies, before starting any worker', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'broken.yaml'), 'kind: rules\nrules: [{ id: x, effect: MAYBE }]\n');
    const result = verdict('serve', '--workers', '2', '--policies', dir, '--db', join(dir, 'd.db'), '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0');
    expect(result.status).toBe(3);
    expect(result.stderr).toContain('broken.yaml');
  });

  it('exits 2 for a TLS certificate that cannot be read, naming the file', () => {
    const dir = tempDir();
    const missing = join(dir, 'no-such-cert.pem');
    const result = verdict('serve', '--workers', '2', '--policies', join(ROOT, 'policies'), '--db', join(dir, 'd.db'), '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--tls-cert', missing, '--tls-key', missing);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(missing);
  });

  it('exits 5 when its port is taken, naming the address', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const dir = tempDir();
      const result = verdict('serve', '--workers', '2', '--policies', join(ROOT, 'policies'), '--db', join(dir, 'd.db'), '--grpc', `127.0.0.1:${port}`, '--http', '127.0.0.1:0', '--log-level', 'silent');
      expect(result.status).toBe(5);
      expect(result.stderr).toContain(String(port));
    } finally {
      blocker.close();
    }
  });
});
