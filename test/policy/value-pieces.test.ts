import { deserialize } from 'node:v8';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runToEnd } from '../../src/policy/pipeline.js';
import { NODES_PER_PIECE, valueFromPieces, valueInPieces, type ValuePieces } from '../../src/policy/value-pieces.js';

// An item too large to decode in one step crosses from the policy load thread in
// pieces, decoded one per step on the thread that answers checks. What arrives must
// be the value sent, key order and odd keys included, and no step may decode more
// than about one piece's worth of nodes.

/** Nodes as the codec counts them: every container and leaf, and every key of an object. */
function nodes(value: unknown): number {
  if (value === null || typeof value !== 'object') return 1;
  if (Array.isArray(value)) return 1 + value.reduce((sum: number, item) => sum + nodes(item), 0);
  return 1 + Object.keys(value).reduce((sum, key) => sum + 1 + nodes((value as Record<string, unknown>)[key]), 0);
}

/** Decodes step by step: the value, the pauses, and the most nodes any one piece held. */
function decode(pieces: ValuePieces): { value: unknown; pauses: number; largestPiece: number } {
  const run = valueFromPieces(pieces);
  let pauses = 0;
  let next = run.next();
  for (; !next.done; next = run.next()) pauses++;
  const largestPiece = Math.max(...pieces.pieces.map((piece) => (deserialize(piece) as unknown[]).reduce((sum: number, child) => sum + nodes(child), 0)));
  return { value: next.value, pauses, largestPiece };
}

const permissions = (count: number): unknown[] => Array.from({ length: count }, (_, i) => ({ id: `p${i}`, actions: [`act-${i}`, 'read'], resources: ['model'], when: i % 3 === 0 ? null : `principal.id == "u${i}"` }));

describe('a large value in pieces', () => {
  it('leaves a value within one piece whole', () => {
    expect(valueInPieces({ spec: { name: 'small', permissions: permissions(10) } })).toBeNull();
    expect(valueInPieces('text')).toBeNull();
  });

  it('gives back a role of 20,000 permissions, decoded a piece per step', () => {
    const item = { spec: { name: 'huge', description: 'many grants', permissions: permissions(20_000) } };
    const pieces = valueInPieces(item);
    expect(pieces).not.toBeNull();
    const { value, pauses, largestPiece } = decode(pieces!);
    expect(value).toStrictEqual(item);
    expect(pauses).toBeGreaterThanOrEqual(nodes(item) / (2 * NODES_PER_PIECE));
    // A piece holds at most the budget (two more for an object's key and entry).
    expect(largestPiece).toBeLessThanOrEqual(NODES_PER_PIECE + 2);
  });

  it('gives back an object of 30,000 keys in their order, "__proto__" an own key as sent', () => {
    const attributes: Record<string, unknown> = {};
    for (let i = 0; i < 30_000; i++) attributes[`attr-${i}`] = i % 2 === 0 ? 'string' : { type: 'list', of: 'string' };
    Object.defineProperty(attributes, '__proto__', { value: 'string', enumerable: true, writable: true, configurable: true });
    attributes['7'] = 'int';
    const item = { raw: { for: 'principal', attributes }, spec: null };
    const { value } = decode(valueInPieces(item)!);
    expect(value).toStrictEqual(item);
    const arrived = (value as typeof item).raw.attributes;
    expect(Object.keys(arrived)).toEqual(Object.keys(attributes));
    expect(Object.getPrototypeOf(arrived)).toBe(Object.prototype);
    expect(Object.prototype.hasOwnProperty.call(arrived, '__proto__')).toBe(true);
  });

  it('splits again a child too large for one piece, at any depth', () => {
    const item = { spec: { lists: [permissions(3), { inner: permissions(9_000), after: 'x' }, 'tail', permissions(9_000)] } };
    const { value, largestPiece } = decode(valueInPieces(item)!);
    expect(value).toStrictEqual(item);
    expect(largestPiece).toBeLessThanOrEqual(NODES_PER_PIECE + 2);
  });

  it('puts children just within the budget one to a piece, not two', () => {
    // Each child is about three quarters of the budget: two would make a piece half again as large.
    const child = (k: number): unknown => ({ name: `c${k}`, permissions: permissions(Math.floor((0.75 * NODES_PER_PIECE) / 10)) });
    const item = { spec: { children: [child(0), child(1), child(2), child(3)] } };
    expect(nodes(child(0))).toBeGreaterThan(NODES_PER_PIECE / 2);
    expect(nodes(child(0))).toBeLessThan(NODES_PER_PIECE);
    const pieces = valueInPieces(item)!;
    const { value, largestPiece } = decode(pieces);
    expect(value).toStrictEqual(item);
    expect(largestPiece).toBeLessThanOrEqual(NODES_PER_PIECE + 2);
    expect(pieces.pieces.length).toBeGreaterThanOrEqual(4);
  });

  it('sends a value that shares or repeats an object whole (pieces would copy it)', () => {
    const shared = { id: 'x', actions: ['read'] };
    const list: unknown[] = Array.from({ length: 3_000 }, () => shared);
    expect(valueInPieces({ spec: { permissions: list } })).toBeNull();
    const cyclic: Record<string, unknown> = { spec: { permissions: permissions(3_000) } };
    (cyclic.spec as Record<string, unknown>).self = cyclic;
    expect(valueInPieces(cyclic)).toBeNull();
  });

  it('gives back any JSON-like value, with a small budget', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), fc.integer({ min: 1, max: 40 }), (json, budget) => {
        const pieces = valueInPieces(json, budget);
        if (pieces === null) return;
        expect(runToEnd(valueFromPieces(pieces))).toStrictEqual(json);
      }),
      { numRuns: 300 },
    );
  });
});
