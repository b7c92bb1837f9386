import { deserialize, serialize } from 'node:v8';
import { runToEnd, type StageRun } from './pipeline.js';
import { arrivedPositions, packedPositions, type PositionTable } from './source.js';
import { unitsOf, type UnitsText } from './text-units.js';
import { valueFromPieces, valueInPieces, type Shape } from './value-pieces.js';
import type { CheckedDocument, CheckedFile, CheckedItem, DocumentContent, ItemList } from './stages/schema.js';

/**
 * A checked file in the form it crosses threads in. Structured cloning copies
 * every object of every item on arrival, in one go, which for a file of a few
 * hundred rules would hold the receiving event loop for milliseconds; here each
 * item's bytes are copied as one block and decoded only when a stage reads it.
 * An item too large to decode in one step (a role of 100,000 permissions) is sent in
 * pieces (value-pieces.ts) and decoded on arrival, piece by piece, by decodeLargeItems.
 */
export interface EncodedFile {
  readonly file: string;
  readonly diagnostics: CheckedFile['diagnostics'];
  readonly documents: readonly EncodedDocument[];
}

interface EncodedDocument extends Omit<CheckedDocument, 'content' | 'canonical'> {
  /** The canonical text as code units, transferred (text-units.ts). */
  readonly canonical: UnitsText;
  readonly content: (Omit<DocumentContent, 'items'> & { readonly items: EncodedItems }) | null;
}

interface EncodedItems {
  readonly bytes: Uint8Array;
  /** Item i is bytes[offsets[i], offsets[i + 1]). */
  readonly offsets: Uint32Array;
  /** The items sent in pieces: their index, and where each part starts in bytes (its head first, then its pieces). */
  readonly large: readonly LargeItem[];
}

interface LargeItem {
  readonly index: number;
  /** Where each part of the item starts in bytes: the shape its pieces fill, then the pieces. */
  readonly starts: Uint32Array;
  /**
   * Its positions, packed into typed arrays that are transferred, not copied: tens of
   * megabytes for a role of 100,000 permissions, which decoded from bytes took a copy
   * (and the collection that much new memory sets off) on the deciding thread.
   */
  readonly positions: PositionTable;
}

function encodeItems(items: ItemList<CheckedItem<unknown>>): EncodedItems {
  const parts: Uint8Array[] = [];
  const offsets = new Uint32Array(items.length + 1);
  const large: LargeItem[] = [];
  let size = 0;
  for (let i = 0; i < items.length; i++) {
    const item = items.at(i)!;
    const positions = packedPositions(item.positions);
    const inPieces = valueInPieces(item.checked);
    if (inPieces === null) {
      const part = serialize({ checked: item.checked, positions });
      parts.push(part);
      size += part.length;
    } else {
      const itemParts = [serialize(inPieces.shape), ...inPieces.pieces];
      const starts = new Uint32Array(itemParts.length);
      itemParts.forEach((part, k) => {
        starts[k] = size;
        parts.push(part);
        size += part.length;
      });
      large.push({ index: i, starts, positions });
    }
    offsets[i + 1] = size;
  }
  // A buffer of its own (never node's shared pool), since it is transferred.
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return { bytes, offsets, large };
}

/** The file as bytes and small tables; `transfer` lists the buffers to move rather than copy. */
export function encodeCheckedFile(file: CheckedFile): { encoded: EncodedFile; transfer: ArrayBuffer[] } {
  const transfer = new Set<ArrayBuffer>();
  // Only a view that is its whole buffer is moved (each once): a view into a larger buffer (a shared pool's) is copied.
  const move = (view: ArrayBufferView): void => {
    if (view.byteOffset === 0 && view.byteLength === view.buffer.byteLength && view.buffer instanceof ArrayBuffer) transfer.add(view.buffer);
  };
  const documents = file.documents.map((document): EncodedDocument => {
    const canonical = typeof document.canonical === 'string' ? { units: unitsOf(document.canonical) } : document.canonical;
    move(canonical.units);
    if (document.content === null) return { ...document, canonical, content: null };
    const items = encodeItems(document.content.items);
    move(items.bytes);
    move(items.offsets);
    for (const { positions } of items.large) {
      for (const packed of [positions.packed?.nodes, positions.packed?.keys]) {
        if (packed === undefined) continue;
        move(packed.paths);
        move(packed.ends);
        move(packed.values);
      }
    }
    return { ...document, canonical, content: { ...document.content, items } };
  });
  return { encoded: { file: file.file, diagnostics: file.diagnostics, documents }, transfer: [...transfer] };
}

