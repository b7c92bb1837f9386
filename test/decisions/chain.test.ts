import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GENESIS_HASH, canonicalRowBytes, chainHash, verifyChain } from '../../src/decisions/chain.js';
import { DecisionLog } from '../../src/decisions/log.js';
import { toRow, type SequencedRow } from '../../src/decisions/row.js';
import { chainRows, connect, record, tamper, tempDb } from './helpers.js';

const row: SequencedRow = {
  seq: 7,
  decisionId: 'd-1',
  timeMs: 1748779200000,
  caller: 'gw',
  requestId: null,
  principalId: 'dana',
  action: 'predict',
  resourceType: 'model',
  resourceId: 'fraud-v3',
  effect: 'DENY',
  reason: 'DENIED_BY_RULE',
  ruleIds: '["r1","r2"]',
  errors: '[]',
  policyVersion: 'sha256:abc',
  request: '{"a":"é"}',
  latencyUs: 12,
};

describe('canonical form', () => {
  it('is the documented JSON array, JSON columns embedded as their stored text', () => {
    expect(canonicalRowBytes(row).toString('utf8')).toBe(
      '["verdict.decision.v1",7,"d-1",1748779200000,"gw",null,"dana","predict","model","fraud-v3","DENY","DENIED_BY_RULE",' +
        '"[\\"r1\\",\\"r2\\"]","[]","sha256:abc","{\\"a\\":\\"é\\"}",12]',
    );
  });

  it('hash = SHA-256(prev_hash || canonical bytes)', () => {
    const prev = Buffer.alloc(32, 0xab);
    const expected = createHash('sha256').update(Buffer.concat([prev, canonicalRowBytes(row)])).digest();
    expect(chainHash(prev, row).equals(expected)).toBe(true);
    expect(GENESIS_HASH.equals(Buffer.alloc(32))).toBe(true);
    expect(chainHash(GENESIS_HASH, row).equals(chainHash(prev, row))).toBe(false);
  });

  it('normalises what SQLite would change, so stored rows still verify', async () => {
    const file = tempDb();
    const log = DecisionLog.open(file);
    await log.append(record({ principalId: 'lone\uD800surrogate', caller: 'nul\u0000byte', time: 1748779200000.7, latencyUs: 3.6 }));
    await log.close();
    expect(toRow(record({ principalId: 'x\uDC00' })).principalId).toBe('x\uFFFD');
    const db = connect(file);
    const rows = chainRows(db);
    db.close();
    expect(rows[0]).toMatchObject({ principalId: 'lone\uFFFDsurrogate', caller: 'nul\u0000byte', timeMs: 1748779200000, latencyUs: 4 });
    expect(verifyChain(rows)).toMatchObject({ ok: true, rows: 1 });
  });
});

describe('verifyChain over a written log', () => {
  async function writeLog(n: number): Promise<string> {
    const file = tempDb();
    const log = DecisionLog.open(file);
    await Promise.all(Array.from({ length: n }, (_, i) => log.append(record({ principalId: `p${i}` }))));
    await log.close();
    return file;
  }

  it('accepts an untouched log, starting from GENESIS_HASH', async () => {
    const file = await writeLog(5);
    const db = connect(file);
    const rows = chainRows(db);
    db.close();
    expect(rows[0]?.prevHash && GENESIS_HASH.equals(rows[0].prevHash)).toBe(true);
    const result = verifyChain(rows);
    expect(result).toMatchObject({ ok: true, rows: 5 });
    // Resuming from a trusted point verifies the rest.
    expect(verifyChain(rows.slice(2), { seq: 2, hash: rows[1]!.hash! })).toMatchObject({ ok: true, rows: 3 });
  });

  it('finds a changed row', async () => {
    const file = await writeLog(5);
    const db = tamper(file);
    db.prepare("UPDATE decisions SET effect = 'DENY' WHERE seq = 3").run();
    expect(verifyChain(chainRows(db))).toMatchObject({ ok: false, seq: 3, problem: 'HASH_MISMATCH' });
    db.close();
  });

  it('finds a deleted row', async () => {
    const file = await writeLog(5);
    const db = tamper(file);
    db.prepare('DELETE FROM decisions WHERE seq = 2').run();
    expect(verifyChain(chainRows(db))).toMatchObject({ ok: false, seq: 3, problem: 'GAP' });
    db.close();
  });

  it('finds rows swapped with their seq renumbered', async () => {
    const file = await writeLog(4);
    const db = tamper(file);
    db.exec('UPDATE decisions SET seq = -2 WHERE seq = 2; UPDATE decisions SET seq = 2 WHERE seq = 3; UPDATE decisions SET seq = 3 WHERE seq = -2;');
    expect(verifyChain(chainRows(db))).toMatchObject({ ok: false, seq: 2, problem: 'PREV_HASH_MISMATCH' });
    db.close();
  });
});
