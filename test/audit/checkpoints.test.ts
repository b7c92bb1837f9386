import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sqliteJsonMatchesJs } from '../../src/audit/verify-range.js';
import { verifyLog } from '../../src/audit/verify.js';
import { CURRENT_FORMAT, canonicalSql, canonicalText, chainHash, storedRowHash } from '../../src/decisions/chain.js';
import { checkpointMessage, checkpointSignatureValid, signCheckpoint } from '../../src/decisions/checkpoint.js';
import { COLUMNS, INSERT_SQL, type RowValue } from '../../src/decisions/columns.js';
import { keyIdOf, loadHmacKey, loadOrCreateSigningKey } from '../../src/decisions/keys.js';
import { decisionColumns, migrate, SCHEMA_VERSION } from '../../src/decisions/schema.js';
import { LogWriter } from '../../src/decisions/writer.js';
import { startWriterThread } from '../../src/decisions/writer-thread.js';
import { ManualClock } from '../decisions/helpers.js';
import { DROP_TRIGGERS, appendRows, audit, record, tempDir } from './helpers.js';

function signer(dir: string): ReturnType<typeof loadOrCreateSigningKey> {
  return loadOrCreateSigningKey({ signingKey: path.join(dir, 'k.pem'), publicKey: path.join(dir, 'k.pub.pem') });
}

/** The server's writer thread on `file`, signing with the key in `dir` (created by signer()). */
function writer(file: string, dir: string, everyRows: number, everySeconds = 3600) {
  signer(dir);
  return startWriterThread(
    { path: file, mode: 'durable', checkpoints: { signingKey: path.join(dir, 'k.pem'), publicKey: path.join(dir, 'k.pub.pem'), everyRows, everySeconds } },
    null,
  );
}

function checkpoints(file: string): Array<{ kind: string; seq: number }> {
  const db = new Database(file, { readonly: true });
  const rows = db.prepare('SELECT kind, seq FROM checkpoints ORDER BY seq').all() as Array<{ kind: string; seq: number }>;
  db.close();
  return rows;
}

describe('the checkpoint message', () => {
  it('is the documented JSON array, and the signature covers every field', () => {
    const hash = Buffer.alloc(32, 0xab);
    const body = { kind: 'checkpoint' as const, seq: 42, hash, timeMs: 1748779200000, previousSeq: 32, replicaId: 'verdict-0' };
    expect(checkpointMessage(body).toString('utf8')).toBe(`["verdict.checkpoint.v3","checkpoint",42,"${'ab'.repeat(32)}",1748779200000,32,"verdict-0"]`);
    const key = signer(tempDir());
    const signed = signCheckpoint(body, key.signer);
    expect(signed.signature).toHaveLength(64);
    expect(checkpointSignatureValid(signed, key.publicKey)).toBe(true);
    const alterations = [{ seq: 43 }, { timeMs: 1 }, { kind: 'anchor' as const }, { hash: Buffer.alloc(32) }, { previousSeq: 22 }, { previousSeq: null }, { replicaId: 'verdict-1' }, { replicaId: null }];
    for (const altered of alterations) {
      expect(checkpointSignatureValid({ ...signed, ...altered }, key.publicKey), JSON.stringify(altered)).toBe(false);
    }
    expect(checkpointSignatureValid(signed, generateKeyPairSync('ed25519').publicKey)).toBe(false);
  });

  it('in a log that records no replica id, and of an earlier release, is v2: the array without the replica', () => {
    const body = { kind: 'checkpoint' as const, seq: 42, hash: Buffer.alloc(32, 0xab), timeMs: 1748779200000, previousSeq: 32, replicaId: null };
    expect(checkpointMessage(body).toString('utf8')).toBe(`["verdict.checkpoint.v2","checkpoint",42,"${'ab'.repeat(32)}",1748779200000,32]`);
    const key = signer(tempDir());
    const signed = signCheckpoint(body, key.signer);
    expect(checkpointSignatureValid(signed, key.publicKey)).toBe(true);
    expect(checkpointSignatureValid({ ...signed, replicaId: 'verdict-0' }, key.publicKey)).toBe(false);
  });

  it('of an earlier release (v1, no previous seq) is still the array it was', () => {
    const body = { kind: 'checkpoint' as const, seq: 42, hash: Buffer.alloc(32, 0xab), timeMs: 1748779200000, previousSeq: null, replicaId: null };
    expect(checkpointMessage(body).toString('utf8')).toBe(`["verdict.checkpoint.v1","checkpoint",42,"${'ab'.repeat(32)}",1748779200000]`);
  });
});

