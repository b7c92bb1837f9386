import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { chainHash } from '../../src/decisions/chain.js';
import { checkpointMessage } from '../../src/decisions/checkpoint.js';
import { COLUMNS, LONGEST_STORED_VALUE, type RowValue } from '../../src/decisions/columns.js';
import { keyIdOf } from '../../src/decisions/keys.js';
import { queryDecisions } from '../../src/decisions/query.js';
import { audit, copyLog, failure, makeLog, rechain, record, sqlite3, tamperSql, tempDir, writeLog, type TestLog } from './helpers.js';

// Tampering as an intruder with a shell would do it: the sqlite3 CLI, triggers
// dropped first. Every case starts from a copy of one intact 40-row log with
// checkpoints at seq 10, 20, 30 and 40.
let intact: TestLog;

beforeAll(async () => {
  intact = await makeLog(40, { everyRows: 10 });
});

async function verify(t: TestLog, ...extra: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return audit('verify', '--db', t.db, '--pubkey', t.pubkey, ...extra);
}

describe('an intact log', () => {
  it('verifies: exit 0, every row and checkpoint counted', async () => {
    const { code, stdout, stderr } = await verify(intact);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/chain\s+40 rows, seq 1\.\.40 from the start \(genesis\): intact/);
    expect(stdout).toMatch(/checkpoints\s+4 of 4 verified; last at seq 40/);
    expect(stdout).toMatch(/rows\/s/);
    expect(stdout.trimEnd().split('\n').at(-1)).toBe('OK: the decision log is intact');
  });

  it('has checkpoints where the writer was told to put them', () => {
    const db = new Database(intact.db, { readonly: true });
    expect(db.prepare("SELECT seq FROM checkpoints WHERE kind = 'checkpoint' ORDER BY seq").pluck().all()).toEqual([10, 20, 30, 40]);
    db.close();
  });
});

describe('the append-only triggers', () => {
  it('refuse UPDATE and DELETE of decisions and checkpoints while they are in place', () => {
    const t = copyLog(intact);
    for (const sql of [
      "UPDATE decisions SET effect = 'ALLOW' WHERE seq = 3",
      'DELETE FROM decisions WHERE seq = 3',
      'UPDATE checkpoints SET seq = 1',
      'DELETE FROM checkpoints',
    ]) {
      const result = sqlite3(t.db, sql);
      expect(result.status, sql).not.toBe(0);
      expect(result.stderr, sql).toMatch(/append-only/);
    }
  });
});

/** verify exits 1 and its FAILED line matches `pattern`. */
async function expectBreak(t: Parameters<typeof verify>[0], pattern: RegExp): Promise<void> {
  const { code, stdout } = await verify(t);
  expect(code).toBe(1);
  expect(failure(stdout)).toMatch(pattern);
}

