// Decision ids: UUIDv7, so the log's ids sort by time, from a pool of random bytes.

import { randomFillSync } from 'node:crypto';

// Random bytes are drawn in blocks so an id costs no system call of its own.
const POOL_IDS = 512;
const RANDOM_BYTES_PER_ID = 10;
const pool = Buffer.alloc(POOL_IDS * RANDOM_BYTES_PER_ID);
let poolOffset = pool.length;

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/**
 * The id's text is written into one buffer and read out as one flat string: built
 * by joining two-digit pieces, each id left a few dozen short strings behind (about
 * 750 bytes a check for the young generation to collect).
 */
const text = Buffer.from('00000000-0000-7000-8000-000000000000', 'latin1');
/** Where each of the UUID's 16 bytes writes its two hex digits in `text`. */
const DIGITS_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34] as const;

function put(byteIndex: number, value: number): void {
  const at = DIGITS_AT[byteIndex]!;
  text[at] = HEX_DIGITS[value >>> 4]!;
  text[at + 1] = HEX_DIGITS[value & 0x0f]!;
}

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Ids sort by
 * time, which keeps the decision log's unique index append-friendly.
 */
export function newDecisionId(nowMs: number = Date.now()): string {
  if (poolOffset + RANDOM_BYTES_PER_ID > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const r = poolOffset;
  poolOffset += RANDOM_BYTES_PER_ID;
  // 48 bits do not fit JavaScript's 32-bit integer operators: two 24-bit halves.
  const hi = Math.floor(nowMs / 0x1000000);
  const lo = nowMs % 0x1000000;
  put(0, (hi >>> 16) & 0xff);
  put(1, (hi >>> 8) & 0xff);
  put(2, hi & 0xff);
  put(3, (lo >>> 16) & 0xff);
  put(4, (lo >>> 8) & 0xff);
  put(5, lo & 0xff);
  put(6, 0x70 | (pool[r]! & 0x0f));
  put(7, pool[r + 1]!);
  put(8, 0x80 | (pool[r + 2]! & 0x3f));
  put(9, pool[r + 3]!);
  for (let i = 4; i < RANDOM_BYTES_PER_ID; i++) put(6 + i, pool[r + i]!);
  return text.toString('latin1');
}