describe('the fast canonical form used by verify', () => {
  const text = fc.string({ unit: 'binary', maxLength: 40 });
  // SQLite stores UTF-8, so lone surrogates never reach it (row.ts replaces them).
  const wellFormed = text.map((s) => s.replace(/[\uD800-\uDFFF]/g, '\uFFFD'));
  const value: Record<string, fc.Arbitrary<RowValue>> = {
    text: wellFormed,
    'text?': fc.option(wellFormed, { nil: null }),
    integer: fc.integer({ min: 0, max: 2 ** 45 }),
    json: fc.json(),
    'json?': fc.option(fc.json(), { nil: null }),
  };
  const row = fc.tuple(fc.integer({ min: 1, max: 2 ** 40 }), fc.tuple(...COLUMNS.map((c) => value[c.type] as fc.Arbitrary<RowValue>)));

  it('the table\'s json_array() SQL writes exactly what JSON.stringify writes, for every format', () => {
    const db = new Database(':memory:');
    migrate(db, ':memory:');
    db.exec(DROP_TRIGGERS);
    expect(sqliteJsonMatchesJs(db)).toBe(true);
    const insert = db.prepare(INSERT_SQL);
    const canonical = db.prepare(`SELECT ${canonicalSql(decisionColumns(db))} FROM decisions WHERE seq = ?`).pluck();
    const remove = db.prepare('DELETE FROM decisions');
    fc.assert(
      fc.property(row, fc.constantFrom(1, CURRENT_FORMAT), ([seq, values], format) => {
        // A v1 row has no details (written before the column existed).
        const stored = format === 1 ? values.map((v, k) => ((COLUMNS[k]?.since ?? 1) > 1 ? null : v)) : values;
        const bound = stored.map((v, k) => (COLUMNS[k]?.type === 'integer' ? BigInt(v as number) : v));
        remove.run();
        insert.run(BigInt(seq), ...bound, Buffer.alloc(32), Buffer.alloc(32), format);
        expect(canonical.get(seq)).toBe(canonicalText(format, seq, stored));
        const prev = Buffer.alloc(32, 7);
        expect(storedRowHash(prev, { seq, format, values: stored, prevHash: null, hash: null })?.equals(chainHash(prev, format, seq, stored) as Buffer)).toBe(true);
      }),
      { numRuns: 300 },
    );
    db.close();
  });
});

describe('the writer signs checkpoints', () => {
  it('every N rows, at the end of the batch that crosses N, and the tail on close', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    const log = await writer(file, dir, 5);
    await appendRows(log, 0, 4);
    expect(checkpoints(file)).toEqual([]);
    await appendRows(log, 4, 1);
    expect(checkpoints(file)).toEqual([{ kind: 'checkpoint', seq: 5 }]);
    // One batch of 8 crosses 10: signed at its last row, 13.
    await Promise.all(Array.from({ length: 8 }, (_, i) => log.append(record(5 + i))));
    expect(checkpoints(file).map((c) => c.seq)).toEqual([5, 13]);
    await appendRows(log, 13, 2);
    expect((await log.auditStatus()).checkpoints).toMatchObject({ everyRows: 5, lastSeq: 13, unsignedRows: 2 });
    await log.close();
    expect(checkpoints(file).map((c) => c.seq)).toEqual([5, 13, 15]);
  });

  it('every T seconds while rows are unsigned, without waiting for more traffic', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    const clock = new ManualClock();
    const log = LogWriter.open(file, { clock, checkpoints: { signer: signer(dir).signer, everyRows: 1000, everySeconds: 60 } });
    const values: RowValue[] = [];
    const { encodeRecord } = await import('../../src/decisions/row.js');
    for (let i = 0; i < 3; i++) encodeRecord(values, record(i));
    await new Promise<void>((resolve, reject) => log.write(values, 3, false, ({ failed }) => (failed === null ? resolve() : reject(failed))));
    clock.advance(59_999);
    expect(checkpoints(file)).toEqual([]);
    // The timer fires at 60 s and the writer signs the tail in a transaction of its own.
    clock.advance(1);
    await log.flush();
    expect(checkpoints(file)).toEqual([{ kind: 'checkpoint', seq: 3 }]);
    expect(log.auditStatus().checkpoints).toMatchObject({ lastSeq: 3, lastTimeMs: clock.now(), unsignedRows: 0 });
    // Nothing unsigned: the timer writes nothing more.
    clock.advance(600_000);
    await log.flush();
    expect(checkpoints(file)).toHaveLength(1);
    await log.close();
    expect(checkpoints(file)).toHaveLength(1);
  });

  it('keeps checkpoints consistent across a reopen, and verify accepts the result', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    const key = signer(dir);
    for (let round = 0; round < 3; round++) {
      const log = await writer(file, dir, 4);
      await appendRows(log, round * 6, 6);
      await log.close();
    }
    expect(checkpoints(file).map((c) => c.seq)).toEqual([4, 6, 10, 12, 16, 18]);
    const report = await verifyLog(file, { publicKeys: [key.publicKey] });
    expect(report).toMatchObject({ ok: true, rows: 18, checkpoints: { total: 6, verified: 6, lastSeq: 18 }, unsignedRows: 0 });
  });
});