describe('verify names the kind and the first sequence number of every tampering', () => {
  it('changed: one field of one row', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, "UPDATE decisions SET effect = 'DENY', reason = 'DENIED_BY_RULE' WHERE seq = 18");
    await expectBreak(t, /^FAILED: changed at seq 18: row 18 was changed/);
  });

  it('changed: a row edited and the whole chain after it recomputed (caught by the signed checkpoints)', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, "UPDATE decisions SET principal_id = 'mallory' WHERE seq = 18");
    rechain(t.db, 18);
    await expectBreak(t, /^FAILED: changed at seq 11: the chain hash at seq 20 does not match the checkpoint at seq 20 .*rows in seq 11\.\.20 were rewritten/);
  });

  it('changed: a row replaced by one with a recomputed hash, the rest left alone', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, "UPDATE decisions SET resource_id = 'other-model' WHERE seq = 18");
    rechain(t.db, 18);
    // Put back the original hashes from 19 on: only row 18 now carries a recomputed hash.
    const original = new Database(intact.db, { readonly: true });
    const hashes = original.prepare('SELECT seq, prev_hash, hash FROM decisions WHERE seq > 18').all() as Array<{ seq: number; prev_hash: Buffer; hash: Buffer }>;
    original.close();
    const db = new Database(t.db);
    for (const h of hashes) db.prepare('UPDATE decisions SET prev_hash = ?, hash = ? WHERE seq = ?').run(h.prev_hash, h.hash, h.seq);
    db.close();
    await expectBreak(t, /^FAILED: changed at seq 18: row 19 does not continue from row 18: row 18 was replaced/);
  });

  it('deleted: one row, leaving a gap', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'DELETE FROM decisions WHERE seq = 18');
    await expectBreak(t, /^FAILED: deleted at seq 18: row 18 is missing/);
  });

  it('deleted: three rows, later rows renumbered to close the gap', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'DELETE FROM decisions WHERE seq BETWEEN 18 AND 20; UPDATE decisions SET seq = seq + 1000000 WHERE seq > 20; UPDATE decisions SET seq = seq - 1000003 WHERE seq > 1000000;');
    await expectBreak(t, /^FAILED: deleted at seq 18: rows 18\.\.20 are missing/);
  });

  it('inserted: a forged row with a made-up hash, later rows shifted', async () => {
    const t = copyLog(intact);
    tamperSql(
      t.db,
      `UPDATE decisions SET seq = seq + 1000000 WHERE seq >= 18; UPDATE decisions SET seq = seq - 999999 WHERE seq >= 1000000;
       INSERT INTO decisions (seq, decision_id, time_ms, caller, request_id, principal_id, action, resource_type, resource_id, effect, reason,
         rule_ids, errors, policy_version, request, latency_us, prev_hash, hash)
       SELECT 18, 'forged-1', time_ms + 1, caller, NULL, 'mallory', 'download', 'model', 'fraud-v3', 'ALLOW', 'ALLOWED_BY_RULE',
         '["admin-all"]', '[]', policy_version, request, 10, hash, randomblob(32) FROM decisions WHERE seq = 17;`,
    );
    await expectBreak(t, /^FAILED: inserted at seq 18: row 18 is not part of the chain/);
  });

  it('inserted: a forged row whose hash was computed correctly by someone who read the spec', async () => {
    const t = copyLog(intact);
    tamperSql(
      t.db,
      `UPDATE decisions SET seq = seq + 1000000 WHERE seq >= 18; UPDATE decisions SET seq = seq - 999999 WHERE seq >= 1000000;
       INSERT INTO decisions (seq, decision_id, time_ms, caller, request_id, principal_id, action, resource_type, resource_id, effect, reason,
         rule_ids, errors, policy_version, request, latency_us, prev_hash, hash)
       SELECT 18, 'forged-2', time_ms + 1, caller, NULL, 'mallory', 'download', 'model', 'fraud-v3', 'ALLOW', 'ALLOWED_BY_RULE',
         '["admin-all"]', '[]', policy_version, request, 10, hash, zeroblob(32) FROM decisions WHERE seq = 17;`,
    );
    const db = new Database(t.db);
    const r = db.prepare('SELECT * FROM decisions WHERE seq = 18').get() as Record<string, RowValue | Buffer>;
    const hash = chainHash(r.prev_hash as Buffer, r.format as number, 18, COLUMNS.map((c) => r[c.sql] as RowValue));
    db.prepare('UPDATE decisions SET hash = ? WHERE seq = 18').run(hash);
    db.close();
    await expectBreak(t, /^FAILED: inserted at seq 18: row 18 is not part of the chain: the original row 18 now sits at seq 19/);
  });

  it('reordered: two adjacent rows swapped', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'UPDATE decisions SET seq = -1 WHERE seq = 18; UPDATE decisions SET seq = 18 WHERE seq = 19; UPDATE decisions SET seq = 19 WHERE seq = -1;');
    await expectBreak(t, /^FAILED: reordered at seq 18: rows are out of order: seq 18 holds the row written as seq 19, and the row written as seq 18 is at seq 19/);
  });

  it('reordered: two rows far apart swapped', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'UPDATE decisions SET seq = -1 WHERE seq = 12; UPDATE decisions SET seq = 12 WHERE seq = 27; UPDATE decisions SET seq = 27 WHERE seq = -1;');
    await expectBreak(t, /^FAILED: reordered at seq 12: .*written as seq 27.*is at seq 27/);
  });

  it('truncated: the tail cut off together with its checkpoints, caught by a checkpoint exported earlier', async () => {
    const t = copyLog(intact);
    const exported = path.join(t.dir, '..', `${path.basename(t.dir)}-checkpoint.json`);
    const exportRun = await audit('checkpoint', '--db', t.db, '--export', exported);
    expect(exportRun.code).toBe(0);
    expect(exportRun.stdout).toMatch(/exported the checkpoint at seq 40/);
    tamperSql(t.db, 'DELETE FROM decisions WHERE seq > 33; DELETE FROM checkpoints WHERE seq > 33;');
    const { code, stdout } = await verify(t, '--from-checkpoint', exported);
    expect(code).toBe(1);
    expect(failure(stdout)).toMatch(/^FAILED: truncated at seq 34: the log ends at seq 33, but the exported checkpoint \(seq 40, .*rows 34\.\.40 were removed/);
    fs.rmSync(exported);
  });

  it('a log started anew in place of the one an exported checkpoint covers: verify says it starts from genesis', async () => {
    for (const rows of [5, 50]) {
      const t = copyLog(intact);
      const exported = path.join(t.dir, '..', `${path.basename(t.dir)}-checkpoint.json`);
      expect((await audit('checkpoint', '--db', t.db, '--export', exported)).code).toBe(0);
      // The file removed, and a new log (same keys) written where it was.
      for (const suffix of ['', '-wal', '-shm']) fs.rmSync(`${t.db}${suffix}`, { force: true });
      await makeLog(rows, { everyRows: 10, dir: t.dir });
      expect((await verify(t)).code).toBe(0);
      const { code, stdout } = await verify(t, '--from-checkpoint', exported);
      expect(code).toBe(1);
      expect(failure(stdout)).toMatch(rows < 40 ? /^FAILED: truncated at seq 6: the log ends at seq 5, but the exported checkpoint \(seq 40/ : /^FAILED: changed at seq \d+: the chain hash at seq 40 does not match the exported checkpoint/);
      expect(failure(stdout)).toMatch(/This log starts from genesis \(seq 1\): .* a new log that replaced the one the checkpoint was signed for/);
      fs.rmSync(exported);
    }
  });

  it('truncated: the tail cut off, its checkpoints left behind', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'DELETE FROM decisions WHERE seq > 33;');
    await expectBreak(t, /^FAILED: truncated at seq 34: the log ends at seq 33, but the checkpoint at seq 40/);
  });

  it('bad-signature: a checkpoint altered in place', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'UPDATE checkpoints SET time_ms = time_ms + 1 WHERE seq = 20;');
    await expectBreak(t, /^FAILED: bad-signature at seq 20: the checkpoint at seq 20 .*has an invalid signature/);
  });

  it('bad-signature: a rewritten log re-signed with the intruder\'s own key', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, "UPDATE decisions SET effect = 'ALLOW' WHERE seq = 3;");
    rechain(t.db, 3);
    const mine = generateKeyPairSync('ed25519');
    const db = new Database(t.db);
    db.exec('DELETE FROM checkpoints');
    const tip = db.prepare('SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: Buffer };
    const body = { kind: 'checkpoint' as const, seq: tip.seq, hash: tip.hash, timeMs: Date.now(), previousSeq: null, replicaId: null };
    const { sign } = await import('node:crypto');
    db.prepare("INSERT INTO checkpoints (kind, seq, hash, time_ms, key_id, signature) VALUES ('checkpoint', ?, ?, ?, ?, ?)").run(
      tip.seq, tip.hash, body.timeMs, keyIdOf(mine.publicKey), sign(null, checkpointMessage(body), mine.privateKey),
    );
    db.close();
    await expectBreak(t, /^FAILED: bad-signature at seq 40: .* is signed by key ed25519:[0-9a-f]{16}, not by the trusted key/);
  });

  it('bad-signature: verifying with a key that is not the log\'s', async () => {
    const other = path.join(copyLog(intact).dir, 'other.pub.pem');
    fs.writeFileSync(other, generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }));
    const { code, stdout } = await audit('verify', '--db', intact.db, '--pubkey', other);
    expect(code).toBe(1);
    expect(failure(stdout)).toMatch(/^FAILED: bad-signature at seq 10: /);
  });

  it('finds the first break when a log is split into ranges, in whichever range it falls', async () => {
    for (const seq of [3, 21, 38]) {
      const t = copyLog(intact);
      tamperSql(t.db, `DELETE FROM decisions WHERE seq = ${seq}`);
      const { code, stdout } = await verify(t, '--workers', '3');
      expect(code).toBe(1);
      expect(failure(stdout)).toMatch(new RegExp(`^FAILED: deleted at seq ${seq}: `));
    }
    expect((await verify(intact, '--workers', '3')).code).toBe(0);
  });
});

