import { monitorEventLoopDelay } from 'node:perf_hooks';
import { backgroundReader, fingerprintOf } from '../policy/background-reader.js';
import { DEFAULT_SLICE_MS, PolicyCompiler, type Compilation } from '../policy/compiler.js';
import { formatDiagnostic, type PolicyDiagnostic } from '../policy/diagnostic.js';
import { LoadWorker } from '../policy/load-worker.js';
import type { PolicySet } from '../policy/policy-set.js';
import type { SliceSharing, SliceStats } from '../policy/pipeline.js';
import { youngGenerationPacer } from '../policy/young-generation.js';
import { VerdictError, messageOf } from '../errors.js';
import { DirectoryWatcher, type WatchStatus } from './policy-watcher.js';

export type { WatchStatus } from './policy-watcher.js';

export interface PolicyStatus {
  readonly version: string;
  readonly ruleCount: number;
  readonly loadedAt: Date;
  /** The reason the last reload was refused; null when it succeeded. */
  readonly lastReloadError: string | null;
  readonly lastReloadAttemptAt: Date | null;
  /** The longest the event loop was held at once during the last reload, in milliseconds; null before any reload. */
  readonly lastReloadLongestBlockMs: number | null;
  /**
   * Of the last reload's compilation (null before any, or when it failed outright): its
   * longest slice and the stage it ended in, and its longest young-generation collection
   * between slices. Beside lastReloadLongestBlockMs, they say whether a long block was
   * verdict's own work or something else on the thread (a collection V8 chose, a burst of checks).
   */
  readonly lastReloadSlices?: SliceStats | null;
  readonly watch: WatchStatus;
  /** Shadow mode's set (server/shadow.ts), when there is one: added by the Admin service. */
  readonly shadow?: { readonly version: string; readonly ruleCount: number; readonly lastReloadError: string | null };
  /** The replica id the server records its decisions under (decisions/replica.ts): added by the Admin service. */
  readonly replicaId?: string;
}

/** How a reload went; `seconds` from its start (its turn, with --workers) to the swap or the refusal. */
export type ReloadOutcome =
  | { readonly ok: true; readonly version: string; readonly changed: boolean; readonly seconds: number }
  | { readonly ok: false; readonly error: string; readonly seconds: number };

export interface PolicyStoreEvents {
  onReload?: (outcome: ReloadOutcome, status: PolicyStatus) => void;
  /** The file-system watcher failed (it is started again, and the periodic content check goes on). */
  onWatchError?: (message: string, status: WatchStatus) => void;
}

export interface PolicyStoreOptions {
  /**
   * Waits for this process's turn to compile and resolves with the way to give it
   * back. With --workers N, workers take turns, so a change never has every worker
   * compiling at the same moment.
   */
  readonly takeTurn?: () => Promise<() => void>;
}

export interface WatchOptions {
  /** Quiet time after a file-system event before looking, so an editor's burst of writes is one reload. */
  readonly debounceMs?: number;
  /** How often the files' content is compared with what was loaded, whatever the events say; 0: never. */
  readonly pollMs?: number;
  /** False: the periodic content check only (where file-system events are not to be trusted). */
  readonly events?: boolean;
}

export const DEFAULT_POLL_MS = 10_000;
/** The event-loop delay is sampled at this resolution (ms) while a reload runs. */
const BLOCK_RESOLUTION_MS = 1;
/** A reload rests this long between its slices (see SliceSharing). */
const RELOAD_REST_MS = 1;

type Trigger = 'request' | 'watch';

/**
 * Problems a failed load names in its error: the start-up failure, the reload's log
 * line, `lastReloadError` in GetPolicyStatus and /readyz. A file with 300,000 broken
 * entries made a 75 MB error, built on the thread that answers checks and larger than
 * a gRPC client accepts; `verdict validate` lists every problem.
 */
export const PROBLEMS_NAMED = 20;

function namedProblems(dir: string, diagnostics: readonly PolicyDiagnostic[], separator: string): string {
  const named = diagnostics.slice(0, PROBLEMS_NAMED).map((d) => `${dir}/${formatDiagnostic(d)}`);
  const more = diagnostics.length - named.length;
  if (more > 0) named.push(`… and ${more} more (verdict validate ${dir} lists them all)`);
  return named.join(separator);
}

/**
 * Holds the policy set being served and swaps it atomically. A reload compiles a
 * complete new set before the swap, incrementally (only what changed) and in
 * slices between which checks are answered, with the files parsed in a thread of
 * its own; a broken change leaves the last good set serving and is kept as
 * `lastReloadError` until a good one replaces it.
 */
