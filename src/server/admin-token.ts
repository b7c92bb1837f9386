// The admin token, read from its file at start and again whenever the file changes,
// so that rotating a leaked token, or removing the file, takes effect at once rather
// than at the next restart. A file that cannot be used admits no token at all.

import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { open } from 'node:fs/promises';
import { VerdictError, messageOf } from '../errors.js';

export const MIN_TOKEN_LENGTH = 32;
/** A token file larger than this is not read: a token is a line of hex, not a document. */
const MAX_TOKEN_FILE_BYTES = 4096;
/** How often the file is looked at between Admin calls (each call also looks first), so an open stream ends soon after a rotation. */
export const TOKEN_CHECK_MS = 1_000;

/** What the file holds now: the token's digest, or why no token is accepted. */
export type TokenState = { readonly digest: Buffer } | { readonly problem: string };

/** A change of the token: replaced, or no longer usable (`problem`). */
export interface TokenChange {
  readonly problem: string | null;
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** What identifies one version of the file: a rewrite or a rename over it changes it. */
function stampOf(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

function problemOfText(path: string, text: string): { token: string } | { problem: string } {
  const token = text.trim();
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    return { problem: `${path} must hold one token of at least ${MIN_TOKEN_LENGTH} characters without spaces (e.g. openssl rand -hex 32 > ${path})` };
  }
  return { token };
}

const unreadable = (path: string, error: unknown): string => `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`;

export class AdminTokenFile {
  private state: TokenState;
  private stamp: string;
  private checking: Promise<void> | null = null;
  private readonly listeners = new Set<(change: TokenChange) => void>();
  private readonly timer: NodeJS.Timeout;

  private constructor(
    readonly path: string,
    digest: Buffer,
    stamp: string,
  ) {
    this.state = { digest };
    this.stamp = stamp;
    this.timer = setInterval(() => void this.check(), TOKEN_CHECK_MS);
    this.timer.unref();
  }

  /**
   * Reads the file once, at start: a server does not start with a token file it cannot use.
   * @throws VerdictError CONFIG_INVALID when the file cannot be read or holds no usable token
   */
  static open(path: string): AdminTokenFile {
    let read: { text: string; stamp: string } | { problem: string };
    try {
      read = readTokenFileSync(path);
    } catch (error) {
      throw new VerdictError('CONFIG_INVALID', `admin.tokenFile: ${unreadable(path, error)}`, { cause: error });
    }
    if ('problem' in read) throw new VerdictError('CONFIG_INVALID', `admin.tokenFile: ${read.problem}`);
    const token = problemOfText(path, read.text);
    if ('problem' in token) throw new VerdictError('CONFIG_INVALID', `admin.tokenFile: ${token.problem}`);
    return new AdminTokenFile(path, sha256(token.token), read.stamp);
  }

  current(): TokenState {
    return this.state;
  }

  /** Looks at the file, and reads it again if it changed; one look at a time, shared by every caller meanwhile. */
  check(): Promise<void> {
    this.checking ??= this.reread().finally(() => (this.checking = null));
    return this.checking;
  }

  /** Calls `listener` whenever the token is replaced or stops being usable; returns the way to stop. */
  onChange(listener: (change: TokenChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    clearInterval(this.timer);
    this.listeners.clear();
  }

  private async reread(): Promise<void> {
    let read: { text: string; stamp: string } | { problem: string } | 'unchanged';
    try {
      read = await readTokenFile(this.path, this.stamp);
    } catch (error) {
      return this.settle({ problem: unreadable(this.path, error) }, 'unreadable');
    }
    if (read === 'unchanged') return;
    if ('problem' in read) return this.settle(read, 'unusable');
    const token = problemOfText(this.path, read.text);
    this.settle('problem' in token ? token : { digest: sha256(token.token) }, read.stamp);
  }

  private settle(next: TokenState, stamp: string): void {
    this.stamp = stamp;
    const before = this.state;
    const same = 'digest' in before && 'digest' in next ? before.digest.equals(next.digest) : 'problem' in before && 'problem' in next && before.problem === next.problem;
    if (same) return;
    this.state = next;
    const change: TokenChange = { problem: 'problem' in next ? next.problem : null };
    for (const listener of [...this.listeners]) listener(change);
  }
}

// The file is opened without blocking and checked through its descriptor: a FIFO or a
// device put in its place (or swapped in between a look and a read) is refused, never
// waited on or read without end, and no more than a token's worth of bytes is read.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

function notAToken(path: string, stats: BigIntStats): { problem: string } | null {
  if (!stats.isFile()) return { problem: `${path} is not a regular file` };
  if (stats.size > BigInt(MAX_TOKEN_FILE_BYTES)) return { problem: `${path} is ${stats.size} bytes; a token file holds one token (at most ${MAX_TOKEN_FILE_BYTES} bytes)` };
  return null;
}

function readTokenFileSync(path: string): { text: string; stamp: string } | { problem: string } {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const stats = fstatSync(fd, { bigint: true });
    const problem = notAToken(path, stats);
    if (problem !== null) return problem;
    const buffer = Buffer.alloc(MAX_TOKEN_FILE_BYTES);
    const length = readSync(fd, buffer, 0, MAX_TOKEN_FILE_BYTES, 0);
    return { text: buffer.toString('utf8', 0, length), stamp: stampOf(stats) };
  } finally {
    closeSync(fd);
  }
}

/** The file's text, or 'unchanged' when it is the version `known` names. */
async function readTokenFile(path: string, known: string): Promise<{ text: string; stamp: string } | { problem: string } | 'unchanged'> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const stats = await handle.stat({ bigint: true });
    const stamp = stampOf(stats);
    if (stamp === known) return 'unchanged';
    const problem = notAToken(path, stats);
    if (problem !== null) return problem;
    const buffer = Buffer.alloc(MAX_TOKEN_FILE_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, MAX_TOKEN_FILE_BYTES, 0);
    return { text: buffer.toString('utf8', 0, bytesRead), stamp };
  } finally {
    await handle.close();
  }
}