/**
 * Items decoded on demand; the last one read is kept, since a stage reads an item a
 * few times in a row. Items sent in pieces are decoded once, by decodeLarge, and kept
 * decoded for as long as their file is (a later reload that reads one again must not
 * decode it in one go).
 */
class DecodedOnDemand<T> implements ItemList<T> {
  private lastIndex = -1;
  private last: T | undefined;
  private readonly largeByIndex: ReadonlyMap<number, LargeItem>;
  private readonly decodedLarge = new Map<number, T>();

  constructor(private readonly items: EncodedItems) {
    this.largeByIndex = new Map(items.large.map((large) => [large.index, large]));
  }

  /** Decodes the items sent in pieces that are not decoded yet, pausing between pieces. */
  *decodeLarge(): StageRun {
    for (const large of this.items.large) {
      if (this.decodedLarge.has(large.index)) continue;
      this.decodedLarge.set(large.index, (yield* this.largeItem(large)) as T);
    }
  }

  private *largeItem({ index, starts, positions }: LargeItem): StageRun<CheckedItem<unknown>> {
    const { bytes, offsets } = this.items;
    const end = (k: number): number => (k + 1 < starts.length ? starts[k + 1]! : offsets[index + 1]!);
    const shape = deserialize(bytes.subarray(starts[0], end(0))) as Shape;
    const pieces: Uint8Array[] = [];
    for (let k = 1; k < starts.length; k++) pieces.push(bytes.subarray(starts[k], end(k)));
    const checked = (yield* valueFromPieces({ shape, pieces })) as CheckedItem<unknown>['checked'];
    return { checked, positions: arrivedPositions(positions) };
  }

  get length(): number {
    return this.items.offsets.length - 1;
  }

  at(index: number): T | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return undefined;
    const large = this.decodedLarge.get(index);
    if (large !== undefined) return large;
    if (index !== this.lastIndex) {
      const inPieces = this.largeByIndex.get(index);
      if (inPieces !== undefined) {
        // Not decoded on arrival (decodeLargeItems): decoded now, in one go, and kept.
        const item = runToEnd(this.largeItem(inPieces)) as T;
        this.decodedLarge.set(index, item);
        return item;
      }
      const { bytes, offsets } = this.items;
      const item = deserialize(bytes.subarray(offsets[index], offsets[index + 1])) as CheckedItem<unknown>;
      this.last = { checked: item.checked, positions: arrivedPositions(item.positions) } as T;
      this.lastIndex = index;
    }
    return this.last;
  }
}

export function decodeCheckedFile(encoded: EncodedFile): CheckedFile {
  const documents = encoded.documents.map((document): CheckedDocument => {
    if (document.content === null) return { ...document, content: null };
    return { ...document, content: { ...document.content, items: new DecodedOnDemand(document.content.items) } as DocumentContent };
  });
  return { file: encoded.file, diagnostics: encoded.diagnostics, documents };
}

/** Decodes the items of `file` sent in pieces, one piece per step (a server's reader calls it as files arrive). */
export function* decodeLargeItems(file: CheckedFile): StageRun {
  for (const document of file.documents) {
    const items = document.content?.items;
    if (items instanceof DecodedOnDemand) yield* items.decodeLarge();
  }
}