// Rows the chain never reaches: a decisions table rebuilt so that seq is no longer
// the rowid (or replaced by a view) can hold a forged row with no seq, a fractional
// seq or a repeated one, which every query shows; an index left stale shows other
// rows to a query than the table holds. Both used to verify OK.
describe('verify checks the log is shaped as verdict makes it, and its storage', () => {
  const COPY_AS_PLAIN_TABLE = 'CREATE TABLE plain AS SELECT * FROM decisions; DROP TABLE decisions; ALTER TABLE plain RENAME TO decisions;';
  const FORGE = (seq: string): string =>
    `INSERT INTO decisions SELECT * FROM decisions WHERE seq = 5; UPDATE decisions SET seq = ${seq}, decision_id = 'forged', principal_id = 'mallory', effect = 'ALLOW' WHERE rowid = (SELECT max(rowid) FROM decisions);`;

  for (const [name, sql, problem] of [
    ['a plain table holding a row with no seq', COPY_AS_PLAIN_TABLE + FORGE('NULL'), /decisions\.seq is not the table's INTEGER PRIMARY KEY/],
    ['a plain table holding a row at seq 5.5', COPY_AS_PLAIN_TABLE + FORGE('5.5'), /decisions\.seq is not the table's INTEGER PRIMARY KEY/],
    [
      'a view over the real rows and a forged one',
      "ALTER TABLE decisions RENAME TO chained; CREATE VIEW decisions AS SELECT * FROM chained UNION ALL SELECT NULL, 'forged', time_ms, caller, request_id, 'mallory', action, resource_type, resource_id, 'ALLOW', reason, rule_ids, errors, policy_version, request, latency_us, prev_hash, hash, details, format FROM chained WHERE seq = 5;",
      /decisions is a view, not the table verdict creates/,
    ],
    [
      'a WITHOUT ROWID table, where seq may be fractional',
      "CREATE TABLE plain (seq INTEGER PRIMARY KEY, decision_id TEXT NOT NULL UNIQUE, time_ms, caller, request_id, principal_id, action, resource_type, resource_id, effect, reason, rule_ids, errors, policy_version, request, latency_us, prev_hash, hash, details, format) WITHOUT ROWID; INSERT INTO plain SELECT * FROM decisions; DROP TABLE decisions; ALTER TABLE plain RENAME TO decisions;",
      /decisions\.seq is not the table's rowid/,
    ],
    [
      // An FTS5 table takes the name of SQLite's pragma_table_info function and answers for it: seq looks like the key.
      'a plain table holding a row with no seq, and an FTS5 table standing in for pragma_table_info',
      COPY_AS_PLAIN_TABLE +
        FORGE('NULL') +
        'CREATE UNIQUE INDEX decisions_id ON decisions (decision_id); ' +
        "CREATE TABLE staged AS SELECT name, CASE name WHEN 'seq' THEN 'INTEGER' ELSE type END AS type FROM pragma_table_info('decisions'); " +
        "CREATE VIRTUAL TABLE pragma_table_info USING fts5(name, type, pk UNINDEXED, tbl); INSERT INTO pragma_table_info SELECT name, type, CASE name WHEN 'seq' THEN 1 ELSE 0 END, 'decisions' FROM staged; DROP TABLE staged;",
      /the log holds a table named "pragma_table_info/,
    ],
    [
      'principal_id declared COLLATE NOCASE, so a query for alice finds Alice',
      "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = replace(sql, 'principal_id   TEXT    NOT NULL', 'principal_id TEXT NOT NULL COLLATE NOCASE') WHERE name = 'decisions';",
      /table "decisions" declares a collation, which verdict never does/,
    ],
    [
      'a table whose decision_id is not unique',
      'CREATE TABLE plain (seq INTEGER PRIMARY KEY, decision_id TEXT NOT NULL, time_ms, caller, request_id, principal_id, action, resource_type, resource_id, effect, reason, rule_ids, errors, policy_version, request, latency_us, prev_hash, hash, details, format); INSERT INTO plain SELECT * FROM decisions; DROP TABLE decisions; ALTER TABLE plain RENAME TO decisions;',
      /decisions\.decision_id is not UNIQUE/,
    ],
  ] as const) {
    it(`structure: ${name}; queries refuse the log too`, async () => {
      const t = copyLog(intact);
      tamperSql(t.db, sql);
      const { code, stdout } = await verify(t);
      expect(code).toBe(1);
      expect(failure(stdout)).toMatch(/^FAILED: structure: /);
      expect(failure(stdout)).toMatch(problem);
      expect(() => queryDecisions(t.db, { principalId: 'mallory' })).toThrow(problem);
    });
  }

  it('structure: the schema version lowered so that verify would look away from the checkpoints', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, "PRAGMA user_version = 1; UPDATE decisions SET effect = 'ALLOW' WHERE seq = 12;");
    rechain(t.db, 12);
    await expectBreak(t, /^FAILED: structure: the log says schema v1 but has the columns schema v3 added/);
  });

  it('structure: an index left stale by editing sqlite_schema (a query by principal shows a row the table does not hold); --chain-only skips the check', async () => {
    const t = copyLog(intact);
    const db = new Database(t.db, { readonly: true });
    const original = db.prepare('SELECT principal_id FROM decisions WHERE seq = 7').pluck().get() as string;
    const indexSql = db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'decisions_principal'").pluck().get() as string;
    db.close();
    const quoted = (text: string): string => `'${text.replace(/'/g, "''")}'`;
    // The index entry moves to 'mallory'; then, with the index declared partial, the row is put back without it.
    tamperSql(t.db, `UPDATE decisions SET principal_id = 'mallory' WHERE seq = 7; PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = ${quoted(`${indexSql} WHERE seq <> 7`)} WHERE name = 'decisions_principal';`);
    tamperSql(t.db, `UPDATE decisions SET principal_id = ${quoted(original)} WHERE seq = 7; PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = ${quoted(indexSql)} WHERE name = 'decisions_principal';`);
    expect(queryDecisions(t.db, { principalId: 'mallory' }).map((row) => row.seq)).toEqual([7]);

    await expectBreak(t, /^FAILED: structure: SQLite's integrity check fails \(.*decisions_principal.*\): queries that read through an index/);
    // With the chain split over threads (a large log, or --workers), the check runs in a thread of its own: the same finding.
    const threaded = await verify(t, '--workers', '2');
    expect(threaded.code).toBe(1);
    expect(failure(threaded.stdout)).toMatch(/^FAILED: structure: SQLite's integrity check fails \(.*decisions_principal.*\)/);
    const chainOnly = await verify(t, '--chain-only');
    expect(chainOnly.code).toBe(0);
    expect(chainOnly.stdout).toMatch(/storage\s+not checked \(--chain-only\)/);
    for (const threads of ['1', '3']) {
      const whole = await verify(intact, '--workers', threads);
      expect(whole.code).toBe(0);
      expect(whole.stdout).toMatch(/storage\s+SQLite's integrity check: ok/);
    }
  });
});

describe('naming a break is bounded work', () => {
  // Hundreds of forged rows all claiming to follow the last good row each cost a
  // window search of thousands of hashes: 6,000 of them held verify for a minute.
  it('names the first break of a log stuffed with rows that claim to follow it, saying the kind is a best guess', async () => {
    const t = copyLog(intact);
    tamperSql(
      t.db,
      'DELETE FROM decisions WHERE seq = 25; UPDATE decisions SET seq = -seq WHERE seq > 25; UPDATE decisions SET seq = -seq - 1 WHERE seq < 0; ' +
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO decisions (seq, decision_id, time_ms, caller, request_id, principal_id, action, resource_type, resource_id, effect, reason, rule_ids, errors, policy_version, request, latency_us, details, format, prev_hash, hash) SELECT 1000 + i, 'junk-' || i, time_ms, caller, request_id, principal_id, action, resource_type, resource_id, effect, reason, rule_ids, errors, policy_version, request, latency_us, details, format, (SELECT hash FROM decisions WHERE seq = 24), randomblob(32) FROM n, decisions WHERE seq = 10;",
    );
    await expectBreak(t, /^FAILED: deleted at seq 25: row 25 is missing: seq 25 holds the row written as seq 26 \(later rows were renumbered to close the gap\); the kind is a best guess: 200 rows claim to follow seq 24/);
  });
});

describe('checkpoints removed from the middle', () => {
  // Each checkpoint names the one signed before it (format v2), so without the signing key an
  // intruder can remove checkpoints only from the end; removing earlier ones, to make the rows
  // after the one kept look unsigned and rewrite them, names the gap.
  it('keeping only one checkpoint and rewriting the rows after it is a checkpoint-removed break', async () => {
    const t = await makeLog(100, { everyRows: 10 });
    tamperSql(t.db, "DELETE FROM checkpoints WHERE seq <> 40; UPDATE decisions SET effect = 'ALLOW', reason = 'ALLOWED_BY_RULE' WHERE seq = 61;");
    rechain(t.db, 61);
    const { code, stdout } = await verify(t);
    expect(code).toBe(1);
    expect(failure(stdout)).toMatch(
      /^FAILED: checkpoint-removed at seq 30: the checkpoint at seq 40 \(signed [^)]+\) names seq 30 as the checkpoint signed before it, which is missing: checkpoints were removed/,
    );
    expect(JSON.parse((await verify(t, '--json')).stdout)).toMatchObject({ ok: false, break: { kind: 'checkpoint-removed', seq: 30 } });
  });

  it('one checkpoint deleted from between two others, rows untouched, still breaks', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'DELETE FROM checkpoints WHERE seq = 20;');
    await expectBreak(t, /^FAILED: checkpoint-removed at seq 20: the checkpoint at seq 30 .* names seq 20 as the checkpoint signed before it, which is missing/);
  });

  it('a previous seq edited in place to skip the gap is a bad signature', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'DELETE FROM checkpoints WHERE seq = 20; UPDATE checkpoints SET previous_seq = 10 WHERE seq = 30;');
    await expectBreak(t, /^FAILED: bad-signature at seq 30: the checkpoint at seq 30 .*has an invalid signature/);
    const v1 = copyLog(intact);
    tamperSql(v1.db, 'DELETE FROM checkpoints WHERE seq = 20; UPDATE checkpoints SET previous_seq = NULL WHERE seq = 30;');
    await expectBreak(v1, /^FAILED: bad-signature at seq 30: /);
  });
});

