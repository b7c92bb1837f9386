// One server per decision log: a second `verdict serve` on the same --db is refused,
// naming the file and the process that holds it; a holder killed with -9 leaves no
// stale lock behind.
import { spawn, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lockDecisionLog } from '../../src/decisions/lock.js';
import { VerdictError } from '../../src/errors.js';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';
import { BIN, ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

const POLICIES = join(ROOT, 'policies');
const running: VerdictProcess[] = [];

afterEach(async () => {
  for (const server of running.splice(0)) await server.stop('SIGKILL');
  removeTempDirs();
});

/** `verdict serve` on `db` that is expected not to start: its exit code and stderr. */
function serveOnce(db: string, extra: string[] = []): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, 'serve', '--policies', POLICIES, '--db', db, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'silent', ...extra], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: result.status, stderr: result.stderr };
}

async function decide(server: VerdictProcess): Promise<string> {
  const client = verdictClient(server.grpcPort);
  try {
    const answer = await client.call<{ effect: string }>('Authorization', 'Check', checkRequest({ principal: { id: 'dana', roles: ['ml-engineer'] }, action: 'read', resource: { type: 'model', id: 'fraud-v3' } }));
    return answer.effect;
  } finally {
    client.close();
  }
}

describe('one server per decision log', () => {
  it('refuses a second verdict serve on the same --db, naming the db and the pid holding it', async () => {
    ensureBuilt();
    const db = join(makeTempDir(), 'd.db');
    const first = await startVerdict({ policies: POLICIES, db });
    running.push(first);
    const second = serveOnce(db);
    expect(second.status).toBe(5);
    expect(second.stderr).toContain(`the decision log ${db} is in use by verdict server pid ${first.child.pid}`);
    expect(second.stderr).toContain(`${db}.lock`);
    expect(second.stderr).toContain('--db');
    expect(second.stderr).not.toMatch(/\n\s+at /);
    // The first one is untouched and still records decisions.
    expect(await decide(first)).toMatch(/ALLOW|DENY/);
    expect(statSync(`${db}.lock`).mode & 0o777).toBe(0o600);
  }, 60_000);

  it('a holder killed with -9 leaves no stale lock: the next server starts and the log verifies', async () => {
    ensureBuilt();
    const db = join(makeTempDir(), 'd.db');
    const first = await startVerdict({ policies: POLICIES, db });
    await decide(first);
    first.child.kill('SIGKILL');
    await first.exited;
    const next = await startVerdict({ policies: POLICIES, db });
    running.push(next);
    await decide(next);
    expect(serveOnce(db).stderr).toContain(`pid ${next.child.pid}`);
    expect(await next.stop()).toBe(0);
    const verify = spawnSync(process.execPath, [BIN, 'audit', 'verify', '--db', db], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
  }, 60_000);

  it('a cluster primary (--workers 2) holds the lock for its workers', async () => {
    ensureBuilt();
    const db = join(makeTempDir(), 'd.db');
    const cluster = await startVerdict({ policies: POLICIES, db, args: ['--workers', '2'] });
    running.push(cluster);
    const second = serveOnce(db);
    expect(second.status).toBe(5);
    expect(second.stderr).toContain(`pid ${cluster.child.pid}`);
    expect(await decide(cluster)).toMatch(/ALLOW|DENY/);
    // A stopped server lets the next one have the log.
    expect(await cluster.stop()).toBe(0);
    running.pop();
    const after = await startVerdict({ policies: POLICIES, db });
    running.push(after);
    expect(await decide(after)).toMatch(/ALLOW|DENY/);
  }, 120_000);

  it('two starting at once: exactly one serves', async () => {
    ensureBuilt();
    const db = join(makeTempDir(), 'd.db');
    const starts = [0, 1].map(
      () =>
        new Promise<{ code: number | null; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, [BIN, 'serve', '--policies', POLICIES, '--db', db, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
          let stderr = '';
          let stdout = '';
          let stopped = false;
          child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
          child.stdout.on('data', (chunk: Buffer) => {
            stdout += chunk.toString();
            // Once: a second SIGTERM would end it before it has stopped cleanly.
            if (!stopped && stdout.includes('"verdict serving"')) {
              stopped = true;
              child.kill('SIGTERM');
            }
          });
          child.once('exit', (code) => resolve({ code, stderr }));
        }),
    );
    const outcomes = await Promise.all(starts);
    const codes = outcomes.map((o) => o.code).sort((a, b) => Number(a) - Number(b));
    expect(codes, JSON.stringify(outcomes)).not.toContain(null);
    // One served (and stopped cleanly on SIGTERM); the other was refused, or started after the first had stopped.
    expect(codes[0]).toBe(0);
    if (codes[1] !== 0) {
      expect(codes[1]).toBe(5);
      expect(outcomes.find((o) => o.code === 5)!.stderr).toContain('is in use by');
    }
  }, 60_000);
});

describe('lockDecisionLog', () => {
  it('is exclusive within one process too, and free again once released', () => {
    const db = join(makeTempDir(), 'sub', 'd.db');
    const lock = lockDecisionLog(db);
    let refused: unknown;
    try {
      lockDecisionLog(db);
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(VerdictError);
    expect((refused as VerdictError).code).toBe('DECISION_LOG_UNAVAILABLE');
    expect((refused as VerdictError).message).toContain(`the decision log ${db} is in use by another verdict server`);
    lock.release();
    lock.release();
    lockDecisionLog(db).release();
  });
});
