import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
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

/**
 * Turns the closed log at `file` (made by this build) into one as a release of
 * schema v8 left it, suspensions included: no `folded_id` column, no index on it,
 * no fold recorded. Each id in `suspended` gets a row in force until `untilMs`,
 * written as a v8 server wrote it (its own change number, not lifted).
 */
export function asSchemaV8Log(file: string, suspended: readonly string[], untilMs: number): void {
  const db = new Database(file, { fileMustExist: true });
  try {
    db.exec(`
      DROP INDEX suspensions_folded;
      ALTER TABLE suspensions DROP COLUMN folded_id;
      DELETE FROM log_meta WHERE key = 'suspensions_fold';
      PRAGMA user_version = 8;
    `);
    const insert = db.prepare(
      "INSERT INTO suspensions (principal_id, since_ms, until_ms, alert_id, alert_type, note, change_seq, lifted) VALUES (?, ?, ?, '', 'manual', 'before the upgrade', (SELECT coalesce(max(change_seq), 0) + 1 FROM suspensions), 0)",
    );
    for (const id of suspended) insert.run(id, Date.now(), untilMs);
  } finally {
    db.close();
  }
}