export class PolicyStore {
  private currentSet: PolicySet;
  private loadedAt: Date;
  private lastError: string | null = null;
  private lastAttempt: Date | null = null;
  private lastLongestBlockMs: number | null = null;
  private lastSlices: SliceStats | null = null;
  private lastFingerprint: string;
  private watcher: DirectoryWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private pollMs: number | null = null;
  private polling = false;
  private debounce: NodeJS.Timeout | null = null;
  private reloading: Promise<ReloadOutcome> | null = null;
  /** Set while a reload compiles (it has its turn): closing waits for that, not for a turn that may never come. */
  private compiling: Promise<unknown> | null = null;
  private again: Trigger | null = null;
  /** Set by close: a reload asked for or queued from then on is not run (the load thread is going away). */
  private closed = false;
  /**
   * The outcome of the reload that `again` starts, for the callers who asked during
   * the one before: theirs must be a reload that began after they asked, or a file
   * pushed just before the call would be answered with the outcome of a set without it.
   */
  private againOutcome: { promise: Promise<ReloadOutcome>; resolve: (outcome: ReloadOutcome) => void; reject: (error: unknown) => void } | null = null;
  /** How reloads share the thread with checks (a cold start, with nothing to serve yet, runs its slices back to back). */
  private readonly sharing: SliceSharing = { pacer: youngGenerationPacer(), restMs: RELOAD_REST_MS };

  private constructor(
    readonly dir: string,
    private readonly compiler: PolicyCompiler,
    private readonly worker: LoadWorker,
    initial: Compilation & { policySet: PolicySet },
    private readonly events: PolicyStoreEvents,
    private readonly options: PolicyStoreOptions,
  ) {
    this.currentSet = initial.policySet;
    this.loadedAt = new Date();
    this.lastFingerprint = fingerprintKey(initial.fingerprint);
  }

  /** Loads the directory once; fails when it is invalid, since there is no last good set yet. */
  static async open(dir: string, events: PolicyStoreEvents = {}, options: PolicyStoreOptions = {}): Promise<PolicyStore> {
    const worker = new LoadWorker();
    const compiler = new PolicyCompiler(dir, backgroundReader(worker));
    let compilation: Compilation;
    try {
      compilation = await compiler.compile();
    } catch (error) {
      await worker.close();
      throw error;
    }
    const { result } = compilation;
    if (!result.ok) {
      await worker.close();
      throw new VerdictError('POLICY_INVALID', `policies in ${dir} are invalid:\n${namedProblems(dir, result.diagnostics, '\n')}`);
    }
    return new PolicyStore(dir, compiler, worker, { ...compilation, policySet: result.policies.policySet }, events, options);
  }

  /** The policy set to decide with: read once per check, never half-loaded. */
  get current(): PolicySet {
    return this.currentSet;
  }

  status(): PolicyStatus {
    return {
      version: this.currentSet.version,
      ruleCount: this.currentSet.rules.length,
      loadedAt: this.loadedAt,
      lastReloadError: this.lastError,
      lastReloadAttemptAt: this.lastAttempt,
      lastReloadLongestBlockMs: this.lastLongestBlockMs,
      lastReloadSlices: this.lastSlices,
      watch: this.watchStatus(),
    };
  }

  watchStatus(): WatchStatus {
    const watching = this.pollTimer !== null || this.watcher !== null;
    return {
      mode: !watching ? 'off' : this.watcher?.active ? 'events' : 'poll',
      pollMs: watching ? this.pollMs : null,
      lastError: this.watcher?.lastError ?? null,
      failures: this.watcher?.failures ?? 0,
    };
  }

  /**
   * Reloads now. A call during a reload is answered by one more reload after it,
   * which every call made meanwhile shares; so the answer always covers the files
   * as they were when the call was made.
   */
  reload(): Promise<ReloadOutcome> {
    return this.schedule('request');
  }

  private schedule(trigger: Trigger): Promise<ReloadOutcome> {
    if (this.closed) return Promise.resolve(NOT_RUN_WHILE_STOPPING);
    if (this.reloading) {
      this.again = this.again === 'request' || trigger === 'request' ? 'request' : 'watch';
      if (this.againOutcome === null) {
        let resolve: (outcome: ReloadOutcome) => void = () => undefined;
        let reject: (error: unknown) => void = () => undefined;
        const promise = new Promise<ReloadOutcome>((settle, fail) => {
          resolve = settle;
          reject = fail;
        });
        this.againOutcome = { promise, resolve, reject };
      }
      return this.againOutcome.promise;
    }
    this.reloading = this.reloadOnce(trigger).finally(() => {
      this.reloading = null;
      const again = this.again;
      const againOutcome = this.againOutcome;
      this.again = null;
      this.againOutcome = null;
      if (again) {
        const next = this.schedule(again);
        if (againOutcome !== null) next.then(againOutcome.resolve, againOutcome.reject);
      }
    });
    return this.reloading;
  }

