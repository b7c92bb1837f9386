import { createHash, randomBytes } from 'node:crypto';

/**
 * An API key is `vk_<id>_<secret>`: the id (80 random bits) finds the row, the
 * secret (256 random bits) proves possession. Both are lower-case base32, so a
 * key survives copy-paste, URLs and a double-click selection, and the `vk_`
 * prefix lets secret scanners recognise a leaked one.
 */
export const API_KEY_PREFIX = 'vk_';
const ID_BYTES = 10;
const SECRET_BYTES = 32;
const ID_CHARS = 16;
const SECRET_CHARS = 52;
const KEY_PATTERN = new RegExp(`^${API_KEY_PREFIX}([a-z2-7]{${ID_CHARS}})_([a-z2-7]{${SECRET_CHARS}})$`);
export const KEY_ID_PATTERN = new RegExp(`^[a-z2-7]{${ID_CHARS}}$`);

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

export function newKeyId(): string {
  return base32(randomBytes(ID_BYTES));
}

/** A fresh key for `id`. */
export function newApiKey(id: string = newKeyId()): { id: string; key: string } {
  return { id, key: `${API_KEY_PREFIX}${id}_${base32(randomBytes(SECRET_BYTES))}` };
}

/** The id of a well-formed key, or null. */
export function parseApiKey(key: string): { id: string } | null {
  const match = KEY_PATTERN.exec(key);
  return match ? { id: match[1]! } : null;
}

/**
 * What is stored instead of the key: SHA-256 of the whole key (id included, so
 * a hash cannot be moved to another row).
 *
 * Why not bcrypt/scrypt/argon2: those slow hashes exist to make guessing a
 * *low-entropy* secret (a password) from a stolen hash expensive. Our secrets
 * are 256 random bits: no amount of guessing finds one, with or without a slow
 * hash, while a slow hash would add ~50-100 ms of CPU to every authenticated
 * request on the decision path. A fast cryptographic hash is the standard
 * choice for random tokens (GitHub, Stripe, and the like do the same).
 */
export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}
