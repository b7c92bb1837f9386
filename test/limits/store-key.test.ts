// storeKey names the budget a key spends. A key too long to hold is kept as its hash;
// no key a caller can send, whatever it holds (`#…`, NUL, \u0001), may name that
// hashed budget, nor another limit's. The real-server tests (server.test.ts,
// redis-server.test.ts) show the same over gRPC; this one tries the spellings directly.
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { storeKey } from '../../src/limits/index.js';
import { loadFiles, removeTempDirs } from '../helpers/policies.js';

const { policySet } = loadFiles({
  'limits.yaml': `kind: limits
limits:
  - { id: per-principal, rate: 60/minute }
  - { id: per-principal-resource, rate: 60/minute, key: principal+resource }
  - { id: per, rate: 60/minute }
`,
});
afterAll(removeTempDirs);

const [perPrincipal, perPrincipalResource, per] = policySet.limits;
const sha = (key: string): string => createHash('sha256').update(key).digest('base64url');

describe('storeKey', () => {
  it('keeps a hashed long key apart from every literal spelling of its hash', () => {
    const limit = perPrincipal!;
    const long = 'x'.repeat(300);
    const hashedBudget = storeKey(limit, long);
    // The spellings the old format (`<limit>\0#<hash>`) and the new one could be reached by.
    for (const literal of [`#${sha(long)}`, sha(long), `\u0001${sha(long)}`, `\u0000#${sha(long)}`, `\u0000${sha(long)}`]) {
      expect(storeKey(limit, literal), JSON.stringify(literal)).not.toBe(hashedBudget);
    }
  });

  it('gives distinct budgets to distinct keys on both sides of the length cut, and to distinct limits', () => {
    const keys = [
      '',
      'dana',
      '#',
      '\u0000',
      '\u0001',
      'a\u0000b',
      `per-principal\u0000dana`,
      // Around the 200-character cut: full key length = limit id + 1 + key.
      ...[185, 186, 187, 188, 199, 200, 201].flatMap((n) => ['k'.repeat(n), `#${'k'.repeat(n - 1)}`, `\u0000${'k'.repeat(n - 1)}`]),
    ];
    const seen = new Map<string, string>();
    for (const limit of [perPrincipal!, perPrincipalResource!, per!]) {
      for (const key of keys) {
        const budget = storeKey(limit, key);
        const where = `${limit.id} ${JSON.stringify(key.length > 20 ? `${key.slice(0, 8)}…(${key.length})` : key)}`;
        expect(seen.get(budget), where).toBeUndefined();
        seen.set(budget, where);
      }
    }
    // Every hashed form sits after \u0001, which no limit id can hold; every literal one after \0.
    for (const budget of seen.keys()) expect(budget).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_.:/-]*[\u0000\u0001]/);
  });
});
