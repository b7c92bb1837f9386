import { deserialize, serialize } from 'node:v8';
import { arrivedPositions, packedPositions } from './source.js';
import type { CheckedDocument, CheckedFile, CheckedItem, DocumentContent, ItemList } from './stages/schema.js';

/**
 * A checked file in the form it crosses threads in. Structured cloning copies
 * every object of every item on arrival, in one go, which for a file of a few
 * hundred rules would hold the receiving event loop for milliseconds; here each
 * item's bytes are copied as one block and decoded only when a stage reads it.
 */
export interface EncodedFile {
  readonly file: string;
  readonly diagnostics: CheckedFile['diagnostics'];
  readonly documents: readonly EncodedDocument[];
}

interface EncodedDocument extends Omit<CheckedDocument, 'content'> {
  readonly content: (Omit<DocumentContent, 'items'> & { readonly items: EncodedItems }) | null;
}

interface EncodedItems {
  readonly bytes: Uint8Array;
  /** Item i is bytes[offsets[i], offsets[i + 1]). */
  readonly offsets: Uint32Array;
}

function encodeItems(items: ItemList<CheckedItem<unknown>>): EncodedItems {
  const parts: Buffer[] = [];
  const offsets = new Uint32Array(items.length + 1);
  let size = 0;
  for (let i = 0; i < items.length; i++) {
    const item = items.at(i)!;
    const part = serialize({ checked: item.checked, positions: packedPositions(item.positions) });
    parts.push(part);
    size += part.length;
    offsets[i + 1] = size;
  }
  // A buffer of its own (never node's shared pool), since it is transferred.
  const bytes = new Uint8Array(size);
  parts.forEach((part, i) => bytes.set(part, offsets[i]));
  return { bytes, offsets };
}

/** The file as bytes and small tables; `transfer` lists the buffers to move rather than copy. */
export function encodeCheckedFile(file: CheckedFile): { encoded: EncodedFile; transfer: ArrayBuffer[] } {
  const transfer: ArrayBuffer[] = [];
  const documents = file.documents.map((document): EncodedDocument => {
    if (document.content === null) return { ...document, content: null };
    const items = encodeItems(document.content.items);
    transfer.push(items.bytes.buffer as ArrayBuffer, items.offsets.buffer as ArrayBuffer);
    return { ...document, content: { ...document.content, items } };
  });
  return { encoded: { file: file.file, diagnostics: file.diagnostics, documents }, transfer };
}

/** Items decoded on demand; the last one read is kept, since a stage reads an item a few times in a row. */
class DecodedOnDemand<T> implements ItemList<T> {
  private lastIndex = -1;
  private last: T | undefined;

  constructor(private readonly items: EncodedItems) {}

  get length(): number {
    return this.items.offsets.length - 1;
  }

  at(index: number): T | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return undefined;
    if (index !== this.lastIndex) {
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
