// The admin token's file: one token, kept as its digest, read again as it changes
// (watched-file.ts), so that rotating a leaked token, or removing the file, takes
// effect from the next call rather than at the next restart.

import { createHash } from 'node:crypto';
import { WatchedFile, type FileKind } from './watched-file.js';

export const MIN_TOKEN_LENGTH = 32;

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The admin token file: the digest of the one token it holds. */
const TOKEN_FILE: FileKind<Buffer> = {
  configKey: 'admin.tokenFile',
  // A token is a line of hex, not a document.
  maxBytes: 4096,
  parse(path, text) {
    const token = text.trim();
    if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
      return { problem: `${path} must hold one token of at least ${MIN_TOKEN_LENGTH} characters without spaces (e.g. openssl rand -hex 32 > ${path})` };
    }
    return { value: sha256(token) };
  },
  same: (a, b) => a.equals(b),
};

export type AdminTokenFile = WatchedFile<Buffer>;

/**
 * Reads the admin token file at start.
 * @throws VerdictError CONFIG_INVALID when the file cannot be read or holds no usable token
 */
export function openAdminTokenFile(path: string): AdminTokenFile {
  return WatchedFile.open(path, TOKEN_FILE);
}
