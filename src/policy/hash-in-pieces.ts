import { createHash, type Hash } from 'node:crypto';
import type { StageRun } from './pipeline.js';
import { textOfUnits, type UnitsText } from './text-units.js';

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

/**
 * Feeds `data` to `hash` a piece at a time, pausing between pieces when run in slices.
 * The hash is the one a single update gives: text (a string or its code units, hashed
 * as UTF-8 either way) is cut only between code points (a surrogate pair split in two
 * would be hashed as two U+FFFD).
 */
export function* hashInPieces(hash: Hash, data: Uint8Array | string | UnitsText): StageRun<void> {
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
      hash.update(textOfUnits(data.units.subarray(at, end)));
    }
    at = end;
  }
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}
