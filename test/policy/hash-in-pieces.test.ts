import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HASH_PIECE_SIZE, fileHash, hashInPieces } from '../../src/policy/hash-in-pieces.js';
import { unitsOf } from '../../src/policy/text-units.js';
import type { StageRun } from '../../src/policy/pipeline.js';
import { compareCanonical, policyVersion } from '../../src/policy/version.js';

/** Runs a stage step to its end, counting its pauses. */
function stepped<T>(run: StageRun<T>): { value: T; pauses: number } {
  let pauses = 0;
  for (let step = run.next(); ; step = run.next()) {
    if (step.done) return { value: step.value, pauses };
    pauses++;
  }
}

// Policy files and the canonical text of their documents are hashed on the thread that
// answers checks (each load's fingerprint and version, the content poll): a directory
// of megabytes is hashed a piece at a time, to the hash a single update gives.
describe('hashing in pieces', () => {
  it("gives a file's SHA-256, with a pause between pieces", () => {
    for (const size of [0, 1, HASH_PIECE_SIZE - 1, HASH_PIECE_SIZE, HASH_PIECE_SIZE + 1, 4 * HASH_PIECE_SIZE + 5]) {
      const bytes = randomBytes(size);
      const { value, pauses } = stepped(fileHash(bytes));
      expect(value).toBe(createHash('sha256').update(bytes).digest('hex'));
      expect(pauses).toBe(Math.max(0, Math.ceil(size / HASH_PIECE_SIZE) - 1));
    }
  });

  it('hashes text as one update would, even where a piece would end inside a surrogate pair', () => {
    const texts = [
      `${'a'.repeat(HASH_PIECE_SIZE - 1)}😀${'b'.repeat(10)}`,
      `${'é'.repeat(HASH_PIECE_SIZE)}${'😀'.repeat(HASH_PIECE_SIZE)}`,
      // A lone high surrogate at the cut stays what one update makes of it.
      `${'a'.repeat(HASH_PIECE_SIZE - 1)}\ud83d${'z'.repeat(10)}`,
    ];
    for (const text of texts) {
      const whole = createHash('sha256').update(text).digest('hex');
      const hash = createHash('sha256');
      const { pauses } = stepped(hashInPieces(hash, text));
      expect(pauses).toBeGreaterThan(0);
      expect(hash.digest('hex')).toBe(whole);
      // The same text as its code units (the form it crosses threads in).
      const fromUnits = createHash('sha256');
      expect(stepped(hashInPieces(fromUnits, { units: unitsOf(text) })).pauses).toBe(pauses);
      expect(fromUnits.digest('hex')).toBe(whole);
    }
  });

  it("leaves a set's version as it was", () => {
    const docs = [`{"kind":"principals","principals":[${Array.from({ length: 20_000 }, (_, i) => `{"id":"user-${i}-😀"}`).join(',')}]}`, '{"kind":"rules"}'];
    const whole = createHash('sha256');
    for (const doc of [...docs].sort()) whole.update(doc).update('\n');
    const version = `sha256:${whole.digest('hex')}`;
    expect(stepped(policyVersion(docs, null)).value).toBe(version);
    // Texts arrived as code units, or some as strings and some as units: the same order, the same version.
    expect(stepped(policyVersion(docs.map((doc) => ({ units: unitsOf(doc) })), null)).value).toBe(version);
    expect(stepped(policyVersion([docs[0]!, { units: unitsOf(docs[1]!) }], null)).value).toBe(version);
  });

  it('orders texts as code units the way strings sort, past the first difference and by length', () => {
    // U+FFFD sorts after a surrogate pair as strings do (by code unit), not by code point.
    const texts = ['{"a":"\uFFFD"}', '{"a":"😀"}', '{"a":"b"}', '{"a":"b"}x', '{"a":"é"}', '{"a"', ''];
    const asStrings = [...texts].sort();
    const asUnits = texts.map((text) => ({ units: unitsOf(text) })).sort(compareCanonical).map(({ units }) => String.fromCharCode(...units));
    expect(asUnits).toEqual(asStrings);
    expect(asStrings.indexOf('{"a":"😀"}')).toBeLessThan(asStrings.indexOf('{"a":"\uFFFD"}'));
  });

  it('orders long texts with long equal beginnings as strings do: a difference in any block, at its edges, or in length', () => {
    const common = 'x'.repeat(3 * 4096 + 17);
    const texts = [`${common}a`, `${common}`, `${common}\uFFFD`, `${common}😀`, `${'x'.repeat(4096)}y`, `${'x'.repeat(4095)}😀${'x'.repeat(9000)}`, `${common.slice(0, 8192)}`, `${common}a${'z'.repeat(5000)}`];
    const asStrings = [...texts].sort();
    for (let round = 0; round < 3; round++) {
      const shuffled = [...texts].sort(() => (Math.random() < 0.5 ? -1 : 1));
      expect(shuffled.map((text) => ({ units: unitsOf(text) })).sort(compareCanonical).map(({ units }) => String.fromCharCode(...units))).toEqual(asStrings);
    }
    for (const a of texts) for (const b of texts) expect(Math.sign(compareCanonical({ units: unitsOf(a) }, b))).toBe(a < b ? -1 : a > b ? 1 : 0);
  });
});
