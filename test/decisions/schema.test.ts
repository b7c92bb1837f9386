import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SCHEMA_VERSION, migrate, readSchemaVersion } from '../../src/decisions/schema.js';
import { VerdictError } from '../../src/errors.js';
import { connect, count, openLog, record, tempDb, tempDir } from './helpers.js';

describe('migrations', () => {
  it('creates the decisions table, its indexes and the schema version on first open', async () => {
    const file = tempDb();
    await (await openLog(file)).close();
    const db = connect(file);
    expect(readSchemaVersion(db)).toBe(SCHEMA_VERSION);
    const columns = db.prepare("SELECT name FROM pragma_table_info('decisions')").pluck().all();
    expect(columns).toEqual([
      'seq', 'decision_id', 'time_ms', 'caller', 'request_id', 'principal_id', 'action', 'resource_type', 'resource_id',
      'effect', 'reason', 'rule_ids', 'errors', 'policy_version', 'request', 'latency_us', 'prev_hash', 'hash', 'details', 'format',
    ]);
    const indexes = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'decisions' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all();
    expect(indexes).toEqual(['decisions_action', 'decisions_effect', 'decisions_principal', 'decisions_resource', 'decisions_time']);
    const plan = db.prepare("EXPLAIN QUERY PLAN SELECT * FROM decisions WHERE principal_id = 'x' ORDER BY time_ms DESC, seq DESC LIMIT 10").all() as Array<{ detail: string }>;
    expect(plan.map((p) => p.detail).join(' ')).toContain('decisions_principal');
    db.close();
  });

  it('is idempotent on reopen and keeps the rows', async () => {
    const file = tempDb();
    let log = await openLog(file);
    await log.append(record());
    await log.close();
    log = await openLog(file);
    await log.close();
    const db = new Database(file);
    migrate(db, file);
    migrate(db, file);
    expect(readSchemaVersion(db)).toBe(SCHEMA_VERSION);
    db.close();
    expect(count(file)).toBe(1);
  });

  it('makes the suspensions table in migration 5, also on a v4 log that has it already (kept, rows and all) or lacks it', async () => {
    const file = tempDb();
    await (await openLog(file)).close();
    let db = connect(file, false);
    expect(db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'suspensions'").pluck().get()).toMatch(/principal_id TEXT\s+PRIMARY KEY/);
    // A v4 log on which a server had made the table itself, with a suspension in it.
    db.prepare("INSERT INTO suspensions (principal_id, since_ms, until_ms, alert_id, alert_type, note) VALUES ('mallory', 1, 9e15, 'al_1', 'volume', 'n')").run();
    db.pragma('user_version = 4');
    db.close();
    await (await openLog(file)).close();
    db = connect(file, false);
    expect(readSchemaVersion(db)).toBe(SCHEMA_VERSION);
    expect(db.prepare('SELECT principal_id FROM suspensions').pluck().all()).toEqual(['mallory']);
    // A v4 log without it.
    db.exec('DROP TABLE suspensions');
    db.pragma('user_version = 4');
    db.close();
    await (await openLog(file)).close();
    db = connect(file);
    expect(db.prepare('SELECT count(*) FROM suspensions').pluck().get()).toBe(0);
    db.close();
  });

  it('refuses to write a log from a newer verdict', async () => {
    const file = tempDb();
    await (await openLog(file)).close();
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    await expect(openLog(file)).rejects.toThrow(/newer than this build/);
  });

  it('refuses a SQLite file that is not a decision log, and a file that is not SQLite', async () => {
    const dir = tempDir();
    const foreign = path.join(dir, 'other.db');
    const db = new Database(foreign);
    db.exec('CREATE TABLE users (id TEXT)');
    db.close();
    await expect(openLog(foreign)).rejects.toThrow(expect.objectContaining({ code: 'DECISION_LOG_CORRUPT' }) as VerdictError);

    const junk = path.join(dir, 'junk.db');
    fs.writeFileSync(junk, 'not a database at all, '.repeat(200));
    await expect(openLog(junk)).rejects.toThrow(expect.objectContaining({ code: 'DECISION_LOG_CORRUPT' }) as VerdictError);
  });
});
