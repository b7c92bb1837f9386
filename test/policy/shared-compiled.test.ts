import { describe, expect, it } from 'vitest';
import { SharedCompiled } from '../../src/policy/shared-compiled.js';

// The cache behind shared conditions, matchers and lists: bounded by what it keeps, so
// a policy push that changes a large allow-list each time leaves no old copy alive.

describe('SharedCompiled', () => {
  it('compiles a text once and hands every later asker the same value', () => {
    const cache = new SharedCompiled<object>();
    let compiled = 0;
    const first = cache.get('a == b', () => ({ n: ++compiled }));
    expect(cache.get('a == b', () => ({ n: ++compiled }))).toBe(first);
    expect(compiled).toBe(1);
  });

  it('keeps no text longer than 1 KiB: a large allow-list changed on each push is compiled each time, never kept', () => {
    const cache = new SharedCompiled<object>();
    for (let push = 0; push < 50; push++) cache.get(JSON.stringify(Array.from({ length: 200 }, (_, i) => `user-${push}-${i}`)), () => ({}));
    expect(cache.size).toBe(0);
    const long = 'x'.repeat(1025);
    expect(cache.get(long, () => ({ n: 1 }))).not.toBe(cache.get(long, () => ({ n: 2 })));
  });

  it('starts over once the kept texts pass 4 MiB, however few entries that is', () => {
    const cache = new SharedCompiled<number>();
    const text = (i: number) => `${i}:`.padEnd(1000, 'k');
    for (let i = 0; i < 5000; i++) cache.get(text(i), () => i);
    // 5,000 texts of 1,000 characters: the cache has started over, keeping less than 4 MiB.
    expect(cache.size).toBeLessThan(4 * 1024 * 1024 / 1000 + 1);
    expect(cache.size).toBeGreaterThan(0);
  });
});