describe('every checkpoint deleted', () => {
  it('verifies with a warning that says the checkpoints were deleted or the server never reached one, and how to tell', async () => {
    const t = copyLog(intact);
    const exported = path.join(t.dir, '..', `${path.basename(t.dir)}-all-gone.json`);
    expect((await audit('checkpoint', '--db', t.db, '--export', exported)).code).toBe(0);
    tamperSql(t.db, "DELETE FROM checkpoints; UPDATE decisions SET effect = 'ALLOW', reason = 'ALLOWED_BY_RULE' WHERE seq = 1;");
    rechain(t.db, 1);
    const { code, stdout } = await verify(t);
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /warning\s+40 rows and no signed checkpoint: the server signs one every checkpointEveryRows rows or checkpointEverySeconds and on shutdown, so either it was stopped before its first one, or the checkpoints were deleted and the log may have been rewritten/,
    );
    expect(stdout).toMatch(/--from-checkpoint FILE/);
    expect(stdout).not.toMatch(/checkpoints on/);
    const checked = await verify(t, '--from-checkpoint', exported);
    expect(checked.code).toBe(1);
    expect(failure(checked.stdout)).toMatch(/^FAILED: changed at seq 1: the chain hash at seq 40 does not match the exported checkpoint/);
    fs.rmSync(exported);
  });
});

