import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyLog } from '../../src/audit/verify.js';
import { CURRENT_FORMAT, GENESIS_HASH, canonicalText, chainHash } from '../../src/decisions/chain.js';
import type { DecisionRow } from '../../src/decisions/columns.js';
import { rowValues, toRow } from '../../src/decisions/row.js';
import { connect, openLog, record, tamper, tempDb } from './helpers.js';

const row: DecisionRow = {
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
  details: null,
};
const values = rowValues(row);
const V1_TEXT =
  '["verdict.decision.v1",7,"d-1",1748779200000,"gw",null,"dana","predict","model","fraud-v3","DENY","DENIED_BY_RULE",' +
  '"[\\"r1\\",\\"r2\\"]","[]","sha256:abc","{\\"a\\":\\"é\\"}",12]';

describe('canonical form', () => {
  it('v1 (rows written before details existed) is the documented JSON array, JSON columns embedded as their stored text', () => {
    expect(canonicalText(1, 7, values)).toBe(V1_TEXT);
  });

  it('v2 (every row written now) adds details, as its stored text or null', () => {
    expect(CURRENT_FORMAT).toBe(2);
    expect(canonicalText(2, 7, values)).toBe(`${V1_TEXT.replace('verdict.decision.v1', 'verdict.decision.v2').slice(0, -1)},null]`);
    const detailed = rowValues({ ...row, details: '{"http":{"method":"GET","path":"/m"}}' });
    expect(canonicalText(2, 7, detailed)).toMatch(/,12,"\{\\"http\\":\{\\"method\\":\\"GET\\",\\"path\\":\\"\/m\\"\}\}"\]$/);
    // A v1 row cannot carry details: the value would be outside its hash.
    expect(canonicalText(1, 7, detailed)).toBeNull();
    expect(canonicalText(3, 7, values)).toBeNull();
  });

  it('hash = SHA-256(prev_hash || canonical bytes)', () => {
    const prev = Buffer.alloc(32, 0xab);
    for (const format of [1, 2]) {
      const expected = createHash('sha256').update(Buffer.concat([prev, Buffer.from(canonicalText(format, 7, values) as string, 'utf8')])).digest();
      expect(chainHash(prev, format, 7, values)?.equals(expected)).toBe(true);
    }
    expect(GENESIS_HASH.equals(Buffer.alloc(32))).toBe(true);
    expect(chainHash(GENESIS_HASH, 2, 7, values)?.equals(chainHash(prev, 2, 7, values) as Buffer)).toBe(false);
  });

  it('normalises what SQLite would change, so stored rows still verify', async () => {
    const file = tempDb();
    const log = await openLog(file);
    await log.append(record({ principalId: 'lone\uD800surrogate', caller: 'nul\u0000byte', time: 1748779200000.7, latencyUs: 3.6 }));
    await log.close();
    expect(toRow(record({ principalId: 'x\uDC00' })).principalId).toBe('x\uFFFD');
    const db = connect(file);
    const stored = db.prepare('SELECT principal_id, caller, time_ms, latency_us FROM decisions').get();
    db.close();
    expect(stored).toEqual({ principal_id: 'lone\uFFFDsurrogate', caller: 'nul\u0000byte', time_ms: 1748779200000, latency_us: 4 });
    expect(await verifyLog(file, { publicKeys: [], workers: 1 })).toMatchObject({ ok: true, rows: 1 });
  });
});

// The verifier the CLI uses (src/audit/verify.ts) over rows the writer chained.
describe('verifyLog over a written log', () => {
  async function writeLog(n: number): Promise<string> {
    const file = tempDb();
    const log = await openLog(file);
    await Promise.all(Array.from({ length: n }, (_, i) => log.append(record({ principalId: `p${i}` }))));
    await log.close();
    return file;
  }
  const verify = (file: string) => verifyLog(file, { publicKeys: [], workers: 1 });

  it('accepts an untouched log, starting from GENESIS_HASH', async () => {
    const file = await writeLog(5);
    const db = connect(file);
    const first = db.prepare('SELECT prev_hash FROM decisions WHERE seq = 1').pluck().get() as Buffer;
    db.close();
    expect(GENESIS_HASH.equals(first)).toBe(true);
    expect(await verify(file)).toMatchObject({ ok: true, rows: 5, start: { from: 'genesis' }, break: null });
  });

  it('finds a changed row', async () => {
    const file = await writeLog(5);
    const db = tamper(file);
    db.prepare("UPDATE decisions SET effect = 'DENY' WHERE seq = 3").run();
    db.close();
    expect(await verify(file)).toMatchObject({ ok: false, break: { kind: 'changed', seq: 3 } });
  });

  it('finds a deleted row', async () => {
    const file = await writeLog(5);
    const db = tamper(file);
    db.prepare('DELETE FROM decisions WHERE seq = 2').run();
    db.close();
    expect(await verify(file)).toMatchObject({ ok: false, break: { kind: 'deleted', seq: 2 } });
  });

  it('finds rows swapped with their seq renumbered', async () => {
    const file = await writeLog(4);
    const db = tamper(file);
    db.exec('UPDATE decisions SET seq = -2 WHERE seq = 2; UPDATE decisions SET seq = 2 WHERE seq = 3; UPDATE decisions SET seq = 3 WHERE seq = -2;');
    db.close();
    expect(await verify(file)).toMatchObject({ ok: false, break: { kind: 'reordered', seq: 2 } });
  });
});
