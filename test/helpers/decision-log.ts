import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { DecisionLogClient } from '../../src/decisions/log-client.js';
import { startWriterThread } from '../../src/decisions/writer-thread.js';

/**
 * A real decision log in a temporary directory for the tests of one file: opened
 * before them, closed and removed after. Returns how to reach it once open.
 */
export function useDecisionLog(): () => DecisionLogClient {
  let dir: string | null = null;
  let log: DecisionLogClient | null = null;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-log-'));
    log = await startWriterThread({ path: join(dir, 'decisions.db'), mode: 'durable', checkpoints: null }, null);
  });
  afterAll(async () => {
    await log?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (!log) throw new Error('the decision log is open only while the tests run');
    return log;
  };
}