describe('checkpoints removed from the end', () => {
  // Without the signing key, deleting the later checkpoints turns the rows they signed back into
  // unsigned ones, which can then be rewritten and rechained. Only an exported checkpoint proves it;
  // verify says when the unsigned tail is far longer than the writer's spacing.
  it('warns when the rows after the last checkpoint are more than twice its widest spacing', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, "DELETE FROM checkpoints WHERE seq > 10; UPDATE decisions SET effect = 'ALLOW' WHERE seq = 16;");
    rechain(t.db, 16);
    const { code, stdout } = await verify(t);
    expect(code).toBe(0);
    expect(stdout).toMatch(/warning\s+30 rows after the last checkpoint \(seq 10\) are not signed, more than twice the most rows between two checkpoints before it \(10\): checkpoints may have been removed/);
    expect((await verify(intact)).stdout).not.toMatch(/may have been removed/);
    // A tail within the writer's spacing (a crash between checkpoints) is not remarked on.
    const crashed = copyLog(intact);
    tamperSql(crashed.db, 'DELETE FROM checkpoints WHERE seq = 40;');
    expect((await verify(crashed)).stdout).not.toMatch(/may have been removed/);
  });
});

// Values verdict never writes: each used to verify OK, fail verify with an internal
// error (exit 4), or crash the readers.
describe('values and seqs verdict never writes', () => {
  it('changed: a BLOB holding the JSONB of "DENY" in place of the text, which SQLite renders as the same text; the readers refuse the row', async () => {
    const t = copyLog(intact);
    // jsonb('"DENY"') and jsonb('"user-3"'): json_array() renders them as the JSON strings they hold.
    tamperSql(t.db, "UPDATE decisions SET effect = X'4744454E59', principal_id = X'67757365722D33' WHERE seq = 4;");
    await expectBreak(t, /^FAILED: changed at seq 4: row 4 was changed: principal_id holds a BLOB of 7 bytes where verdict stores text/);
    const { code, stdout } = await verify(t, '--workers', '2');
    expect(code).toBe(1);
    expect(failure(stdout)).toMatch(/^FAILED: changed at seq 4: /);
    // No crash ("text.replace is not a function"): a clear error naming the row and what to run.
    expect(() => queryDecisions(t.db, { limit: 100 })).toThrow(/the row at seq 4 cannot be shown: principal_id holds a BLOB of 7 bytes where verdict stores text.*run verdict audit verify/);
    const exported = await audit('export', '--db', t.db, '--out', path.join(t.dir, 'export.jsonl'));
    expect(exported.code).toBe(4);
    expect(exported.stderr).toMatch(/the row at seq 4 cannot be exported: principal_id holds a BLOB of 7 bytes.*run verdict audit verify/);
  });

  it('changed: a number with a fraction, or text, in an integer column, the row\'s hash recomputed over what SQLite renders', async () => {
    for (const value of ['40.5', "'forty'"]) {
      const t = copyLog(intact);
      tamperSql(t.db, `DELETE FROM checkpoints WHERE seq >= 40; UPDATE decisions SET latency_us = ${value} WHERE seq = 40;`);
      rechain(t.db, 40);
      await expectBreak(t, /^FAILED: changed at seq 40: row 40 was changed: latency_us holds (the number 40\.5|text of 5 characters) where verdict stores an integer/);
    }
  });

  for (const seq of ['42949672960000', '9223372036854775807']) {
    it(`a forged row at seq ${seq}: a break at seq 41, not an internal error`, async () => {
      const t = copyLog(intact);
      tamperSql(
        t.db,
        `INSERT INTO decisions SELECT ${seq}, 'x-' || decision_id, time_ms, caller, request_id, principal_id, action, resource_type, resource_id, effect, reason,
           rule_ids, errors, policy_version, request, latency_us, prev_hash, hash, details, format FROM decisions WHERE seq = 40;`,
      );
      for (const workers of ['1', '2']) {
        const { code, stdout, stderr } = await verify(t, '--workers', workers);
        expect(stderr).toBe('');
        expect(code).toBe(1);
        expect(failure(stdout)).toMatch(seq === '42949672960000' ? /^FAILED: deleted at seq 41: rows 41\.\.42949672959999 are missing/ : /^FAILED: inserted at seq 41: the row after seq 40 claims a seq past 2\^53/);
      }
    });
  }

  it('changed: a row edited where hashes are stored as text (forensics reads them as bytes, as the chain pass does)', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'UPDATE decisions SET hash = CAST(hash AS TEXT) WHERE seq = 5; UPDATE decisions SET prev_hash = CAST(prev_hash AS TEXT) WHERE seq = 6;');
    expect((await verify(t)).code).toBe(0);
    tamperSql(t.db, "UPDATE decisions SET effect = 'ALLOW' WHERE seq = 7; UPDATE decisions SET hash = CAST(hash AS TEXT), prev_hash = CAST(prev_hash AS TEXT) WHERE seq BETWEEN 7 AND 8;");
    await expectBreak(t, /^FAILED: changed at seq 7: row 7 was changed: its content no longer matches its hash/);
  });

  it('changed: a value longer than verdict can store (SQLite refuses to hand it over), not "cannot read the decision log"', async () => {
    const t = copyLog(intact);
    // One byte over what better-sqlite3 lets any value hold (V8's longest string): the sqlite3 shell allows 1e9.
    tamperSql(t.db, `PRAGMA synchronous = OFF; UPDATE decisions SET request = printf('%.*c', ${LONGEST_STORED_VALUE + 1}, 'a') WHERE seq = 20;`);
    for (const workers of ['1', '2']) {
      const { code, stdout, stderr } = await verify(t, '--workers', workers);
      expect(stderr).toBe('');
      expect(code).toBe(1);
      expect(failure(stdout)).toMatch(/^FAILED: changed at seq 20: row 20 was changed: request holds more than 536,870,888 bytes, more than verdict can store in one value/);
    }
    fs.rmSync(t.dir, { recursive: true, force: true });
  }, 60_000);
});

