import { endianness } from 'node:os';

/**
 * Text as its UTF-16 code units in a typed array: the form a long text crosses from
 * the policy load thread in. A string is copied when it arrives (a 6 MB canonical text
 * took 46–196 ms on the deciding thread); a typed array's buffer is transferred.
 * Compared unit by unit, such text orders exactly as its string would.
 */
export type TextUnits = Uint16Array;

/** A text that arrived as code units. */
export interface UnitsText {
  readonly units: TextUnits;
}

/** Writes the code units of `text` into `target` from `at`. */
export function writeUnits(target: TextUnits, at: number, text: string): void {
  for (let i = 0; i < text.length; i++) target[at + i] = text.charCodeAt(i);
}

/** The UTF-16 code units of `text`, in a buffer of their own (so it can be transferred). */
export function unitsOf(text: string): TextUnits {
  const units = new Uint16Array(text.length);
  writeUnits(units, 0, text);
  return units;
}

/**
 * The units `units[start, end)` against `text`, as strings compare: negative, zero or
 * positive. Unit by unit: a string's `<` compares code units too.
 */
export function compareUnitsWithText(units: TextUnits, start: number, end: number, text: string): number {
  const length = end - start;
  const shorter = Math.min(length, text.length);
  for (let k = 0; k < shorter; k++) {
    const difference = units[start + k]! - text.charCodeAt(k);
    if (difference !== 0) return difference;
  }
  return length - text.length;
}

/** Units compared a block at a time by their bytes before the block that differs is gone through unit by unit. */
const UNITS_PER_BLOCK = 4096;

/** Two texts of code units, as their strings compare. Long equal beginnings are skipped at memory speed. */
export function compareUnits(a: TextUnits, b: TextUnits): number {
  const shorter = Math.min(a.length, b.length);
  let from = 0;
  while (from + UNITS_PER_BLOCK <= shorter && bytesOf(a, from, UNITS_PER_BLOCK).equals(bytesOf(b, from, UNITS_PER_BLOCK))) from += UNITS_PER_BLOCK;
  for (let k = from; k < shorter; k++) {
    const difference = a[k]! - b[k]!;
    if (difference !== 0) return difference;
  }
  return a.length - b.length;
}

function bytesOf(units: TextUnits, from: number, count: number): Buffer {
  return Buffer.from(units.buffer, units.byteOffset + from * 2, count * 2);
}

/** Code units read into a string a few thousand at a time where they cannot be read as UTF-16LE bytes (a call's arguments are bounded). */
const UNITS_PER_CALL = 4096;
const LITTLE_ENDIAN = endianness() === 'LE';

/** The string of `units`. */
export function textOfUnits(units: TextUnits): string {
  // A typed array holds its units in the machine's byte order: on a little-endian machine, UTF-16LE bytes (read at memory speed).
  if (LITTLE_ENDIAN) return Buffer.from(units.buffer, units.byteOffset, units.byteLength).toString('utf16le');
  let text = '';
  for (let at = 0; at < units.length; at += UNITS_PER_CALL) text += String.fromCharCode(...units.subarray(at, at + UNITS_PER_CALL));
  return text;
}
