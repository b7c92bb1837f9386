import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { newClaims, verifyBlocks, type BlockResult } from '../../src/audit/verify-range.js';
import { CURRENT_FORMAT, GENESIS_HASH, chainHash } from '../../src/decisions/chain.js';
import { COLUMN_LIST, INSERT_SQL, type DecisionRow, type RowValue } from '../../src/decisions/columns.js';
import { rowValues, toRow } from '../../src/decisions/row.js';
import { migrate } from '../../src/decisions/schema.js';
import { DROP_TRIGGERS, record } from './helpers.js';

// verifyBlocks has a fast path (SQLite builds the canonical text) and the exact
// path it falls back to (rawChainHash). Whatever the rows hold, both must reach
// the same result, block by block; and blocks must hand over correctly at their
// edges and at the 512-row chunks inside them.

const COLUMNS = `seq, decision_id, time_ms, caller, request_id, principal_id, action, resource_type, resource_id, effect, reason,
  rule_ids, errors, policy_version, request, latency_us, prev_hash, hash`;

/**
 * An in-memory log holding `rows` as seq 1.. (or the seqs given), chained as
 * the writer chains them; triggers dropped for tampering.
 */
function chainedLog(rows: readonly DecisionRow[], seqs: readonly number[] = rows.map((_, i) => i + 1)): Database.Database {
  const db = new Database(':memory:');
  migrate(db, ':memory:');
  db.exec(DROP_TRIGGERS);
  const insert = db.prepare(INSERT_SQL);
  let prev: Buffer = GENESIS_HASH;
  rows.forEach((row, i) => {
    const seq = seqs[i] as number;
    const values = rowValues(row);
    const hash = chainHash(prev, CURRENT_FORMAT, seq, values) as Buffer;
    insert.run(seq, ...values, prev, hash, CURRENT_FORMAT);
    prev = hash;
  });
  return db;
}

/** Every block's result with hashes in hex, for comparing the two paths. */
function verifyAll(db: Database.Database, fast: boolean, blockRows: number, hashesAt: readonly number[] = []): unknown[] {
  const to = (db.prepare('SELECT max(seq) FROM decisions').pluck().get() as number | null) ?? 0;
  const blocks = Math.ceil(to / blockRows);
  const plan = { path: ':memory:', from: 1, to, prev: GENESIS_HASH, blockRows, hashesAt, fast, claims: newClaims(blocks) };
  return verifyBlocks(db, plan).map((r: BlockResult) => ({
    block: r.block,
    rows: r.rows,
    hashesAt: r.hashesAt.map(([seq, h]) => [seq, Buffer.from(h).toString('hex')]),
    failure: r.failure === null ? null : { expected: r.failure.expected, prev: Buffer.from(r.failure.prev).toString('hex') },
  }));
}

/** The first failure over all blocks, in seq order. */
function firstFailure(results: unknown[]): number | null {
  const failed = (results as Array<{ failure: { expected: number } | null }>).find((r) => r.failure !== null);
  return failed?.failure?.expected ?? null;
}

function bothPaths(db: Database.Database, blockRows: number, hashesAt: readonly number[] = []): unknown[] {
  const fast = verifyAll(db, true, blockRows, hashesAt);
  expect(fast).toEqual(verifyAll(db, false, blockRows, hashesAt));
  return fast;
}

const ROWS = 1300;
const rows = Array.from({ length: ROWS }, (_, i) => toRow(record(i)));