// SQLite and JavaScript both read bytes that are not UTF-8 as U+FFFD: such bytes
// in place of a U+FFFD that a value held keep the row's hash.
describe('text that is not UTF-8', () => {
  let withReplacement: TestLog;
  beforeAll(async () => {
    const dir = tempDir();
    const db = path.join(dir, 'decisions.db');
    const log = await writeLog(db, { everyRows: 10 });
    // Row seq 5 holds a genuine U+FFFD.
    for (let i = 0; i < 20; i++) await log.append(record(i, i === 4 ? { principalId: 'user-\uFFFD' } : {}));
    await log.close();
    withReplacement = { dir, db, pubkey: path.join(dir, 'audit-signing-key.pub.pem'), signingKey: path.join(dir, 'audit-signing-key.pem') };
  });

  it('a value holding U+FFFD verifies, and exports to an export that verifies', async () => {
    expect((await verify(withReplacement)).code).toBe(0);
    const out = path.join(tempDir(), 'x.jsonl');
    expect((await audit('export', '--db', withReplacement.db, '--out', out)).code).toBe(0);
    expect((await audit('verify', '--export', out, '--pubkey', withReplacement.pubkey)).code).toBe(0);
  });

  it('changed: invalid bytes in place of U+FFFD, or of other invalid bytes; export refuses the row', async () => {
    // "user-" then FF, then a 4-byte sequence cut short: both read as U+FFFD.
    for (const bytes of ['757365722dff', '757365722df09f98']) {
      const t = copyLog(withReplacement);
      tamperSql(t.db, `UPDATE decisions SET principal_id = CAST(x'${bytes}' AS TEXT) WHERE seq = 5;`);
      for (const workers of ['1', '2']) {
        const { code, stdout } = await verify(t, '--workers', workers);
        expect(code).toBe(1);
        expect(failure(stdout)).toMatch(/^FAILED: changed at seq 5: row 5 was changed: principal_id holds bytes that are not valid UTF-8/);
      }
      const exported = await audit('export', '--db', t.db, '--out', path.join(t.dir, 'export.jsonl'));
      expect(exported.code).toBe(4);
      expect(exported.stderr).toMatch(/the row at seq 5 cannot be exported: principal_id holds bytes that are not valid UTF-8/);
    }
  });

  it('an export whose U+FFFD was replaced by invalid bytes, or by an escaped lone surrogate, is refused', async () => {
    const out = path.join(tempDir(), 'x.jsonl');
    expect((await audit('export', '--db', withReplacement.db, '--out', out)).code).toBe(0);
    const bytes = fs.readFileSync(out);
    const at = bytes.indexOf(Buffer.from('user-\uFFFD'));
    expect(at).toBeGreaterThan(0);
    const invalid = Buffer.concat([bytes.subarray(0, at + 5), Buffer.from([0xff]), bytes.subarray(at + 8)]);
    fs.writeFileSync(out, invalid);
    const run = await audit('verify', '--export', out, '--pubkey', withReplacement.pubkey);
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/x\.jsonl:\d+: the line is not valid UTF-8/);
    fs.writeFileSync(out, bytes.toString('utf8').replace('user-\uFFFD', 'user-\\udcff'));
    const escaped = await audit('verify', '--export', out, '--pubkey', withReplacement.pubkey);
    expect(escaped.code).toBe(4);
    expect(escaped.stderr).toMatch(/principalId must be well-formed Unicode/);
  });
});
