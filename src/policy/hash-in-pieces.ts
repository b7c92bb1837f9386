import { createHash, type Hash } from 'node:crypto';
import { endianness } from 'node:os';
import type { StageRun } from './pipeline.js';

/**
 * Bytes (or UTF-16 units of text) hashed between pauses. Loads and the content poll
 * hash every policy file, and a load hashes every document's canonical text for the
 * version, on the thread that answers checks: 6 MB took 5.2–5.7 ms to hash in one go,
 * and a 7 MB directory's canonical text made slices of 9.3–10.4 ms.
 */
export const HASH_PIECE_SIZE = 256 * 1024;

/** The SHA-256 (hex) of a policy file's bytes: what names the file's version in a load's fingerprint. */
export function* fileHash(bytes: Uint8Array): StageRun<string> {
  const hash = createHash('sha256');
  yield* hashInPieces(hash, bytes);
  return hash.digest('hex');
}

/** Text as its UTF-16 code units, the form a long text crosses threads in (a string is copied on arrival). */
export type TextUnits = Uint16Array;

/** The UTF-16 code units of `text`, in a buffer of their own (so it can be transferred). */
export function unitsOf(text: string): TextUnits {
  const units = new Uint16Array(text.length);
  for (let i = 0; i < text.length; i++) units[i] = text.charCodeAt(i);
  return units;
}

/** Code units read into a string a few thousand at a time where they cannot be read as UTF-16LE bytes (a call's arguments are bounded). */
const UNITS_PER_CALL = 4096;
const LITTLE_ENDIAN = endianness() === 'LE';

function textOf(units: TextUnits): string {
  // A typed array holds its units in the machine's byte order: on a little-endian machine, UTF-16LE bytes (read at memory speed).
  if (LITTLE_ENDIAN) return Buffer.from(units.buffer, units.byteOffset, units.byteLength).toString('utf16le');
  let text = '';
  for (let at = 0; at < units.length; at += UNITS_PER_CALL) text += String.fromCharCode(...units.subarray(at, at + UNITS_PER_CALL));
  return text;
}

/**
 * Feeds `data` to `hash` a piece at a time, pausing between pieces when run in slices.
 * The hash is the one a single update gives: text (a string or its code units, hashed
 * as UTF-8 either way) is cut only between code points (a surrogate pair split in two
 * would be hashed as two U+FFFD).
 */
export function* hashInPieces(hash: Hash, data: Uint8Array | string | { readonly units: TextUnits }): StageRun<void> {
  const length = typeof data === 'string' || data instanceof Uint8Array ? data.length : data.units.length;
  for (let at = 0; at < length; ) {
    if (at > 0) yield;
    let end = Math.min(at + HASH_PIECE_SIZE, length);
    if (typeof data === 'string') {
      if (end < length && isHighSurrogate(data.charCodeAt(end - 1))) end++;
      hash.update(data.slice(at, end));
    } else if (data instanceof Uint8Array) {
      hash.update(data.subarray(at, end));
    } else {
      if (end < length && isHighSurrogate(data.units[end - 1]!)) end++;
      hash.update(textOf(data.units.subarray(at, end)));
    }
    at = end;
  }
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}
