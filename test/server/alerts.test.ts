import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { runAlerts } from '../../src/cli/alerts.js';
import { runAnalyze } from '../../src/cli/analyze.js';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';
import { checkRequest, ensureBuilt, ROOT, startVerdict, verdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

/** A real `verdict serve`: checks over gRPC raise alerts, seen over WatchAlerts, in /metrics, in `verdict alerts`, and again by `verdict analyze`. */

const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as { verdict: { v1: Record<string, typeof grpc.Client> } };

interface WatchedAlert {
  id: string;
  type: string;
  subjectKind: string;
  subjectId: string;
  observed: number;
  threshold: number;
  decisionIds: string[];
}

async function cli(run: (argv: string[], io: { stdout: (s: string) => void; stderr: (s: string) => void }) => Promise<number>, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

function httpGet(port: number, path: string): Promise<string> {
  return fetch(`http://127.0.0.1:${port}${path}`).then((r) => r.text());
}

let dir: string;
let db: string;
let config: string;
let server: VerdictProcess;

beforeAll(async () => {
  ensureBuilt();
  dir = makeTempDir('verdict-alerts-');
  db = join(dir, 'decisions.db');
  config = join(dir, 'verdict.yaml');
  writeFileSync(config, 'alerts:\n  detectors:\n    volume:\n      maxRequests: 30\n    probing:\n      enabled: false\n');
  server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--config', config] });
}, 60_000);

afterAll(async () => {
  await server?.stop();
  removeTempDirs();
});

describe('alerts in a running server', () => {
  it('raises an alert from gRPC checks, streams it over WatchAlerts, counts it, stores it, and analyze finds the same', async () => {
    const Admin = loaded.verdict.v1.Admin!;
    const admin = new Admin(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
    const stream = (admin as unknown as { WatchAlerts(request: unknown): grpc.ClientReadableStream<WatchedAlert> }).WatchAlerts({ types: ['volume'] });
    const received: WatchedAlert[] = [];
    const first = new Promise<WatchedAlert>((resolve, reject) => {
      stream.on('data', (alert: WatchedAlert) => {
        received.push(alert);
        resolve(alert);
      });
      stream.on('error', (error: grpc.ServiceError) => {
        if (error.code !== grpc.status.CANCELLED) reject(error);
      });
    });
    // The subscription is admitted (and recorded) before alerts flow: wait for its record.
    const client = verdictClient(server.grpcPort);
    try {
      for (let tries = 0; ; tries++) {
        const listed = await client.call<{ decisions: { action: string }[] }>('Admin', 'ListDecisions', { action: 'WatchAlerts' });
        if (listed.decisions.length > 0) break;
        if (tries > 100) throw new Error('WatchAlerts was never admitted');
        await new Promise((r) => setTimeout(r, 50));
      }
      for (let k = 0; k < 40; k++) {
        await client.call('Authorization', 'Check', checkRequest({ principal: { id: 'mallory' }, action: 'predict', resource: { type: 'model', id: `m${k % 3}` } }));
      }
    } finally {
      client.close();
    }
    const alert = await first;
    stream.cancel();
    admin.close();
    expect(alert).toMatchObject({ type: 'volume', subjectKind: 'principal', subjectId: 'mallory', observed: 31, threshold: 30 });
    expect(alert.decisionIds).toHaveLength(5);
    expect(received).toHaveLength(1);

    const metrics = await httpGet(server.httpPort, '/metrics');
    expect(metrics).toMatch(/verdict_alerts_total\{type="volume"\} 1\b/);
    expect(metrics).toMatch(/verdict_alert_detector_evictions_total 0\b/);

    // Stored beside the decisions, by the writer: listed while the server runs.
    let stored: Alert[] = [];
    for (let tries = 0; tries < 100 && stored.length === 0; tries++) {
      const listed = await cli(runAlerts, '--db', db, '--json', '--type', 'volume');
      expect(listed.code).toBe(0);
      stored = listed.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Alert);
      if (stored.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(stored.map((a) => a.id)).toEqual([alert.id]);
    const table = await cli(runAlerts, '--db', db, '--principal', 'mallory');
    expect(table.stdout).toContain('volume');
    expect(table.stdout).toContain(alert.id);

    // Batch over the same log, with the same thresholds: the same alerts, the same ids.
    const all = (await cli(runAlerts, '--db', db, '--json')).stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Alert);
    const analyzed = await cli(runAnalyze, '--db', db, '--since', '1h', '--config', config, '--json');
    expect(analyzed.code).toBe(0);
    const batch = analyzed.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Alert);
    expect(batch.map((a) => a.id).sort()).toEqual(all.map((a) => a.id).sort());
    expect(batch.find((a) => a.id === alert.id)).toEqual(stored[0]);
  }, 60_000);

  it('refuses WatchAlerts with an unknown type, and the CLI a bad flag', async () => {
    const Admin = loaded.verdict.v1.Admin!;
    const admin = new Admin(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
    const stream = (admin as unknown as { WatchAlerts(request: unknown): grpc.ClientReadableStream<WatchedAlert> }).WatchAlerts({ types: ['nope'] });
    const error = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    admin.close();
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toContain('unknown alert type');
    const bad = await cli(runAlerts, '--db', db, '--type', 'loud');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--type must be one of');
    const missing = await cli(runAnalyze, '--db', join(dir, 'none.db'));
    expect(missing.code).toBe(4);
  });
});
