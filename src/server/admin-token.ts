// The admin token, read from its file at start and again before each call that
// presents a token (and every second besides), so that rotating a leaked token, or
// removing the file, takes effect from the next call rather than at the next restart.
// A file that cannot be used admits no token at all.

import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { open } from 'node:fs/promises';
import { VerdictError, messageOf } from '../errors.js';

export const MIN_TOKEN_LENGTH = 32;
/** A token file larger than this is not read: a token is a line of hex, not a document. */
const MAX_TOKEN_FILE_BYTES = 4096;
/** How often the file is read between Admin calls, so an open stream ends soon after a rotation. */
const TOKEN_CHECK_MS = 1_000;

/** What the file holds now: the token's digest, or why no token is accepted. */
export type TokenState = { readonly digest: Buffer } | { readonly problem: string };

/** A change of the token: replaced, or no longer usable (`problem`, for the server's log only). */
export interface TokenChange {
  readonly problem: string | null;
  /** The file's mode when group or others may read it (a new file written under umask 022), else null. */
  readonly looseMode: string | null;
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

const unreadable = (path: string, error: unknown): string => `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`;

/** What one read of the file gave: a usable token (with the file's mode) or why not. */
type FileRead = { readonly digest: Buffer; readonly looseMode: string | null } | { readonly problem: string };

function tokenOf(path: string, text: string, stats: BigIntStats): FileRead {
  const token = text.trim();
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    return { problem: `${path} must hold one token of at least ${MIN_TOKEN_LENGTH} characters without spaces (e.g. openssl rand -hex 32 > ${path})` };
  }
  const mode = Number(stats.mode) & 0o777;
  return { digest: sha256(token), looseMode: (mode & 0o077) === 0 ? null : `0${mode.toString(8)}` };
}

export class AdminTokenFile {
  private state: TokenState;
  /** Counts the changes of `state`: a stream admitted under one generation ends at the next. */
  private changes = 0;
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  private readonly listeners = new Set<(change: TokenChange) => void>();
  private readonly timer: NodeJS.Timeout;

  private constructor(
    readonly path: string,
    digest: Buffer,
    /** The file's mode at start when group or others may read it, else null (for the start-up warning). */
    readonly looseModeAtStart: string | null,
  ) {
    this.state = { digest };
    this.timer = setInterval(() => void this.check(), TOKEN_CHECK_MS);
    this.timer.unref();
  }

  /**
   * Reads the file once, at start: a server does not start with a token file it cannot use.
   * @throws VerdictError CONFIG_INVALID when the file cannot be read or holds no usable token
   */
  static open(path: string): AdminTokenFile {
    let read: FileRead;
    try {
      read = readTokenFileSync(path);
    } catch (error) {
      throw new VerdictError('CONFIG_INVALID', `admin.tokenFile: ${unreadable(path, error)}`, { cause: error });
    }
    if ('problem' in read) throw new VerdictError('CONFIG_INVALID', `admin.tokenFile: ${read.problem}`);
    return new AdminTokenFile(path, read.digest, read.looseMode);
  }

  current(): TokenState {
    return this.state;
  }

  /** How many times the token has changed: what a stream notes when it is admitted. */
  get generation(): number {
    return this.changes;
  }

  /**
   * Reads the file again. A read already running may have opened the file before the
   * caller's rotation, so the caller gets one that starts after it (shared by every
   * caller meanwhile): a call made after the rename never meets the old token.
   */
  check(): Promise<void> {
    if (this.running === null) return this.start();
    this.queued ??= this.running.then(() => {
      this.queued = null;
      return this.start();
    });
    return this.queued;
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

  private start(): Promise<void> {
    const run = this.reread().finally(() => {
      if (this.running === run) this.running = null;
    });
    this.running = run;
    return run;
  }

  private async reread(): Promise<void> {
    let read: FileRead;
    try {
      read = await readTokenFile(this.path);
    } catch (error) {
      read = { problem: unreadable(this.path, error) };
    }
    this.settle(read);
  }

  private settle(read: FileRead): void {
    const before = this.state;
    const same = 'digest' in before && 'digest' in read ? before.digest.equals(read.digest) : 'problem' in before && 'problem' in read && before.problem === read.problem;
    if (same) return;
    this.state = 'digest' in read ? { digest: read.digest } : { problem: read.problem };
    this.changes += 1;
    const change: TokenChange = { problem: 'problem' in read ? read.problem : null, looseMode: 'digest' in read ? read.looseMode : null };
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch {
        // One listener failing (a stream already gone) must not keep the others from hearing of the change.
      }
    }
  }
}

// The file is opened without blocking and checked through its descriptor: a FIFO or a
// device put in its place (or swapped in between a look and a read) is refused, never
// waited on or read without end, and no more than a token's worth of bytes is read.
// It is read whole each time (at most 4 KiB) rather than compared by its dates, so a
// rewrite within one tick of a coarse clock is not missed.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

function notAToken(path: string, stats: BigIntStats): { problem: string } | null {
  if (!stats.isFile()) return { problem: `${path} is not a regular file` };
  if (stats.size > BigInt(MAX_TOKEN_FILE_BYTES)) return { problem: `${path} is ${stats.size} bytes; a token file holds one token (at most ${MAX_TOKEN_FILE_BYTES} bytes)` };
  return null;
}

function readTokenFileSync(path: string): FileRead {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const stats = fstatSync(fd, { bigint: true });
    const problem = notAToken(path, stats);
    if (problem !== null) return problem;
    const buffer = Buffer.alloc(MAX_TOKEN_FILE_BYTES);
    const length = readSync(fd, buffer, 0, MAX_TOKEN_FILE_BYTES, 0);
    return tokenOf(path, buffer.toString('utf8', 0, length), stats);
  } finally {
    closeSync(fd);
  }
}

async function readTokenFile(path: string): Promise<FileRead> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const stats = await handle.stat({ bigint: true });
    const problem = notAToken(path, stats);
    if (problem !== null) return problem;
    const buffer = Buffer.alloc(MAX_TOKEN_FILE_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, MAX_TOKEN_FILE_BYTES, 0);
    return tokenOf(path, buffer.toString('utf8', 0, bytesRead), stats);
  } finally {
    await handle.close();
  }
}
