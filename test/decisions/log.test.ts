import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { verifyLog } from '../../src/audit/verify.js';
import type { RowValue } from '../../src/decisions/columns.js';
import { openConnection } from '../../src/decisions/connection.js';
import { ROW_WIDTH, encodeRecord } from '../../src/decisions/row.js';
import { LogWriter } from '../../src/decisions/writer.js';
import type { CommitStats, HealthState, WriteFailure } from '../../src/decisions/events.js';
import { VerdictError } from '../../src/errors.js';
import { connect, count, ids, next, openLog, record, settle, tempDb, tempDir } from './helpers.js';

// Every log here is served by a real writer thread, as the server opens it, except
// where the writer itself is driven batch by batch.

function expectUnavailable(error: unknown, fragment: string): void {
  expect(error).toBeInstanceOf(VerdictError);
  expect((error as VerdictError).code).toBe('DECISION_LOG_UNAVAILABLE');
  expect((error as VerdictError).message).toContain(fragment);
}

async function chainOk(file: string): Promise<void> {
  expect(await verifyLog(file, { publicKeys: [], workers: 1 })).toMatchObject({ ok: true, break: null });
}

/** The settings a writer connection reads back from SQLite. */
function pragmas(db: Database.Database): { journalMode: string; synchronous: number; busyTimeoutMs: number } {
  return {
    journalMode: String(db.pragma('journal_mode', { simple: true })),
    synchronous: Number(db.pragma('synchronous', { simple: true })),
    busyTimeoutMs: Number(db.pragma('busy_timeout', { simple: true })),
  };
}

