import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient } from '../helpers/verdict-process.js';

// An error nothing caught (a bug) in a serving verdict: it must not end the process on the
// spot with a stack trace and the decision log's unwritten rows. The fault is injected from
// outside the product: a module preloaded with NODE_OPTIONS rejects a promise that nobody
// handles when the process gets SIGUSR2 (or throws, for an uncaught exception).

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };

const FAULT_MODULE = `
import { isMainThread } from 'node:worker_threads';
if (isMainThread) {
  process.on('SIGUSR2', () => {
    if (process.env.FAULT === 'throw') setImmediate(() => { throw new Error('injected fault: thrown'); });
    else void Promise.reject(new Error('injected fault: rejected'));
  });
}
`;

describe('an error nothing caught', () => {
  for (const fault of ['reject', 'throw'] as const) {
    it(`(${fault === 'reject' ? 'an unhandled rejection' : 'an uncaught exception'}) is logged at level fatal, and the server stops as on SIGTERM: every decision made is recorded, exit code 5`, async () => {
      ensureBuilt();
      const dir = mkdtempSync(join(tmpdir(), 'verdict-fault-'));
      dirs.push(dir);
      const preload = join(dir, 'fault.mjs');
      writeFileSync(preload, FAULT_MODULE);
      const db = join(dir, 'decisions.db');
      // Async mode: rows wait in memory for the writer, so an abrupt end would lose them.
      const server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--no-watch', '--decision-log', 'async'], env: { NODE_OPTIONS: `--import=${preload}`, FAULT: fault } });
      const client = verdictClient(server.grpcPort);
      const ids: string[] = [];
      try {
        for (let i = 0; i < 20; i++) ids.push((await client.call<{ decisionId: string }>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }))).decisionId);
      } finally {
        client.close();
      }
      server.child.kill('SIGUSR2');
      const code = await server.exited;
      expect(code).toBe(5);
      const fatal = server.logs.find((l) => l.level === 60);
      expect(fatal?.msg).toMatch(fault === 'reject' ? /^unhandledRejection: verdict is stopping/ : /^uncaughtException: verdict is stopping/);
      expect(fatal?.error).toBe(fault === 'reject' ? 'injected fault: rejected' : 'injected fault: thrown');
      expect(server.logs.some((l) => l.msg === 'stopped')).toBe(true);
      // No stack trace on stderr: it is in the fatal line, for whoever reads the log.
      expect(server.stderr.join('\n')).not.toMatch(/injected fault/);
      const recorded = new Set(queryDecisions(db, { principalId: 'dana', limit: 100 }).map((r) => r.decisionId));
      expect(ids.every((id) => recorded.has(id))).toBe(true);
    }, 60_000);
  }
});
