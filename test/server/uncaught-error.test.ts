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
    else if (process.env.FAULT === 'bare') void Promise.reject(Object.assign(Object.create(null), { injected: 'bare' }));
    else void Promise.reject(new Error('injected fault: rejected'));
  });
}
`;

const FAULTS = {
  reject: { name: 'an unhandled rejection', kind: 'unhandledRejection', error: 'injected fault: rejected' },
  throw: { name: 'an uncaught exception', kind: 'uncaughtException', error: 'injected fault: thrown' },
  // Not an Error and without a prototype: String() of it throws, and the line must still say what it was.
  bare: { name: 'a rejection with an object that has no prototype', kind: 'unhandledRejection', error: "[Object: null prototype] { injected: 'bare' }" },
} as const;

describe('an error nothing caught', () => {
  for (const [fault, expected] of Object.entries(FAULTS)) {
    it(`(${expected.name}) is logged at level fatal, and the server stops as on SIGTERM: every check answered is recorded, exit code 5`, async () => {
      ensureBuilt();
      const dir = mkdtempSync(join(tmpdir(), 'verdict-fault-'));
      dirs.push(dir);
      const preload = join(dir, 'fault.mjs');
      writeFileSync(preload, FAULT_MODULE);
      const db = join(dir, 'decisions.db');
      // Async mode: answered rows wait in memory for the writer, so an abrupt end would lose them.
      const server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--no-watch', '--decision-log', 'async'], env: { NODE_OPTIONS: `--import=${preload}`, FAULT: fault } });
      const client = verdictClient(server.grpcPort);
      const answered: string[] = [];
      try {
        // The fault comes while checks are in flight: each one answered must be in the log afterwards.
        const calls = Array.from({ length: 200 }, () =>
          client.call<{ decisionId: string }>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel })).then(
            (answer) => void answered.push(answer.decisionId),
            () => undefined,
          ),
        );
        for (let waited = 0; answered.length < 20 && waited < 10_000; waited += 5) await new Promise((r) => setTimeout(r, 5));
        server.child.kill('SIGUSR2');
        await Promise.all(calls);
      } finally {
        client.close();
      }
      const code = await server.exited;
      expect(code).toBe(5);
      const fatal = server.logs.find((l) => l.level === 60);
      expect(fatal?.msg.startsWith(`${expected.kind}: verdict is stopping`)).toBe(true);
      expect(fatal?.error).toBe(expected.error);
      expect(server.logs.some((l) => l.msg === 'stopped')).toBe(true);
      // No stack trace on stderr: it is in the fatal line, for whoever reads the log.
      expect(server.stderr.join('\n')).not.toMatch(/injected/);
      expect(answered.length).toBeGreaterThanOrEqual(20);
      const recorded = new Set(queryDecisions(db, { principalId: 'dana', limit: 1000 }).map((r) => r.decisionId));
      expect(answered.filter((id) => !recorded.has(id))).toEqual([]);
    }, 60_000);
  }
});
