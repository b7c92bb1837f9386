import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { repeatedMember } from '../../src/json-members.js';

describe('repeatedMember', () => {
  it.each([
    ['{"a": 1, "a": 2}', 'a'],
    ['{"subject": {"id": "x", "id": "y"}}', 'subject.id'],
    ['{"subject": {}, "\\u0073ubject": {}}', 'subject'],
    ['{"evaluations": [{"a": 1}, {"b": [1, {"c": 1, "c": 2}]}]}', 'evaluations[1].b[1].c'],
    ['{"k\\"": 1, "k\\"": 2}', '["k\\""]'],
    ['{"odd key": {"x": 1}, "odd key": 2}', '["odd key"]'],
  ])('finds the repeated member of %s at %s', (text, path) => {
    expect(repeatedMember(text)).toBe(path);
  });

  it.each([
    '{"a": {"b": 1}, "b": {"b": 1}}',
    '[{"x": 1}, {"x": 1}]',
    '{"a": "a, \\"b\\": {", "b": "}"}',
    '{"a": [], "b": {}, "c": [[], {}]}',
    `${'['.repeat(30_000)}${']'.repeat(30_000)}`,
  ])('finds none in %s', (text) => {
    expect(repeatedMember(text)).toBeNull();
  });

  it('finds none in what JSON.stringify writes, and the one written twice in any object of it', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.nat(), (value, pick) => {
        expect(repeatedMember(JSON.stringify(value))).toBeNull();
        const objects = countObjects(value);
        if (objects === 0) return;
        const doubled = { at: pick % objects, path: '' };
        const text = writeDoubling(value, doubled, '');
        expect(repeatedMember(text), text).toBe(doubled.path);
      }),
      { seed: 7, numRuns: 300 },
    );
  });
});

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const isObject = (value: unknown): value is Record<string, Json> => typeof value === 'object' && value !== null && !Array.isArray(value);
const segment = (key: string): string => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`);

/** Objects with at least one member, in the order they are written. */
function countObjects(value: unknown): number {
  if (Array.isArray(value)) return value.reduce<number>((n, item) => n + countObjects(item), 0);
  if (!isObject(value)) return 0;
  const own = Object.keys(value).length > 0 ? 1 : 0;
  return Object.values(value).reduce<number>((n, item) => n + countObjects(item), own);
}

/** JSON text of `value` with the first member of its `doubled.at`-th object (counted as countObjects does) written twice. */
function writeDoubling(value: unknown, doubled: { at: number; path: string }, path: string): string {
  if (Array.isArray(value)) return `[${value.map((item, i) => writeDoubling(item, doubled, `${path}[${i}]`)).join(',')}]`;
  if (!isObject(value)) return JSON.stringify(value);
  const keys = Object.keys(value);
  if (keys.length === 0) return '{}';
  const mine = doubled.at === 0;
  doubled.at -= 1;
  const members = keys.map((key) => `${JSON.stringify(key)}:${writeDoubling(value[key], doubled, path + segment(key))}`);
  if (mine) {
    doubled.path = (path + segment(keys[0]!)).replace(/^\./, '');
    members.push(`${JSON.stringify(keys[0])}:0`);
  }
  return `{${members.join(',')}}`;
}
