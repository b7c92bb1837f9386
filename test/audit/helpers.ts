import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll } from 'vitest';
import { runAudit } from '../../src/cli/audit.js';
import { loadAudit } from '../../src/decisions/audit-setup.js';
import { chainHash } from '../../src/decisions/chain.js';
import { COLUMNS, type RowValue } from '../../src/decisions/columns.js';
import type { DecisionLogClient } from '../../src/decisions/log-client.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { startWriterThread } from '../../src/decisions/writer-thread.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-audit-'));
  dirs.push(dir);
  return dir;
}

export const BASE_TIME = Date.UTC(2025, 5, 1, 12, 0, 0);

export function record(i: number, overrides: Partial<DecisionRecord> = {}): DecisionRecord {
  return {
    decisionId: randomUUID(),
    time: BASE_TIME + i * 60_000,
    caller: 'gateway-1',
    requestId: `req-${i}`,
    principalId: `user-${i % 7}`,
    action: 'predict',
    resourceType: 'model',
    resourceId: 'fraud-v3',
    effect: i % 3 === 0 ? 'DENY' : 'ALLOW',
    reason: i % 3 === 0 ? 'DENIED_BY_DEFAULT' : 'ALLOWED_BY_RULE',
    ruleIds: i % 3 === 0 ? [] : ['ds-read-predict-own-org'],
    errors: [],
    policyVersion: 'sha256:abc',
    request: {
      principal: { roles: ['data_scientist'], attributes: { org: 'acme', email: `user${i}@example.com` } },
      resource: { attributes: { org: 'acme' } },
      context: { attributes: { ip: `10.0.0.${i % 250}` } },
    },
    latencyUs: 40 + i,
    ...overrides,
  };
}

export interface TestLog {
  readonly dir: string;
  readonly db: string;
  readonly pubkey: string;
  readonly signingKey: string;
}

/**
 * The server's writer, in its own thread, on `db` with keys next to it (created
 * on first use): checkpoints every `everyRows` rows and on close.
 */
export function writeLog(db: string, options: { everyRows?: number; sensitive?: string[] } = {}): Promise<DecisionLogClient> {
  const audit = loadAudit({
    db,
    checkpointEveryRows: options.everyRows ?? 10,
    checkpointEverySeconds: 3600,
    signingKey: null,
    publicKey: null,
    sensitiveAttributes: options.sensitive ?? [],
    hmacKey: null,
  });
  return startWriterThread({ path: db, mode: 'durable', checkpoints: audit.checkpoints }, audit.sensitive);
}

/**
 * A log of `rows` decisions, one minute apart from BASE_TIME, written through the
 * real writer thread with checkpoints every `everyRows` rows (one batch per append,
 * so checkpoints land where the test expects) and a final one on close.
 */
export async function makeLog(rows: number, options: { everyRows?: number; sensitive?: string[]; dir?: string } = {}): Promise<TestLog> {
  const dir = options.dir ?? tempDir();
  const db = path.join(dir, 'decisions.db');
  const log = await writeLog(db, options);
  await appendRows(log, 0, rows);
  await log.close();
  return { dir, db, pubkey: path.join(dir, 'audit-signing-key.pub.pem'), signingKey: path.join(dir, 'audit-signing-key.pem') };
}

/** Append rows [from, from + count) one batch at a time. */
export async function appendRows(log: DecisionLogClient, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) await log.append(record(i));
}

/** Reopen a test log for appending more rows with the same keys. */
export function reopen(t: TestLog, everyRows = 10): Promise<DecisionLogClient> {
  return writeLog(t.db, { everyRows });
}

/** Run SQL with the sqlite3 command-line shell, as an intruder with shell access would. */
export function sqlite3(db: string, sql: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('/usr/bin/sqlite3', [db, sql], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

export const DROP_TRIGGERS =
  'DROP TRIGGER IF EXISTS decisions_append_only_update; DROP TRIGGER IF EXISTS decisions_append_only_delete; ' +
  'DROP TRIGGER IF EXISTS checkpoints_append_only_update; DROP TRIGGER IF EXISTS checkpoints_append_only_delete;';

/** sqlite3 with the triggers dropped first; fails the test if the shell does. */
export function tamperSql(db: string, sql: string): void {
  const result = sqlite3(db, `${DROP_TRIGGERS} ${sql}`);
  if (result.status !== 0) throw new Error(`sqlite3 failed (${result.status}): ${result.stderr}`);
}

/** `verdict audit ...` in-process, output captured. */
export async function audit(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runAudit(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

/** The FAILED line of a verify report, e.g. "FAILED: deleted at seq 12: ...". */
export function failure(stdout: string): string {
  return stdout.split('\n').find((line) => line.startsWith('FAILED:')) ?? '(no FAILED line)';
}

/**
 * Rewrite the chain from `fromSeq` on with correct hashes, as an intruder who
 * knows the (public) canonical form would after editing rows.
 */
export function rechain(file: string, fromSeq: number): void {
  const db = new Database(file);
  try {
    db.exec(DROP_TRIGGERS);
    const rows = db.prepare('SELECT * FROM decisions WHERE seq >= ? ORDER BY seq').all(fromSeq) as Array<Record<string, RowValue>>;
    let prev = (db.prepare('SELECT hash FROM decisions WHERE seq < ? ORDER BY seq DESC LIMIT 1').pluck().get(fromSeq) as Buffer | undefined) ?? Buffer.alloc(32);
    const update = db.prepare('UPDATE decisions SET prev_hash = ?, hash = ? WHERE seq = ?');
    for (const r of rows) {
      const hash = chainHash(prev, r.format as number, r.seq as number, COLUMNS.map((c) => r[c.sql] as RowValue)) as Buffer;
      update.run(prev, hash, r.seq);
      prev = hash;
    }
  } finally {
    db.close();
  }
}

/** Copy a log (and its keys) so each tamper case starts from the same intact file. */
export function copyLog(t: TestLog): TestLog {
  const dir = tempDir();
  for (const name of fs.readdirSync(t.dir)) fs.copyFileSync(path.join(t.dir, name), path.join(dir, name));
  return { dir, db: path.join(dir, 'decisions.db'), pubkey: path.join(dir, 'audit-signing-key.pub.pem'), signingKey: path.join(dir, 'audit-signing-key.pem') };
}
