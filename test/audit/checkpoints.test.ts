import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalRowBytes, chainHash, rawChainHash, type RawRow } from '../../src/decisions/chain.js';
import { checkpointMessage, checkpointSignatureValid, signCheckpoint } from '../../src/decisions/checkpoint.js';
import { keyIdOf, loadHmacKey, loadOrCreateSigningKey } from '../../src/decisions/keys.js';
import { DecisionLog } from '../../src/decisions/log.js';
import { sqliteJsonMatchesJs } from '../../src/decisions/verify-range.js';
import { verifyLog } from '../../src/decisions/verify.js';
import { appendRows, audit, record, tempDir } from './helpers.js';

function signer(dir: string): ReturnType<typeof loadOrCreateSigningKey> {
  return loadOrCreateSigningKey({ signingKey: path.join(dir, 'k.pem'), publicKey: path.join(dir, 'k.pub.pem') });
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
    const body = { kind: 'checkpoint' as const, seq: 42, hash, timeMs: 1748779200000 };
    expect(checkpointMessage(body).toString('utf8')).toBe(`["verdict.checkpoint.v1","checkpoint",42,"${'ab'.repeat(32)}",1748779200000]`);
    const key = signer(tempDir());
    const signed = signCheckpoint(body, key.signer);
    expect(signed.signature).toHaveLength(64);
    expect(checkpointSignatureValid(signed, key.publicKey)).toBe(true);
    for (const altered of [{ seq: 43 }, { timeMs: 1 }, { kind: 'anchor' as const }, { hash: Buffer.alloc(32) }]) {
      expect(checkpointSignatureValid({ ...signed, ...altered }, key.publicKey), JSON.stringify(Object.keys(altered))).toBe(false);
    }
    expect(checkpointSignatureValid(signed, generateKeyPairSync('ed25519').publicKey)).toBe(false);
  });
});

