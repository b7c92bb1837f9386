import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };
const dirs: string[] = [];

beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The shipped policies plus `files` files of generated tenant rules, which none of the checks below touch. */
function policiesWithBulk(files: number, rulesPerFile: number, generation = 0): string {
  const root = mkdtempSync(join(tmpdir(), 'verdict-reload-load-'));
  dirs.push(root);
  const dir = join(root, 'policies');
  cpSync(join(ROOT, 'policies'), dir, { recursive: true });
  for (let f = 0; f < files; f++) writeBulk(dir, f, rulesPerFile, generation);
  return dir;
}

function writeBulk(dir: string, file: number, rulesPerFile: number, generation: number): void {
  const rules = Array.from({ length: rulesPerFile }, (_, i) => ({
    id: `bulk-${file}-${i}${generation > 0 && i === 0 ? `-g${generation}` : ''}`,
    effect: i % 7 === 0 ? 'deny' : 'allow',
    actions: ['read', 'predict'],
    resource: { type: `tenant-${file}-${i % 50}-model`, attributes: { org: `tenant-${file}` } },
    ...(i % 3 === 0 ? { when: 'resource.attributes.org == principal.attributes.org' } : {}),
  }));
  writeFileSync(join(dir, `bulk-${String(file).padStart(2, '0')}.yaml`), stringify({ kind: 'rules', rules }));
}

/** A server on the shipped policies plus generated ones; `policies` is its directory. */
async function serveBulk(files: number, rulesPerFile: number, options: { args?: string[]; env?: NodeJS.ProcessEnv } = {}) {
  const policies = policiesWithBulk(files, rulesPerFile);
  const server = await startVerdict({ policies, db: join(policies, '..', 'decisions.db'), startTimeoutMs: 60_000, ...options });
  return { policies, server };
}

/**
 * Checks in a steady stream over `connections` connections until stopped: every
 * answer and every failure is kept.
 */
function steadyChecks(grpcPort: number, connections: number) {
  const answers: { effect: string; policyVersion: string }[] = [];
  const failures: string[] = [];
  let stopped = false;
  const loops = Array.from({ length: connections }, async () => {
    const client = verdictClient(grpcPort, { ownConnection: true });
    try {
      while (!stopped) {
        try {
          answers.push(await client.call<{ effect: string; policyVersion: string }>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel })));
        } catch (error) {
          failures.push(String((error as Error).message));
        }
      }
    } finally {
      client.close();
    }
  });
  const done = Promise.all(loops);
  return {
    answers,
    failures,
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

describe('a reload while checks stream in', () => {
  let server: VerdictProcess;
  let policies: string;

  beforeAll(async () => {
    ({ policies, server } = await serveBulk(4, 500));
  }, 90_000);
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it('answers every check, before, during and after each kind of reload, none failed or refused', async () => {
    const stream = steadyChecks(server.grpcPort, 6);
    const admin = verdictClient(server.grpcPort, { ownConnection: true });
    const reloads = () => server.logs.filter((l) => l.msg === 'policies reloaded' && l.changed === true).length;
    try {
      // One file changed (the watcher), every file changed, then an Admin reload and SIGHUP of a changed set.
      let seen = reloads();
      writeBulk(policies, 2, 500, 1);
      await server.waitForLog(() => reloads() > seen, 60_000);
      seen = reloads();
      for (let f = 0; f < 4; f++) writeBulk(policies, f, 500, 2);
      await server.waitForLog(() => reloads() > seen, 60_000);
      seen = reloads();
      writeBulk(policies, 1, 500, 3);
      const reloaded = await admin.call<{ reloaded: boolean }>('Admin', 'ReloadPolicies', {}, { deadline: Date.now() + 60_000 });
      expect(reloaded.reloaded).toBe(true);
      writeBulk(policies, 3, 500, 4);
      server.child.kill('SIGHUP');
      await server.waitForLog(() => reloads() >= seen + 2, 60_000);
    } finally {
      admin.close();
      await stream.stop();
    }
    expect(stream.failures).toEqual([]);
    expect(stream.answers.length).toBeGreaterThan(0);
    expect(stream.answers.every((a) => a.effect === 'EFFECT_ALLOW')).toBe(true);
    // Answers came from the sets before and after the reloads.
    expect(new Set(stream.answers.map((a) => a.policyVersion)).size).toBeGreaterThanOrEqual(2);
  }, 300_000);
});

describe('a reload with --workers 2', () => {
  let server: VerdictProcess;
  let policies: string;

  beforeAll(async () => {
    ({ policies, server } = await serveBulk(2, 300, { args: ['--workers', '2'], env: { VERDICT_LOG_LEVEL: 'debug' } }));
    // Every worker is up (the primary's 'verdict serving' comes after each worker's).
    await server.waitForLog((l) => l.msg === 'worker serving' && server.logs.filter((w) => w.msg === 'worker serving').length >= 2, 30_000);
  }, 120_000);
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it('compiles in one worker at a time, while every worker keeps answering', async () => {
    const stream = steadyChecks(server.grpcPort, 4);
    const workerReloads = () => server.logs.filter((l) => l.msg === 'policies reloaded' && l.changed === true);
    try {
      writeBulk(policies, 1, 300, 1);
      await server.waitForLog(() => new Set(workerReloads().map((l) => l.pid)).size >= 2, 60_000);
    } finally {
      await stream.stop();
    }
    expect(stream.failures).toEqual([]);
    expect(stream.answers.every((a) => a.effect === 'EFFECT_ALLOW')).toBe(true);
    // The primary handed the turn to one worker at a time: each grant is returned before the next.
    const turns = server.logs.filter((l) => l.msg === 'policy reload turn granted' || l.msg === 'policy reload turn returned');
    let holder: unknown = null;
    for (const turn of turns) {
      if (turn.msg === 'policy reload turn granted') {
        expect(holder).toBeNull();
        holder = turn.pid;
      } else {
        expect(turn.pid).toBe(holder);
        holder = null;
      }
    }
    const granted = new Set(turns.filter((t) => t.msg === 'policy reload turn granted').map((t) => t.pid));
    expect(granted).toEqual(new Set(workerReloads().map((l) => l.pid)));
  }, 120_000);
});
