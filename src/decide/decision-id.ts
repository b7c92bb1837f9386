// Decision ids: UUIDv7, so the log's ids sort by time, from a pool of random bytes.

import { randomFillSync } from 'node:crypto';

// Random bytes are drawn in blocks so an id costs no system call of its own.
const POOL_IDS = 512;
const pool = Buffer.alloc(POOL_IDS * 10);
let poolOffset = pool.length;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Ids sort by
 * time, which keeps the decision log's unique index append-friendly.
 */
export function newDecisionId(nowMs: number = Date.now()): string {
  if (poolOffset + 10 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const r = poolOffset;
  poolOffset += 10;
  const hi = Math.floor(nowMs / 0x1000000);
  const lo = nowMs % 0x1000000;
  const b = (i: number): string => HEX[pool[r + i]!]!;
  const time =
    HEX[(hi >>> 16) & 0xff]! + HEX[(hi >>> 8) & 0xff]! + HEX[hi & 0xff]! + HEX[(lo >>> 16) & 0xff]! + HEX[(lo >>> 8) & 0xff]! + HEX[lo & 0xff]!;
  const version = HEX[0x70 | (pool[r]! & 0x0f)]! + b(1);
  const variant = HEX[0x80 | (pool[r + 2]! & 0x3f)]! + b(3);
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-${version}-${variant}-${b(4)}${b(5)}${b(6)}${b(7)}${b(8)}${b(9)}`;
}
