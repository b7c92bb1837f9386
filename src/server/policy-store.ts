import { watch, type FSWatcher } from 'node:fs';
import { formatDiagnostic } from '../policy/diagnostic.js';
import { loadPolicies } from '../policy/load.js';
import type { PolicySet } from '../policy/policy-set.js';
import { gitCommitIfCleanAsync } from '../policy/version.js';
import { VerdictError, messageOf } from '../errors.js';

export interface PolicyStatus {
  readonly version: string;
  readonly ruleCount: number;
  readonly loadedAt: Date;
  /** The reason the last reload was refused; null when it succeeded. */
  readonly lastReloadError: string | null;
  readonly lastReloadAttemptAt: Date | null;
}

export type ReloadOutcome =
  | { readonly ok: true; readonly version: string; readonly changed: boolean }
  | { readonly ok: false; readonly error: string };

export interface PolicyStoreEvents {
  onReload?: (outcome: ReloadOutcome, status: PolicyStatus) => void;
}

/**
 * Holds the policy set being served and swaps it atomically. A reload compiles a
 * complete new set before the swap; a broken change leaves the last good set serving
 * and is kept as `lastReloadError` until a good one replaces it.
 */
export class PolicyStore {
  private currentSet: PolicySet;
  private loadedAt: Date;
  private lastError: string | null = null;
  private lastAttempt: Date | null = null;
  private watcher: FSWatcher | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private reloading: Promise<ReloadOutcome> | null = null;
  private reloadAgain = false;

  private constructor(
    readonly dir: string,
    initial: PolicySet,
    private readonly events: PolicyStoreEvents,
  ) {
    this.currentSet = initial;
    this.loadedAt = new Date();
  }

  /** Loads the directory once; fails when it is invalid, since there is no last good set yet. */
  static async open(dir: string, events: PolicyStoreEvents = {}): Promise<PolicyStore> {
    const result = loadPolicies(dir, { gitCommit: await gitCommitIfCleanAsync(dir) });
    if (!result.ok) {
      const lines = result.diagnostics.map((d) => `${dir}/${formatDiagnostic(d)}`);
      throw new VerdictError('POLICY_INVALID', `policies in ${dir} are invalid:\n${lines.join('\n')}`);
    }
    return new PolicyStore(dir, result.policies.policySet, events);
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
    };
  }

  /** Reloads now. Concurrent calls share one reload; a call during a reload triggers one more after it. */
  reload(): Promise<ReloadOutcome> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = this.reloadOnce().finally(() => {
      this.reloading = null;
      if (this.reloadAgain) {
        this.reloadAgain = false;
        void this.reload();
      }
    });
    return this.reloading;
  }

  private async reloadOnce(): Promise<ReloadOutcome> {
    this.lastAttempt = new Date();
    let outcome: ReloadOutcome;
    try {
      const result = loadPolicies(this.dir, { gitCommit: await gitCommitIfCleanAsync(this.dir) });
      if (result.ok) {
        const next = result.policies.policySet;
        const changed = next.version !== this.currentSet.version;
        this.currentSet = next;
        this.loadedAt = new Date();
        this.lastError = null;
        outcome = { ok: true, version: next.version, changed };
      } else {
        const lines = result.diagnostics.map((d) => `${this.dir}/${formatDiagnostic(d)}`);
        this.lastError = `${lines.length} error(s); still serving ${this.currentSet.version}: ${lines.join('; ')}`;
        outcome = { ok: false, error: this.lastError };
      }
    } catch (error) {
      this.lastError = `${messageOf(error)}; still serving ${this.currentSet.version}`;
      outcome = { ok: false, error: this.lastError };
    }
    this.events.onReload?.(outcome, this.status());
    return outcome;
  }

  /** Reloads a moment after files under the directory change, so an editor's burst of writes is one reload. */
  watch(debounceMs = 150): void {
    if (this.watcher) return;
    try {
      this.watcher = watch(this.dir, { recursive: true, persistent: false }, () => {
        if (this.debounce) clearTimeout(this.debounce);
        this.debounce = setTimeout(() => {
          this.debounce = null;
          void this.reload();
        }, debounceMs);
      });
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      this.watcher = null; // watching is a convenience: SIGHUP and the admin RPC still reload
    }
  }

  close(): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = null;
  }
}