describe('each checkpoint names the one signed before it (format v2)', () => {
  function links(file: string): Array<[number, number | null]> {
    const db = new Database(file, { readonly: true });
    const rows = db.prepare('SELECT seq, previous_seq FROM checkpoints ORDER BY seq').raw(true).all() as Array<[number, number | null]>;
    db.close();
    return rows;
  }

  it('0 for the first, then the seq before it, across a reopen; every signature is over the v2 message', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    const key = signer(dir);
    for (let round = 0; round < 2; round++) {
      const log = await writer(file, dir, 10);
      await appendRows(log, round * 15, 15);
      await log.close();
    }
    expect(links(file)).toEqual([[10, 0], [15, 10], [25, 15], [30, 25]]);
    const report = await verifyLog(file, { publicKeys: [key.publicKey] });
    expect(report).toMatchObject({ ok: true, rows: 30, checkpoints: { total: 4, verified: 4 } });
  });

  it('a log whose checkpoints an earlier release signed (v1) goes on with v2 ones, the first naming the last v1, and verifies', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    const key = signer(dir);
    const first = await writer(file, dir, 10);
    await appendRows(first, 0, 20);
    await first.close();
    // Make the checkpoints what an earlier release wrote: v1 signatures, previous_seq NULL.
    const { sign } = await import('node:crypto');
    const { readPrivateKey } = await import('../../src/decisions/keys.js');
    const privateKey = readPrivateKey(path.join(dir, 'k.pem'));
    const db = new Database(file);
    db.exec(DROP_TRIGGERS);
    for (const cp of db.prepare('SELECT id, kind, seq, hash, time_ms FROM checkpoints').all() as Array<{ id: number; kind: 'checkpoint'; seq: number; hash: Buffer; time_ms: number }>) {
      const message = checkpointMessage({ kind: cp.kind, seq: cp.seq, hash: cp.hash, timeMs: cp.time_ms, previousSeq: null, replicaId: null });
      db.prepare('UPDATE checkpoints SET previous_seq = NULL, signature = ? WHERE id = ?').run(sign(null, message, privateKey), cp.id);
    }
    db.close();
    expect(links(file)).toEqual([[10, null], [20, null]]);
    expect(await verifyLog(file, { publicKeys: [key.publicKey] })).toMatchObject({ ok: true, checkpoints: { total: 2, verified: 2 } });
    const second = await writer(file, dir, 10);
    await appendRows(second, 20, 10);
    await second.close();
    expect(links(file)).toEqual([[10, null], [20, null], [30, 20]]);
    const report = await verifyLog(file, { publicKeys: [key.publicKey] });
    expect(report).toMatchObject({ ok: true, rows: 30, checkpoints: { total: 3, verified: 3 } });
    // The v1 checkpoints name nothing, so deleting the first of them is not a checkpoint-removed break, as before.
    const edited = new Database(file);
    edited.exec(`${DROP_TRIGGERS} DELETE FROM checkpoints WHERE seq = 10;`);
    edited.close();
    expect(await verifyLog(file, { publicKeys: [key.publicKey] })).toMatchObject({ ok: true });
  });
});

