import { realpathSync, statSync } from 'node:fs';
import { relative, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { messageOf } from '../errors.js';

/** How the policy directory is being watched, for /readyz and the metrics. */
export interface WatchStatus {
  /** `events`: file-system events, with the periodic check behind them; `poll`: the periodic check only (events failed); `off`: not watching. */
  readonly mode: 'events' | 'poll' | 'off';
  /** How often the files' content is compared with what was loaded, in milliseconds; null when not watching. */
  readonly pollMs: number | null;
  /** The last failure of the event watcher; null when it never failed. */
  readonly lastError: string | null;
  readonly failures: number;
}

export interface WatcherEvents {
  /** Something under the directory may have changed. */
  onEvent(): void;
  /** The event watcher failed; it is started again after `retryMs`. */
  onError(message: string): void;
}

/** Inside `.git`, only what a commit or checkout moves (HEAD, the index, branch refs): the version may be the commit. */
function ignoredInGit(dir: string, path: string): boolean {
  const parts = relative(dir, path).split(sep);
  if (parts[0] !== '.git' || parts.length === 1) return false;
  return !(parts[1] === 'HEAD' || parts[1] === 'index' || parts[1] === 'refs');
}

/**
 * Whether `path` leads outside the policy directory once its links are resolved. The
 * loader refuses such a link (see stages/read.ts), and walking it could mean watching
 * the whole machine (a link to `/`).
 */
function leadsOutside(root: string | null, path: string): boolean {
  if (root === null) return false;
  try {
    const real = realpathSync(path);
    return real !== root && !real.startsWith(root.endsWith(sep) ? root : root + sep);
  } catch {
    return false;
  }
}

/**
 * Closes a watcher. Closing removes its listeners while stats it started may still
 * fail, and an 'error' with no listener would end the process: those are ignored.
 */
function closeQuietly(watcher: FSWatcher | null): Promise<void> {
  if (watcher === null) return Promise.resolve();
  const closing = watcher.close();
  watcher.on('error', () => undefined);
  return closing;
}

/**
 * File-system events for a policy directory, by chokidar: it watches every
 * directory rather than each file's inode, so a file replaced by a rename (an
 * editor's save, `mv` from elsewhere, `git checkout`) keeps being seen, and it
 * follows symbolic links (a ConfigMap's `..data`). Events only say "look again":
 * what changed is decided by comparing content, so a spurious event costs a read.
 * A failure is reported and the watcher started again; the store's periodic
 * content check covers the gap. The directory itself replaced (renamed away
 * and another renamed into its place, as a deploy may swap it) would leave
 * the watches on the old one: its identity is checked every `retryMs` and on
 * each event, and the watcher started again on the new one.
 */
export class DirectoryWatcher {
  private watcher: FSWatcher | null = null;
  private retry: NodeJS.Timeout | null = null;
  private rootCheck: NodeJS.Timeout | null = null;
  /** dev:ino of the directory the watches are on; null when it did not exist. */
  private root: string | null = null;
  private closed = false;
  lastError: string | null = null;
  failures = 0;

  constructor(
    private readonly dir: string,
    private readonly events: WatcherEvents,
    private readonly retryMs = 1_000,
  ) {}

  /** Whether events are being delivered now. */
  get active(): boolean {
    return this.watcher !== null;
  }

  start(): void {
    if (this.closed || this.watcher) return;
    if (this.rootCheck === null) {
      this.rootCheck = setInterval(() => this.checkRoot(), this.retryMs);
      this.rootCheck.unref();
    }
    this.root = identityOf(this.dir);
    const realRoot = realPathOf(this.dir);
    try {
      const watcher = watch(this.dir, {
        ignoreInitial: true,
        followSymlinks: true,
        persistent: false,
        // Resolving every path would cost the deciding thread a system call per file on each
        // (re)start; only a directory (or a link) can lead the watches elsewhere.
        ignored: (path, stats) => ignoredInGit(this.dir, path) || (stats !== undefined && (stats.isDirectory() || stats.isSymbolicLink()) && leadsOutside(realRoot, path)),
      });
      watcher.on('all', () => this.event());
      // Changes made before the watches were in place are not announced: look once they are.
      watcher.on('ready', () => this.events.onEvent());
      // Raw events include renames of a link chokidar resolved (a ConfigMap's `..data` swap).
      watcher.on('raw', () => this.event());
      watcher.on('error', (error) => this.fail(messageOf(error)));
      this.watcher = watcher;
    } catch (error) {
      this.fail(messageOf(error));
    }
  }

  private event(): void {
    this.checkRoot();
    this.events.onEvent();
  }

  /** The directory replaced (or gone, or back): watch what the path names now, and look again. */
  private checkRoot(): void {
    if (this.closed || identityOf(this.dir) === this.root) return;
    const watcher = this.watcher;
    this.watcher = null;
    void closeQuietly(watcher).catch(() => undefined);
    this.start();
    this.events.onEvent();
  }

  private fail(message: string): void {
    this.lastError = message;
    this.failures += 1;
    const watcher = this.watcher;
    this.watcher = null;
    void closeQuietly(watcher).catch(() => undefined);
    this.events.onError(message);
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.start();
    }, this.retryMs);
    this.retry.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.rootCheck) clearInterval(this.rootCheck);
    const watcher = this.watcher;
    this.watcher = null;
    await closeQuietly(watcher);
  }
}

function realPathOf(dir: string): string | null {
  try {
    return realpathSync(dir);
  } catch {
    return null;
  }
}

function identityOf(dir: string): string | null {
  try {
    const stat = statSync(dir, { bigint: true, throwIfNoEntry: false });
    return stat === undefined ? null : `${stat.dev}:${stat.ino}`;
  } catch {
    // Unreadable for now: as if it were gone; the reload that follows says why.
    return null;
  }
}