describe('verifyBlocks', () => {
  it('verifies an intact log in one block or many, and returns the chain hash wherever asked', () => {
    const db = chainedLog(rows);
    let prev: Buffer = GENESIS_HASH;
    const expectedHashes = new Map<number, string>();
    rows.forEach((row, i) => {
      prev = chainHash(prev, CURRENT_FORMAT, i + 1, rowValues(row)) as Buffer;
      expectedHashes.set(i + 1, prev.toString('hex'));
    });
    const wanted = [1, 512, 513, 1024, 1025, 1300];
    for (const blockRows of [ROWS, 300, 97, 1]) {
      const results = bothPaths(db, blockRows, wanted) as Array<{ rows: number; hashesAt: Array<[number, string]>; failure: unknown }>;
      expect(results).toHaveLength(Math.ceil(ROWS / blockRows));
      expect(results.every((r) => r.failure === null)).toBe(true);
      expect(results.reduce((sum, r) => sum + r.rows, 0)).toBe(ROWS);
      expect(results.flatMap((r) => r.hashesAt)).toEqual(wanted.map((seq) => [seq, expectedHashes.get(seq)]));
    }
    db.close();
  });

  const tamperings: Array<[string, string, number | null]> = [
    ['a changed row at the end of a chunk', "UPDATE decisions SET effect = 'TAMPERED' WHERE seq = 512", 512],
    ['a changed row at the start of a chunk', "UPDATE decisions SET principal_id = 'mallory' WHERE seq = 513", 513],
    ['a changed first row', "UPDATE decisions SET request = '{}' WHERE seq = 1", 1],
    ['a changed last row', 'UPDATE decisions SET latency_us = 1 WHERE seq = 1300', 1300],
    ['a quote added to a JSON column', `UPDATE decisions SET rule_ids = '["a\\"b"]' WHERE seq = 700`, 700],
    ['a deleted first row', 'DELETE FROM decisions WHERE seq = 1', 1],
    ['a deleted row at the end of a chunk', 'DELETE FROM decisions WHERE seq = 1024', 1024],
    ['a deleted row at the start of a chunk', 'DELETE FROM decisions WHERE seq = 1025', 1025],
    ['a deleted row at the start of a 300-row block', 'DELETE FROM decisions WHERE seq = 301', 301],
    ['a row appended with a made-up hash', `INSERT INTO decisions (${COLUMNS}) SELECT 1301, 'x', time_ms, caller, NULL, principal_id, action, resource_type,
       resource_id, effect, reason, rule_ids, errors, policy_version, request, latency_us, hash, randomblob(32) FROM decisions WHERE seq = 1300`, 1301],
    ['two rows swapped', 'UPDATE decisions SET seq = -1 WHERE seq = 512; UPDATE decisions SET seq = 512 WHERE seq = 513; UPDATE decisions SET seq = 513 WHERE seq = -1', 512],
    ['a row moved to a negative seq', 'UPDATE decisions SET seq = -5 WHERE seq = 40', 40],
    ['a cleared prev_hash', 'UPDATE decisions SET prev_hash = NULL WHERE seq = 700', 700],
    ['a cleared hash', 'UPDATE decisions SET hash = NULL WHERE seq = 700', 700],
    ['a 31-byte prev_hash', 'UPDATE decisions SET prev_hash = substr(prev_hash, 1, 31) WHERE seq = 700', 700],
    ['a 33-byte hash', "UPDATE decisions SET hash = hash || x'00' WHERE seq = 700", 700],
    ['a prev_hash shorter by a byte and the hash longer by it', "UPDATE decisions SET prev_hash = substr(prev_hash, 1, 31) WHERE seq = 700; UPDATE decisions SET hash = substr((SELECT hash FROM decisions WHERE seq = 699), 32, 1) || hash WHERE seq = 700", 700],
    ['a rewritten prev_hash', 'UPDATE decisions SET prev_hash = zeroblob(32) WHERE seq = 700', 700],
    ['a hash stored as text with the same bytes (still the same chain)', 'UPDATE decisions SET hash = CAST(hash AS TEXT) WHERE seq = 700', null],
    ['details added to a row', `UPDATE decisions SET details = '{"http":{"method":"GET","path":"/"}}' WHERE seq = 700`, 700],
    ['a row passed off as canonical format 1 (written before details)', 'UPDATE decisions SET format = 1 WHERE seq = 700', 700],
    ['a row of a canonical format this build does not know', 'UPDATE decisions SET format = 9 WHERE seq = 700', 700],
    // json_array() refuses a BLOB: the fast path cannot read the chunk at all.
    ['a JSON column stored as a blob', 'UPDATE decisions SET request = CAST(request AS BLOB) WHERE seq = 700', 700],
    // ...but renders one holding JSONB (SQLite 3.45 on) as the JSON inside it: the same canonical text, the same hash.
    ['a text column holding the JSONB of its own text', 'UPDATE decisions SET effect = jsonb(json_quote(effect)) WHERE seq = 700', 700],
    ['a JSON column holding the JSONB of its own text', 'UPDATE decisions SET rule_ids = jsonb(rule_ids) WHERE seq = 513', 513],
  ];

  for (const [what, sql, brokenAt] of tamperings) {
    it(`reaches the same result on both paths for ${what}`, () => {
      const db = chainedLog(rows);
      db.exec(sql);
      for (const blockRows of [ROWS, 300]) {
        expect(firstFailure(bothPaths(db, blockRows)), `blocks of ${blockRows}`).toBe(brokenAt);
      }
      db.close();
    });
  }

  it('breaks at a value of a kind verdict never writes even where the chain was recomputed over what SQLite renders', () => {
    for (const [column, value] of [['latency_us', 40.5], ['time_ms', 'soon'], ['principal_id', Buffer.from('mallory')]] as const) {
      const db = chainedLog(rows);
      db.prepare(`UPDATE decisions SET ${column} = ? WHERE seq = 700`).run(value);
      // Rechain from 700 over the values as stored, as an intruder who read the spec would.
      const stored = db.prepare(`SELECT seq, ${COLUMN_LIST} FROM decisions WHERE seq >= 700 ORDER BY seq`).raw().all() as unknown[][];
      let prev = db.prepare('SELECT hash FROM decisions WHERE seq = 699').pluck().get() as Buffer;
      const update = db.prepare('UPDATE decisions SET prev_hash = ?, hash = ? WHERE seq = ?');
      for (const [seq, ...values] of stored) {
        // A BLOB would be hashed as JSONB renders it: its text.
        const rendered = values.map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : v)) as RowValue[];
        const hash = chainHash(prev, CURRENT_FORMAT, seq as number, rendered) as Buffer;
        update.run(prev, hash, seq);
        prev = hash;
      }
      for (const blockRows of [ROWS, 300]) expect(firstFailure(bothPaths(db, blockRows)), `${column} = ${String(value)}`).toBe(700);
      db.close();
    }
  });

  it('finds a gap in seq even where the chain was recomputed across it', () => {
    const seqs = rows.map((_, i) => (i + 1 < 600 ? i + 1 : i + 2));
    const db = chainedLog(rows, seqs);
    for (const blockRows of [ROWS, 300]) expect(firstFailure(bothPaths(db, blockRows))).toBe(600);
    db.close();
  });

  it('hands out no blocks after a failed one, and every block before it', () => {
    const db = chainedLog(rows);
    db.exec("UPDATE decisions SET principal_id = 'mallory' WHERE seq = 250");
    const results = bothPaths(db, 100) as Array<{ block: number; failure: { expected: number } | null }>;
    expect(results.map((r) => r.block)).toEqual([0, 1, 2]);
    expect(results[2]?.failure?.expected).toBe(250);
    db.close();
  });

  it('agrees with the exact path on arbitrary rows, intact or with one value changed', () => {
    const text = fc.string({ unit: 'binary', maxLength: 30 });
    // SQLite stores UTF-8, so lone surrogates never reach it (row.ts replaces them).
    const wellFormed = text.map((s) => s.replace(/[\uD800-\uDFFF]/g, '\uFFFD'));
    const row = fc.record({
      decisionId: fc.uuid(),
      timeMs: fc.integer({ min: 0, max: 2 ** 45 }),
      caller: wellFormed,
      requestId: fc.option(wellFormed, { nil: null }),
      principalId: wellFormed,
      action: wellFormed,
      resourceType: wellFormed,
      resourceId: wellFormed,
      effect: wellFormed,
      reason: wellFormed,
      ruleIds: fc.json(),
      errors: fc.json(),
      policyVersion: wellFormed,
      request: fc.json(),
      latencyUs: fc.integer({ min: 0, max: 2 ** 31 }),
      details: fc.option(fc.json(), { nil: null }),
    });
    const change = fc.record({ at: fc.nat(), column: fc.constantFrom('caller', 'principal_id', 'request', 'request_id', 'details'), value: wellFormed });
    fc.assert(
      fc.property(fc.uniqueArray(row, { minLength: 1, maxLength: 12, selector: (r) => r.decisionId }), fc.option(change, { nil: null }), fc.integer({ min: 1, max: 5 }), (generated, changed, blockRows) => {
        const db = chainedLog(generated);
        try {
          if (changed === null) {
            expect(firstFailure(bothPaths(db, blockRows))).toBe(null);
          } else {
            db.prepare(`UPDATE decisions SET ${changed.column} = ? WHERE seq = ?`).run(changed.value, (changed.at % generated.length) + 1);
            bothPaths(db, blockRows);
          }
        } finally {
          db.close();
        }
      }),
      { numRuns: 200 },
    );
  });
});