describe('a log from before checkpoints (schema v1)', () => {
  it('is migrated on open: triggers and checkpoints added, old rows kept, the whole chain verifies', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    // What verdict wrote before checkpoints: schema v1, rows hashed in canonical format 1.
    const db = new Database(file);
    migrate(db, file);
    db.exec(`DROP TRIGGER decisions_append_only_update; DROP TRIGGER decisions_append_only_delete;
      DROP TRIGGER checkpoints_append_only_update; DROP TRIGGER checkpoints_append_only_delete;
      DROP TABLE checkpoints; DROP TABLE audit_guard; ALTER TABLE decisions DROP COLUMN details;
      ALTER TABLE decisions DROP COLUMN format; DROP TABLE alerts; DROP TABLE suspensions; PRAGMA user_version = 1;`);
    const v1Columns = COLUMNS.filter((c) => c.since === 1);
    const insert = db.prepare(`INSERT INTO decisions (seq, ${v1Columns.map((c) => c.sql).join(', ')}, prev_hash, hash) VALUES (${Array(v1Columns.length + 3).fill('?').join(', ')})`);
    const { toRow, rowValues } = await import('../../src/decisions/row.js');
    let prev: Buffer = Buffer.alloc(32);
    for (let seq = 1; seq <= 5; seq++) {
      const values = rowValues(toRow(record(seq - 1))).slice(0, v1Columns.length);
      const hash = chainHash(prev, 1, seq, [...values, null])!;
      insert.run(seq, ...values, prev, hash);
      prev = hash;
    }
    db.close();
    const v1 = await verifyLog(file, { publicKeys: [] });
    expect(v1).toMatchObject({ ok: true, rows: 5 });
    expect(v1.warnings.join()).toMatch(/schema v1: this log predates signed checkpoints/);

    const key = signer(dir);
    const log = await writer(file, dir, 100);
    await appendRows(log, 5, 3);
    await log.close();
    const after = new Database(file, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    after.close();
    expect(checkpoints(file)).toEqual([{ kind: 'checkpoint', seq: 8 }]);
    expect(await verifyLog(file, { publicKeys: [key.publicKey] })).toMatchObject({ ok: true, rows: 8, checkpoints: { verified: 1 } });
  });
});

describe('keys', () => {
  it('are generated once, private key 0600, and reused', () => {
    const dir = tempDir();
    const first = signer(dir);
    expect(fs.statSync(path.join(dir, 'k.pem')).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(path.join(dir, 'k.pub.pem'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(first.notes.join()).toMatch(/generated an Ed25519 checkpoint signing key/);
    const second = signer(dir);
    expect(second.keyId).toBe(first.keyId);
    expect(second.notes).toEqual([]);
    expect(first.keyId).toMatch(/^ed25519:[0-9a-f]{16}$/);
    expect(keyIdOf(first.publicKey)).toBe(first.keyId);
  });

  it('refuse a public key that does not match, a key that is not Ed25519, and warn about loose permissions', () => {
    const dir = tempDir();
    signer(dir);
    fs.writeFileSync(path.join(dir, 'k.pub.pem'), generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }));
    expect(() => signer(dir)).toThrow(/does not belong to the signing key/);

    const rsa = tempDir();
    fs.writeFileSync(path.join(rsa, 'k.pem'), generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    expect(() => signer(rsa)).toThrow(/is a rsa key; checkpoints need an Ed25519 key/);

    const garbage = tempDir();
    fs.writeFileSync(path.join(garbage, 'k.pem'), 'not a key');
    expect(() => signer(garbage)).toThrow(/cannot read the signing key .*k\.pem: /);

    const loose = tempDir();
    signer(loose);
    fs.chmodSync(path.join(loose, 'k.pem'), 0o644);
    expect(signer(loose).notes.join()).toMatch(/readable by others \(mode 0644\); chmod 600 it/);
  });

  it('HMAC keys: generated 0600 when allowed, too short refused', () => {
    const dir = tempDir();
    const file = path.join(dir, 'h.key');
    expect(() => loadHmacKey(file, false)).toThrow(/no HMAC key at/);
    const created = loadHmacKey(file, true);
    expect(created.key).toHaveLength(32);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(loadHmacKey(file, false).key.equals(created.key)).toBe(true);
    fs.writeFileSync(file, 'short');
    expect(() => loadHmacKey(file, false)).toThrow(/is 5 bytes; it needs at least 32/);
  });

  it('verdict audit pubkey prints the PEM, the key id on stderr', async () => {
    const dir = tempDir();
    const key = loadOrCreateSigningKey({ signingKey: path.join(dir, 'audit-signing-key.pem'), publicKey: path.join(dir, 'audit-signing-key.pub.pem') });
    const run = await audit('pubkey', '--db', path.join(dir, 'decisions.db'));
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(fs.readFileSync(path.join(dir, 'audit-signing-key.pub.pem'), 'utf8'));
    expect(run.stderr).toBe(`key id: ${key.keyId}\n`);
    const fromPrivate = await audit('pubkey', '--signing-key', path.join(dir, 'audit-signing-key.pem'));
    expect(fromPrivate.stdout).toBe(run.stdout);
    const none = await audit('pubkey', '--db', path.join(tempDir(), 'decisions.db'));
    expect(none.code).toBe(4);
    expect(none.stderr).toMatch(/^verdict audit pubkey: no key at /);
  });
});