describe('opening the log', () => {
  it('creates the parent directory; the writer connection is WAL with synchronous=FULL in durable mode', async () => {
    const file = tempDb();
    const log = await openLog(file);
    expect(fs.existsSync(file)).toBe(true);
    await log.close();
    const conn = openConnection(file, 'durable', 500);
    expect(pragmas(conn.db)).toEqual({ journalMode: 'wal', synchronous: 2, busyTimeoutMs: 500 });
    conn.db.close();
  });

  it('sets synchronous=NORMAL in async mode, again on every open', () => {
    const file = tempDb();
    openConnection(file, 'durable', 500, true).db.close();
    const conn = openConnection(file, 'async', 50);
    expect(pragmas(conn.db)).toEqual({ journalMode: 'wal', synchronous: 1, busyTimeoutMs: 50 });
    conn.db.close();
    const again = openConnection(file, 'durable', 500);
    expect(pragmas(again.db).synchronous).toBe(2);
    again.db.close();
  });

  it('refuses a path that cannot be a WAL database', async () => {
    await expect(openLog(':memory:')).rejects.toThrow(/WAL/);
  });

  it('refuses an unknown mode', async () => {
    const failure = await openLog(tempDb(), { mode: 'fast' as 'async' }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(VerdictError);
    expect((failure as VerdictError).code).toBe('CONFIG_INVALID');
  });
});

describe('group commit', () => {
  it('writes 500 concurrent appends in far fewer transactions than rows', async () => {
    const file = tempDb();
    const log = await openLog(file);
    const commits: CommitStats[] = [];
    log.onCommit((stats) => commits.push(stats));
    await Promise.all(Array.from({ length: 500 }, () => log.append(record())));
    expect(commits.reduce((sum, c) => sum + c.rows, 0)).toBe(500);
    expect(commits.length).toBeLessThanOrEqual(5);
    expect(count(file)).toBe(500);
    await log.close();
    await chainOk(file);
  });

  it('starts a new batch for appends made while a batch is being committed', async () => {
    const log = await openLog(tempDb());
    const commits: number[] = [];
    log.onCommit(({ rows }) => commits.push(rows));
    const first = [log.append(record()), log.append(record())];
    // Appended from the first batch's resolution: must land in a second transaction.
    const second = first[0]!.then(() => Promise.all([log.append(record()), log.append(record()), log.append(record())]));
    await Promise.all([...first, second]);
    expect(commits).toEqual([2, 3]);
    await log.close();
  });

  it('keeps the seq monotonic and the chain intact across batches and reopens', async () => {
    const file = tempDb();
    let log = await openLog(file);
    await Promise.all([log.append(record()), log.append(record())]);
    await log.append(record());
    await log.close();
    log = await openLog(file);
    await log.append(record());
    await log.close();
    const db = connect(file);
    expect(db.prepare('SELECT seq FROM decisions ORDER BY seq').pluck().all()).toEqual([1, 2, 3, 4]);
    db.close();
    expect(await verifyLog(file, { publicKeys: [], workers: 1 })).toMatchObject({ ok: true, rows: 4 });
  });
});

describe('durability', () => {
  it('a resolved durable append is readable from a separate connection', async () => {
    const file = tempDb();
    const log = await openLog(file);
    const r = record({ principalId: 'erin' });
    await log.append(r);
    const other = connect(file);
    const row = other.prepare('SELECT principal_id, rule_ids, request FROM decisions WHERE decision_id = ?').get(r.decisionId) as
      | { principal_id: string; rule_ids: string; request: string }
      | undefined;
    other.close();
    expect(row?.principal_id).toBe('erin');
    expect(JSON.parse(row!.rule_ids)).toEqual(['allow-data-scientists']);
    expect(JSON.parse(row!.request)).toEqual(r.request);
    await log.close();
  });

  it('async mode resolves before writing; flush and close write the rows', async () => {
    const file = tempDb();
    const log = await openLog(file, { mode: 'async' });
    await log.append(record());
    expect(log.pendingRows).toBe(1);
    expect(count(file)).toBe(0);
    await log.flush();
    expect(count(file)).toBe(1);
    void log.append(record());
    await log.close();
    expect(count(file)).toBe(2);
  });

  it('rejects appends after close', async () => {
    const log = await openLog(tempDb());
    await log.close();
    await expect(log.append(record())).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
    await log.close(); // idempotent
  });
});

describe('records the database cannot take fail alone', () => {
  it('an unserialisable record rejects without failing its batch', async () => {
    const file = tempDb();
    const log = await openLog(file);
    const bad = record({ request: { principal: { roles: [], attributes: { n: 1n } }, resource: { attributes: {} }, context: { attributes: {} } } });
    const results = await settle([log.append(record()), log.append(bad), log.append(record())]);
    expect(results.ok).toBe(2);
    expect(results.errors[0]).toMatchObject({ code: 'INTERNAL' });
    expect(log.healthy).toBe(true);
    expect(count(file)).toBe(2);
    await log.close();
  });

  it('a duplicate decision id is refused alone, leaving no gap in the chain', async () => {
    const file = tempDb();
    const log = await openLog(file);
    const failures: WriteFailure[] = [];
    log.onWriteError((f) => failures.push(f));
    const r = record();
    const results = await settle([log.append(record()), log.append(r), log.append(r), log.append(record())]);
    expect(results.ok).toBe(3);
    expect(results.errors[0]).toMatchObject({ code: 'INTERNAL' });
    expect(failures).toHaveLength(1);
    expect(log.healthy).toBe(true);
    await log.close();
    await chainOk(file);
    expect(count(file)).toBe(3);
  });
});

describe('fail closed', () => {
  it('rejects every append while another connection holds the write lock, then recovers without losing a row', async () => {
    const file = tempDb();
    const log = await openLog(file, { busyTimeoutMs: 30 });
    const health: HealthState[] = [];
    log.onHealthChange((state) => health.push(state));
    const before = record();
    await log.append(before);

    const locker = new Database(file);
    locker.pragma('busy_timeout = 30');
    locker.exec('BEGIN EXCLUSIVE');
    const refused = [record(), record(), record()];
    const during = await settle(refused.map((r) => log.append(r)));
    expect(during.ok).toBe(0);
    expect(during.errors).toHaveLength(3);
    for (const error of during.errors) expectUnavailable(error, 'SQLITE_BUSY');
    expect(log.healthy).toBe(false);
    expect(log.lastError).toMatch(/write lock.*denied/s);
    expect(health).toEqual([{ healthy: false, lastError: log.lastError }]);
    expect(await log.probe()).toBe(false);

    locker.exec('ROLLBACK');
    locker.close();
    const after = record();
    await log.append(after);
    expect(log.healthy).toBe(true);
    expect(log.lastError).toBeNull();
    expect(health.at(-1)).toEqual({ healthy: true, lastError: null });
    await log.close();

    expect(ids(file)).toEqual([before.decisionId, after.decisionId]);
    await chainOk(file);
  });

  it('probe() notices failure and recovery without any traffic', async () => {
    const file = tempDb();
    const log = await openLog(file, { busyTimeoutMs: 20 });
    expect(await log.probe()).toBe(true);
    const locker = new Database(file);
    locker.exec('BEGIN EXCLUSIVE');
    expect(await log.probe()).toBe(false);
    expect(log.healthy).toBe(false);
    locker.exec('ROLLBACK');
    locker.close();
    expect(await log.probe()).toBe(true);
    expect(log.healthy).toBe(true);
    await log.close();
  });

  it('notices the file being removed and replaced by a directory, and reopens once the path is free', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'decisions.db');
    const log = await openLog(file, { busyTimeoutMs: 20 });
    await log.append(record());

    fs.rmSync(file);
    fs.mkdirSync(file);
    const lost = record();
    await expect(log.append(lost)).rejects.toSatisfy((e) => {
      expectUnavailable(e, 'removed or replaced');
      return true;
    });
    expect(log.healthy).toBe(false);
    // Reopening now fails too: the path is a directory.
    await expect(log.append(record())).rejects.toSatisfy((e) => {
      expectUnavailable(e, 'cannot open');
      return true;
    });
    expect(await log.probe()).toBe(false);

    fs.rmdirSync(file);
    const after = record();
    await log.append(after);
    expect(log.healthy).toBe(true);
    await log.close();

    // A new log; the old one's write-ahead log was kept aside, not replayed into it.
    expect(ids(file)).toEqual([after.decisionId]);
    expect(fs.readdirSync(dir).some((name) => name.startsWith('decisions.db-wal.orphaned-'))).toBe(true);
    await chainOk(file);
  });

  /** The rows a crash right now would leave: the main file alone, as if its -wal had never been. */
  const mainFileOnly = (file: string): string[] => {
    const copy = path.join(tempDir(), 'main-only.db');
    fs.copyFileSync(file, copy);
    const db = new Database(copy, { readonly: true });
    try {
      const created = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'decisions'").get() !== undefined;
      return created ? (db.prepare('SELECT decision_id FROM decisions ORDER BY seq').pluck().all() as string[]) : [];
    } finally {
      db.close();
    }
  };

  it('notices its write-ahead log being removed: refuses the next batch, saves what the removed one held, and reopens', async () => {
    const file = path.join(tempDir(), 'decisions.db');
    const log = await openLog(file, { busyTimeoutMs: 20 });
    const first = record();
    const second = record();
    await log.append(first);
    await log.append(second);
    // Committed, and so far only in the write-ahead log.
    expect(mainFileOnly(file)).not.toContain(second.decisionId);

    fs.rmSync(`${file}-wal`);
    await expect(log.append(record())).rejects.toSatisfy((e) => {
      expectUnavailable(e, 'write-ahead log');
      return true;
    });
    expect(log.healthy).toBe(false);
    expect(log.lastError).toContain(`${file}-wal was removed or replaced`);
    // What the removed write-ahead log held is in the main file now: a crash cannot lose it.
    expect(mainFileOnly(file)).toEqual([first.decisionId, second.decisionId]);

    const after = record();
    await log.append(after);
    expect(log.healthy).toBe(true);
    expect(fs.existsSync(`${file}-wal`)).toBe(true);
    await log.close();
    expect(ids(file)).toEqual([first.decisionId, second.decisionId, after.decisionId]);
    await chainOk(file);
  });

  it('notices its write-ahead log being replaced by another file, and keeps that file aside instead of replaying it', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'decisions.db');
    const log = await openLog(file, { busyTimeoutMs: 20 });
    const first = record();
    await log.append(first);
    fs.writeFileSync(path.join(dir, 'foreign'), Buffer.alloc(4096, 7));
    fs.renameSync(path.join(dir, 'foreign'), `${file}-wal`);
    await expect(log.append(record())).rejects.toSatisfy((e) => {
      expectUnavailable(e, 'write-ahead log');
      return true;
    });
    const after = record();
    await log.append(after);
    await log.close();
    expect(ids(file)).toEqual([first.decisionId, after.decisionId]);
    expect(fs.readdirSync(dir).some((name) => name.startsWith('decisions.db-wal.replaced-'))).toBe(true);
    await chainOk(file);
  });

  it('notices a removed write-ahead log without any traffic, and saves what it held', async () => {
    const file = path.join(tempDir(), 'decisions.db');
    const log = await openLog(file, { busyTimeoutMs: 20 });
    const first = record();
    await log.append(first);
    fs.rmSync(`${file}-wal`);
    // The writer looks every second; no append is made meanwhile.
    const deadline = Date.now() + 20_000;
    while (log.healthy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(log.healthy).toBe(false);
    expect(mainFileOnly(file)).toEqual([first.decisionId]);
    expect(await log.probe()).toBe(true);
    await log.close();
    await chainOk(file);
  });

  it('in async mode keeps and retries acknowledged rows of a failed batch, and reports the failure', async () => {
    const file = tempDb();
    const log = await openLog(file, { mode: 'async', busyTimeoutMs: 20, retryDelayMs: 20 });
    const locker = new Database(file);
    locker.exec('BEGIN EXCLUSIVE');

    const acknowledged = record();
    const failure = next<WriteFailure>((cb) => log.onWriteError(cb));
    await log.append(acknowledged); // resolves at once: the log looked healthy
    const reported = await failure;
    expect(reported).toMatchObject({ rows: 1, acknowledgedRows: 1 });
    expectUnavailable(reported.error, 'SQLITE_BUSY');
    expect(log.healthy).toBe(false);
    expect(log.lastError).toContain('SQLITE_BUSY');
    expect(log.pendingRows).toBe(1);

    // Once unhealthy, async appends wait for their commit: nothing is allowed unrecorded.
    const refused = record();
    await expect(log.append(refused)).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
    await expect(log.flush()).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });

    locker.exec('ROLLBACK');
    locker.close();
    // The retry timer writes the kept row without any new traffic.
    await next<CommitStats>((cb) => log.onCommit(cb));
    expect(log.healthy).toBe(true);
    // Nothing is left to write: the flush only waits for the writer's answer to the kept row.
    await log.flush();
    expect(log.pendingRows).toBe(0);
    expect(ids(file)).toEqual([acknowledged.decisionId]);
    await log.close();
  });

  it('close() reports acknowledged async rows it could not write', async () => {
    const file = tempDb();
    const log = await openLog(file, { mode: 'async', busyTimeoutMs: 20 });
    const locker = new Database(file);
    locker.exec('BEGIN EXCLUSIVE');
    await log.append(record());
    await expect(log.close()).rejects.toThrow(/1 decision\(s\) acknowledged in async mode were never written/);
    locker.exec('ROLLBACK');
    locker.close();
  });

  it('keeps writing when an observer throws', async () => {
    const log = await openLog(tempDb());
    log.onCommit(() => {
      throw new Error('metrics broke');
    });
    await log.append(record());
    await log.append(record());
    expect(log.healthy).toBe(true);
    await log.close();
  });
});