describe('the fast canonical form used by verify', () => {
  const text = fc.string({ unit: 'binary', maxLength: 40 });
  const row = fc.record({
    seq: fc.integer({ min: 1, max: 2 ** 40 }),
    decisionId: text,
    timeMs: fc.integer({ min: 0, max: 2 ** 45 }),
    caller: text,
    requestId: fc.option(text, { nil: null }),
    principalId: text,
    action: text,
    resourceType: text,
    resourceId: text,
    effect: text,
    reason: text,
    ruleIds: fc.json(),
    errors: fc.json(),
    policyVersion: text,
    request: fc.json(),
    latencyUs: fc.integer({ min: 0, max: 2 ** 31 }),
  });
  // SQLite stores UTF-8, so lone surrogates never reach it (row.ts replaces them).
  const wellFormed = (s: string): string => s.replace(/[\uD800-\uDFFF]/g, '\uFFFD');

  it('rawChainHash is chainHash, and SQLite json_array writes exactly what JSON.stringify writes', () => {
    const db = new Database(':memory:');
    expect(sqliteJsonMatchesJs(db)).toBe(true);
    const statement = db.prepare(
      `SELECT json_array('verdict.decision.v1', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).pluck();
    fc.assert(
      fc.property(row, (generated) => {
        const r = Object.fromEntries(Object.entries(generated).map(([k, v]) => [k, typeof v === 'string' ? wellFormed(v) : v])) as typeof generated;
        const raw: RawRow = [
          r.seq, r.decisionId, r.timeMs, r.caller, r.requestId, r.principalId, r.action, r.resourceType, r.resourceId, r.effect,
          r.reason, r.ruleIds, r.errors, r.policyVersion, r.request, r.latencyUs, null, null,
        ];
        const prev = Buffer.alloc(32, 7);
        expect(rawChainHash(prev, raw).equals(chainHash(prev, r))).toBe(true);
        const fromSqlite = statement.get(
          BigInt(r.seq), r.decisionId, BigInt(r.timeMs), r.caller, r.requestId, r.principalId, r.action, r.resourceType, r.resourceId,
          r.effect, r.reason, r.ruleIds, r.errors, r.policyVersion, r.request, BigInt(r.latencyUs),
        );
        expect(fromSqlite).toBe(canonicalRowBytes(r).toString('utf8'));
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
    const log = DecisionLog.open(file, { checkpoints: { signer: signer(dir).signer, everyRows: 5, everySeconds: 3600 } });
    await appendRows(log, 0, 4);
    expect(checkpoints(file)).toEqual([]);
    await appendRows(log, 4, 1);
    expect(checkpoints(file)).toEqual([{ kind: 'checkpoint', seq: 5 }]);
    // One batch of 8 crosses 10: signed at its last row, 13.
    await Promise.all(Array.from({ length: 8 }, (_, i) => log.append(record(5 + i))));
    expect(checkpoints(file).map((c) => c.seq)).toEqual([5, 13]);
    await appendRows(log, 13, 2);
    expect(log.auditStatus().checkpoints).toMatchObject({ everyRows: 5, lastSeq: 13, unsignedRows: 2 });
    await log.close();
    expect(checkpoints(file).map((c) => c.seq)).toEqual([5, 13, 15]);
  });

  it('every T seconds while rows are unsigned, without waiting for more traffic', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    const log = DecisionLog.open(file, { checkpoints: { signer: signer(dir).signer, everyRows: 1000, everySeconds: 0.1 } });
    await appendRows(log, 0, 3);
    await new Promise((r) => setTimeout(r, 400));
    expect(checkpoints(file)).toEqual([{ kind: 'checkpoint', seq: 3 }]);
    // Nothing unsigned: the timer writes nothing more.
    await new Promise((r) => setTimeout(r, 300));
    expect(checkpoints(file)).toHaveLength(1);
    await log.close();
    expect(checkpoints(file)).toHaveLength(1);
  });

  it('keeps checkpoints consistent across a reopen, and verify accepts the result', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    const key = signer(dir);
    for (let round = 0; round < 3; round++) {
      const log = DecisionLog.open(file, { checkpoints: { signer: key.signer, everyRows: 4, everySeconds: 3600 } });
      await appendRows(log, round * 6, 6);
      await log.close();
    }
    expect(checkpoints(file).map((c) => c.seq)).toEqual([4, 6, 10, 12, 16, 18]);
    const report = await verifyLog(file, { publicKeys: [key.publicKey] });
    expect(report).toMatchObject({ ok: true, rows: 18, checkpoints: { total: 6, verified: 6, lastSeq: 18 }, unsignedRows: 0 });
  });

  it('with auditChain off (benchmarks only) writes no hashes or checkpoints, and verify says so', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    const log = DecisionLog.open(file, { chain: false, checkpoints: { signer: signer(dir).signer, everyRows: 1, everySeconds: 1 } });
    await appendRows(log, 0, 3);
    await log.close();
    expect(checkpoints(file)).toEqual([]);
    const report = await verifyLog(file, { publicKeys: [] });
    expect(report.ok).toBe(false);
    expect(report.break).toMatchObject({ kind: 'changed', seq: 1 });
    expect(report.break?.message).toMatch(/has no hash/);
  });
});

describe('a log from before checkpoints (schema v1)', () => {
  it('is migrated on open: triggers and checkpoints added, old rows kept, the whole chain verifies', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.db');
    const old = DecisionLog.open(file);
    await appendRows(old, 0, 5);
    await old.close();
    // Turn it back into what verdict wrote before this change.
    const db = new Database(file);
    db.exec(`DROP TRIGGER decisions_append_only_update; DROP TRIGGER decisions_append_only_delete;
      DROP TRIGGER checkpoints_append_only_update; DROP TRIGGER checkpoints_append_only_delete;
      DROP TABLE checkpoints; DROP TABLE audit_guard; PRAGMA user_version = 1;`);
    db.close();
    const v1 = await verifyLog(file, { publicKeys: [] });
    expect(v1).toMatchObject({ ok: true, rows: 5 });
    expect(v1.warnings.join()).toMatch(/schema v1: this log predates signed checkpoints/);

    const key = signer(dir);
    const log = DecisionLog.open(file, { checkpoints: { signer: key.signer, everyRows: 100, everySeconds: 3600 } });
    await appendRows(log, 5, 3);
    await log.close();
    const after = new Database(file, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(2);
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