  private async reloadOnce(trigger: Trigger): Promise<ReloadOutcome> {
    const release = (await this.options.takeTurn?.()) ?? (() => undefined);
    if (this.closed) {
      // Queued behind the shutdown: not a refusal of the files, so neither logged nor kept as the last error.
      release();
      return NOT_RUN_WHILE_STOPPING;
    }
    const delay = monitorEventLoopDelay({ resolution: BLOCK_RESOLUTION_MS });
    const started = performance.now();
    delay.enable();
    let outcome: ReloadOutcome;
    let fingerprint = this.lastFingerprint;
    let slices: SliceStats | null = null;
    try {
      const compiling = this.compiler.compile({ sharing: this.sharing });
      this.compiling = compiling;
      const compilation = await compiling;
      fingerprint = fingerprintKey(compilation.fingerprint);
      slices = compilation.slices;
      const seconds = (performance.now() - started) / 1000;
      const { result } = compilation;
      if (result.ok) {
        const next = result.policies.policySet;
        const changed = next.version !== this.currentSet.version;
        if (trigger === 'watch' && !changed && this.lastError === null && fingerprint === this.lastFingerprint) {
          // Nothing new behind a file-system event (an editor's swap file, a touched file): not worth a log line.
          return { ok: true, version: next.version, changed: false, seconds };
        }
        this.currentSet = next;
        this.loadedAt = new Date();
        this.lastError = null;
        outcome = { ok: true, version: next.version, changed, seconds };
      } else {
        const error = `${result.diagnostics.length} error(s); still serving ${this.currentSet.version}: ${namedProblems(this.dir, result.diagnostics, '; ')}`;
        if (trigger === 'watch' && error === this.lastError && fingerprint === this.lastFingerprint) return { ok: false, error, seconds };
        this.lastError = error;
        outcome = { ok: false, error, seconds };
      }
    } catch (error) {
      this.lastError = `${messageOf(error)}; still serving ${this.currentSet.version}`;
      outcome = { ok: false, error: this.lastError, seconds: (performance.now() - started) / 1000 };
    } finally {
      this.compiling = null;
      delay.disable();
      release();
    }
    this.lastFingerprint = fingerprint;
    this.lastAttempt = new Date();
    // The sampled delay includes the sampling interval itself; the slices are measured directly.
    this.lastLongestBlockMs = Math.max(slices?.longestSliceMs ?? 0, Math.max(0, delay.max / 1e6 - BLOCK_RESOLUTION_MS));
    this.lastSlices = slices;
    this.events.onReload?.(outcome, this.status());
    return outcome;
  }

  /**
   * Reloads a moment after files under the directory change (file-system events,
   * debounced), and whenever the files' content differs from what was last loaded
   * (checked every `pollMs`), so a change the events missed is still seen.
   */
  watch(options: WatchOptions = {}): void {
    if (this.pollTimer || this.watcher) return;
    const debounceMs = options.debounceMs ?? 150;
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    if (options.events !== false) {
      this.watcher = new DirectoryWatcher(this.dir, {
        onEvent: () => {
          if (this.debounce) clearTimeout(this.debounce);
          this.debounce = setTimeout(() => {
            this.debounce = null;
            void this.schedule('watch');
          }, debounceMs);
        },
        onError: (message) => this.events.onWatchError?.(message, this.watchStatus()),
      });
      this.watcher.start();
    }
    if (this.pollMs > 0) {
      this.pollTimer = setInterval(() => void this.poll(), this.pollMs);
      this.pollTimer.unref();
    }
  }

  /** The periodic check: a reload when the files' content is not what the last reload saw. */
  private async poll(): Promise<void> {
    if (this.polling || this.reloading) return;
    this.polling = true;
    try {
      const now = fingerprintKey(await fingerprintOf(this.dir, DEFAULT_SLICE_MS));
      if (now !== this.lastFingerprint) await this.schedule('watch');
    } catch {
      // The directory is gone for now: the reload it would trigger reports that, once there is something to load.
    } finally {
      this.polling = false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.debounce) clearTimeout(this.debounce);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    const watcher = this.watcher;
    this.watcher = null;
    await watcher?.close();
    await this.compiling?.catch(() => undefined);
    await this.worker.close();
  }
}

/** The answer to a reload asked for (or queued) once the server has begun to stop. */
const NOT_RUN_WHILE_STOPPING: ReloadOutcome = Object.freeze({ ok: false, error: 'verdict is stopping: the reload was not run (the policies in use stay as they are)', seconds: 0 });

function fingerprintKey(fingerprint: readonly (readonly [string, string])[]): string {
  return fingerprint.map(([file, hash]) => `${file}\u0000${hash}`).join('\n');
}
