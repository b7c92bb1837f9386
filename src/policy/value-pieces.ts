import { deserialize, serialize } from 'node:v8';
import type { StageRun } from './pipeline.js';

/**
 * A large value in pieces that each decode in a bounded step. A role of 100,000
 * permissions decoded as one block (with its positions) held the deciding thread for
 * 568–863 ms; cut into pieces of at most about NODES_PER_PIECE nodes, it decodes in
 * steps of a millisecond or so, with a pause between them.
 *
 * Containers (arrays and plain objects) holding more than the budget are split: their
 * shape (kind, size, and which children are split again) travels in a small head, and
 * their other children travel in order, batched into pieces of at most the budget
 * (and two: a child within the budget, with its key). The
 * decoder walks the shape in the same order, taking each child from the pieces.
 */

/** The nodes (containers and leaves) one piece holds, about: a thousandth of a second's decoding or so. */
export const NODES_PER_PIECE = 4096;

export type Shape =
  | { readonly kind: 'array'; readonly length: number; readonly split: readonly SplitChild[] }
  | { readonly kind: 'object'; readonly size: number; readonly split: readonly SplitChild[] };

/** A child split again: its position among its container's children, its key in an object, its own shape. */
interface SplitChild {
  readonly at: number;
  readonly key: string;
  readonly shape: Shape;
}

export interface ValuePieces {
  readonly shape: Shape;
  /** Serialized batches of children, in the order the shape is walked. */
  readonly pieces: readonly Uint8Array[];
}

function isPlainContainer(value: unknown): value is object {
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * The nodes under every container of `value`, or null when an object is reached twice
 * (shared or cyclic: pieces would copy it, so such a value is sent whole).
 */
function nodeCounts(value: unknown): Map<object, number> | null {
  const counts = new Map<object, number>();
  let shared = false;
  const count = (node: unknown): number => {
    if (shared || !isPlainContainer(node)) return 1;
    if (counts.has(node)) {
      shared = true;
      return 1;
    }
    counts.set(node, 0);
    let total = 1;
    if (Array.isArray(node)) for (const child of node) total += count(child);
    else for (const key of Object.keys(node)) total += 1 + count((node as Record<string, unknown>)[key]);
    counts.set(node, total);
    return total;
  };
  count(value);
  return shared ? null : counts;
}

/** `value` in pieces, or null when it is small enough (or shaped such) that one block serves. */
export function valueInPieces(value: unknown, budget = NODES_PER_PIECE): ValuePieces | null {
  if (!isPlainContainer(value)) return null;
  const counts = nodeCounts(value);
  if (counts === null || counts.get(value)! <= budget) return null;
  const pieces: Uint8Array[] = [];
  let batch: unknown[] = [];
  let batchNodes = 0;
  const flush = (): void => {
    if (batch.length === 0) return;
    pieces.push(serialize(batch));
    batch = [];
    batchNodes = 0;
  };
  const send = (child: unknown, nodes: number): void => {
    if (batchNodes + nodes > budget) flush();
    batch.push(child);
    batchNodes += nodes;
  };
  const large = (child: unknown): child is object => isPlainContainer(child) && counts.get(child)! > budget;
  const shapeOf = (container: object): Shape => {
    const split: SplitChild[] = [];
    if (Array.isArray(container)) {
      container.forEach((child: unknown, at) => {
        if (large(child)) split.push({ at, key: '', shape: shapeOf(child) });
        else send(child, isPlainContainer(child) ? counts.get(child)! : 1);
      });
      return { kind: 'array', length: container.length, split };
    }
    const keys = Object.keys(container);
    keys.forEach((key, at) => {
      const child = (container as Record<string, unknown>)[key];
      if (large(child)) split.push({ at, key, shape: shapeOf(child) });
      else send([key, child], 2 + (isPlainContainer(child) ? counts.get(child)! : 1));
    });
    return { kind: 'object', size: keys.length, split };
  };
  const shape = shapeOf(value);
  flush();
  return { shape, pieces };
}

/** Reads the children of a value in pieces, one piece at a time. */
class PieceReader {
  private next = 0;
  private batch: readonly unknown[] = [];
  private at = 0;

  constructor(private readonly pieces: readonly Uint8Array[]) {}

  get exhausted(): boolean {
    return this.at === this.batch.length;
  }

  /** Decodes the next piece: the bounded step between two pauses. */
  load(): void {
    const piece = this.pieces[this.next++];
    if (piece === undefined) throw new RangeError('a value in pieces ran out of pieces');
    this.batch = deserialize(piece) as unknown[];
    this.at = 0;
  }

  take(): unknown {
    return this.batch[this.at++];
  }
}

/** The value again, decoding one piece per step: pauses before each piece. */
export function* valueFromPieces(value: ValuePieces): StageRun<unknown> {
  const reader = new PieceReader(value.pieces);
  function* child(): StageRun<unknown> {
    if (reader.exhausted) {
      yield;
      reader.load();
    }
    return reader.take();
  }
  function* build(shape: Shape): StageRun<unknown> {
    let next = 0;
    if (shape.kind === 'array') {
      const out: unknown[] = [];
      for (let at = 0; at < shape.length; at++) {
        const split = shape.split[next];
        if (split !== undefined && split.at === at) {
          next++;
          out.push(yield* build(split.shape));
        } else out.push(reader.exhausted ? yield* child() : reader.take());
      }
      return out;
    }
    const out: Record<string, unknown> = {};
    for (let at = 0; at < shape.size; at++) {
      const split = shape.split[next];
      let key: string;
      let entry: unknown;
      if (split !== undefined && split.at === at) {
        next++;
        key = split.key;
        entry = yield* build(split.shape);
      } else {
        [key, entry] = (reader.exhausted ? yield* child() : reader.take()) as [string, unknown];
      }
      // defineProperty, not assignment: a key such as "__proto__" is an own property here as in the original.
      Object.defineProperty(out, key, { value: entry, writable: true, enumerable: true, configurable: true });
    }
    return out;
  }
  return yield* build(value.shape);
}
