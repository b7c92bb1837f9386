import type { AttributeCut } from './once-fields.js';

// Attributes the walk found over a request limit (once-fields.ts) are cut out of the
// message before it is decoded, so that decoding costs no more than the limits allow,
// and the rest of the request (the principal, the action, a batch's other items) is
// still read, decided and recorded as it would have been. What held them is refused
// with the limit's words (convert/verdict.ts reads the cuts back from the message).

/**
 * What stands in for cut attributes: a Struct holding one value with no kind set, which
 * the conversion refuses on its own ("no value set"), so that a cut is refused even if
 * the words that name its limit were lost on the way.
 */
const STAND_IN = Buffer.from([0x0a, 0x04, 0x0a, 0x00, 0x12, 0x00]);

/** The cuts made in a decoded message, read by the conversion. */
const CUTS = Symbol('verdict.attributeCuts');

/**
 * `bytes` with each cut's attributes replaced by the stand-in and the lengths of the
 * messages holding them written anew; null when the cuts' frames do not nest as the
 * walk leaves them (then nothing may be decoded: the caller refuses the message whole).
 */
export function cutAttributes(bytes: Buffer, cuts: readonly AttributeCut[]): Buffer | null {
  // Each cut lies in a top-level field of its own, in order: the message is the bytes between those
  // fields and each field rebuilt, in one pass (a batch may have hundreds of cuts).
  const parts: Buffer[] = [];
  let copiedTo = 0;
  for (const cut of cuts) {
    const frames = cut.frames;
    if (!nests(frames, bytes.length) || frames[0]! < copiedTo) return null;
    const content = cutContent(bytes, frames);
    parts.push(bytes.subarray(copiedTo, frames[0]!), varint(content.length), content);
    copiedTo = frames[2]!;
  }
  parts.push(bytes.subarray(copiedTo));
  return Buffer.concat(parts);
}

/** Whether each frame lies inside the one before it, after its length. */
function nests(frames: readonly number[], end: number): boolean {
  if (frames.length < 3 || frames.length % 3 !== 0) return false;
  let outerFrom = 0;
  let outerTo = end;
  for (let i = 0; i < frames.length; i += 3) {
    const lengthAt = frames[i]!;
    const from = frames[i + 1]!;
    const to = frames[i + 2]!;
    if (!(outerFrom <= lengthAt && lengthAt < from && from <= to && to <= outerTo)) return false;
    outerFrom = from;
    outerTo = to;
  }
  return true;
}

/** The new content of the top-level field of `frames`: the same bytes, the attributes at the bottom replaced by the stand-in and each length above them written anew. */
function cutContent(bytes: Buffer, frames: readonly number[]): Buffer {
  let content: Buffer = STAND_IN;
  for (let i = frames.length - 6; i >= 0; i -= 3) {
    const from = frames[i + 1]!;
    const to = frames[i + 2]!;
    const innerLengthAt = frames[i + 3]!;
    const innerTo = frames[i + 5]!;
    content = Buffer.concat([bytes.subarray(from, innerLengthAt), varint(content.length), content, bytes.subarray(innerTo, to)]);
  }
  return content;
}

function varint(value: number): Buffer {
  const out: number[] = [];
  let rest = value >>> 0;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
  return Buffer.from(out);
}

/** Marks a decoded message with the cuts made in its bytes. */
export function markCuts(message: unknown, cuts: readonly AttributeCut[]): void {
  if (message !== null && typeof message === 'object') Object.defineProperty(message, CUTS, { value: cuts });
}

/** The cuts made in a decoded message before it was decoded, or null. */
export function cutsOf(message: object): readonly AttributeCut[] | null {
  return (message as { [CUTS]?: readonly AttributeCut[] })[CUTS] ?? null;
}
