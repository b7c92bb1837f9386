// A small credential file an operator edits while verdict runs (the admin token, the
// list of admin certificates): read at start and again before each call that relies
// on it (and every second besides), so that a rotation or a revocation takes effect
// from the next call rather than at the next restart. A file that cannot be used
// admits nothing through it.

import { closeSync, constants, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { open } from 'node:fs/promises';
import { VerdictError, messageOf } from '../errors.js';

/** How often the file is read between calls, so an open stream ends soon after a change. */
const CHECK_MS = 1_000;

/** What the file holds now: its value, or why nothing is admitted through it. */
export type FileState<T> = { readonly value: T } | { readonly problem: string };

/** A change of the file's value: replaced, or no longer usable (`problem`, for the server's log only). */
export interface FileChange {
  readonly problem: string | null;
  /** The file's mode when group or others may read it (a new file written under umask 022), else null. */
  readonly looseMode: string | null;
}

/** What a file of one kind holds, and how it is read. */
export interface FileKind<T> {
  /** The configuration key naming the file, for the error that stops the start (`admin.tokenFile`). */
  readonly configKey: string;
  /** The largest file read: these files are short, never documents. */
  readonly maxBytes: number;
  /** The value of the file's text, or what is wrong with it (naming the path, and the line where it helps). */
  parse(path: string, text: string): FileState<T>;
  same(a: T, b: T): boolean;
}

const unreadable = (path: string, error: unknown): string => `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`;

/** What one read of the file gave: a usable value (with the file's mode) or why not. */
type FileRead<T> = { readonly value: T; readonly looseMode: string | null } | { readonly problem: string };

function looseModeOf(stats: BigIntStats): string | null {
  const mode = Number(stats.mode) & 0o777;
  return (mode & 0o077) === 0 ? null : `0${mode.toString(8)}`;
}

export class WatchedFile<T> {
  private state: FileState<T>;
  /** Counts the changes of `state`: a stream admitted under one generation ends at the next. */
  private changes = 0;
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  private readonly listeners = new Set<(change: FileChange) => void>();
  private readonly timer: NodeJS.Timeout;

  private constructor(
    readonly path: string,
    private readonly kind: FileKind<T>,
    value: T,
    /** The file's mode at start when group or others may read it, else null (for the start-up warning). */
    readonly looseModeAtStart: string | null,
  ) {
    this.state = { value };
    this.timer = setInterval(() => void this.check(), CHECK_MS);
    this.timer.unref();
  }

  /**
   * Reads the file once, at start: a server does not start with a file it cannot use.
   * @throws VerdictError CONFIG_INVALID when the file cannot be read or holds nothing usable
   */
  static open<T>(path: string, kind: FileKind<T>): WatchedFile<T> {
    let read: FileRead<T>;
    try {
      read = readSyncBounded(path, kind);
    } catch (error) {
      throw new VerdictError('CONFIG_INVALID', `${kind.configKey}: ${unreadable(path, error)}`, { cause: error });
    }
    if ('problem' in read) throw new VerdictError('CONFIG_INVALID', `${kind.configKey}: ${read.problem}`);
    return new WatchedFile(path, kind, read.value, read.looseMode);
  }

  current(): FileState<T> {
    return this.state;
  }

  /** How many times the value has changed: what a stream notes when it is admitted. */
  get generation(): number {
    return this.changes;
  }

  /**
   * Reads the file again. A read already running may have opened the file before the
   * caller's change, so the caller gets one that starts after it (shared by every
   * caller meanwhile): a call made after the rename never meets the old value.
   */
  check(): Promise<void> {
    if (this.running === null) return this.start();
    this.queued ??= this.running.then(() => {
      this.queued = null;
      return this.start();
    });
    return this.queued;
  }

  /** Calls `listener` whenever the value is replaced or stops being usable; returns the way to stop. */
  onChange(listener: (change: FileChange) => void): () => void {
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
    let read: FileRead<T>;
    try {
      read = await readBounded(this.path, this.kind);
    } catch (error) {
      read = { problem: unreadable(this.path, error) };
    }
    this.settle(read);
  }

  private settle(read: FileRead<T>): void {
    const before = this.state;
    const same = 'value' in before && 'value' in read ? this.kind.same(before.value, read.value) : 'problem' in before && 'problem' in read && before.problem === read.problem;
    if (same) return;
    this.state = 'value' in read ? { value: read.value } : { problem: read.problem };
    this.changes += 1;
    const change: FileChange = { problem: 'problem' in read ? read.problem : null, looseMode: 'value' in read ? read.looseMode : null };
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
// waited on or read without end, and no more than `maxBytes` is read. It is read whole
// each time rather than compared by its dates, so a rewrite within one tick of a
// coarse clock is not missed.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

function notUsable(path: string, stats: BigIntStats, maxBytes: number): { problem: string } | null {
  if (!stats.isFile()) return { problem: `${path} is not a regular file` };
  if (stats.size > BigInt(maxBytes)) return { problem: `${path} is ${stats.size} bytes; it may hold at most ${maxBytes} bytes` };
  return null;
}

function parsed<T>(path: string, kind: FileKind<T>, text: string, stats: BigIntStats): FileRead<T> {
  const state = kind.parse(path, text);
  return 'problem' in state ? state : { value: state.value, looseMode: looseModeOf(stats) };
}

function readSyncBounded<T>(path: string, kind: FileKind<T>): FileRead<T> {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const stats = fstatSync(fd, { bigint: true });
    const problem = notUsable(path, stats, kind.maxBytes);
    if (problem !== null) return problem;
    const buffer = Buffer.alloc(kind.maxBytes);
    const length = readSync(fd, buffer, 0, kind.maxBytes, 0);
    return parsed(path, kind, buffer.toString('utf8', 0, length), stats);
  } finally {
    closeSync(fd);
  }
}

async function readBounded<T>(path: string, kind: FileKind<T>): Promise<FileRead<T>> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const stats = await handle.stat({ bigint: true });
    const problem = notUsable(path, stats, kind.maxBytes);
    if (problem !== null) return problem;
    const buffer = Buffer.alloc(kind.maxBytes);
    const { bytesRead } = await handle.read(buffer, 0, kind.maxBytes, 0);
    return parsed(path, kind, buffer.toString('utf8', 0, bytesRead), stats);
  } finally {
    await handle.close();
  }
}