describe('the writer, batch by batch', () => {
  type Outcome = Parameters<Parameters<LogWriter['write']>[3]>[0];
  const batch = (...records: ReturnType<typeof record>[]): RowValue[] => {
    const values: RowValue[] = [];
    for (const r of records) encodeRecord(values, r);
    return values;
  };

  it('commits the batches that arrive together in one transaction and answers each once, refusals by index', async () => {
    const file = tempDb();
    const writer = LogWriter.open(file);
    const commits: CommitStats[] = [];
    writer.onCommit((stats) => commits.push(stats));
    const taken = record();
    const answers: Array<{ batch: string; outcome: Outcome }> = [];
    const answered = new Promise<void>((resolve) => {
      const answer = (name: string) => (outcome: Outcome) => {
        answers.push({ batch: name, outcome });
        if (answers.length === 2) resolve();
      };
      writer.write(batch(record(), taken), 2, false, answer('first'));
      writer.write(batch(record(), { ...taken }, record()), 3, false, answer('second'));
    });
    await answered;
    expect(commits).toHaveLength(1);
    expect(commits[0]?.rows).toBe(4);
    expect(answers.map((a) => a.batch)).toEqual(['first', 'second']);
    expect(answers[0]?.outcome).toEqual({ refused: [], failed: null });
    const refused = answers[1]?.outcome.refused ?? [];
    expect(refused.map(([index]) => index)).toEqual([1]);
    expect(refused[0]?.[1]).toBeInstanceOf(VerdictError);
    expect(refused[0]?.[1].message).toContain(taken.decisionId);
    await writer.close();
    expect(count(file)).toBe(4);
    await chainOk(file);
  });

  it('answers every batch of a failed transaction with the failure, once', async () => {
    const file = tempDb();
    const writer = LogWriter.open(file, { busyTimeoutMs: 20 });
    const locker = new Database(file);
    locker.exec('BEGIN EXCLUSIVE');
    const outcomes = await Promise.all(
      [batch(record()), batch(record(), record())].map((values) => new Promise<Outcome>((resolve) => writer.write(values, values.length / ROW_WIDTH, false, resolve))),
    );
    for (const outcome of outcomes) {
      expect(outcome.refused).toBeNull();
      expect(outcome.failed).toBeInstanceOf(VerdictError);
      expect(outcome.failed?.code).toBe('DECISION_LOG_UNAVAILABLE');
    }
    expect(writer.healthy).toBe(false);
    locker.exec('ROLLBACK');
    locker.close();
    expect(writer.probe()).toBe(true);
    await writer.close();
    expect(count(file)).toBe(0);
  });
});
