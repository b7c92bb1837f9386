import { foldedId } from '../folded-id.js';
import type { SuspensionState } from '../types.js';

/** Told when a suspension begins, is lifted, or is found expired (to persist or report it). */
export interface SuspensionListener {
  suspended?(suspension: SuspensionState): void;
  /** `expired`: its time was up; otherwise it was lifted before then. */
  ended?(suspension: SuspensionState, expired: boolean): void;
}

/** Soonest to end first, then by principal id (UTF-16 code units, the same everywhere: ListSuspensions pages by it). */
export function bySuspensionOrder(a: SuspensionState, b: SuspensionState): number {
  return a.until - b.until || (a.principalId < b.principalId ? -1 : a.principalId > b.principalId ? 1 : 0);
}

/**
 * The principals whose checks are denied for now (DENIED_BY_SUSPENSION), in
 * memory: the decide core asks `active` on every check while any is held, which
 * costs folding the id and one map lookup (and, only for a suspended principal,
 * one reading of the clock). A suspension holds for every spelling of its id
 * (`Dana`, `dana `: see foldedId), as an identity provider reading ids leniently
 * would take them for one principal. An
 * expired suspension is dropped when next looked up, or by `sweep`.
 *
 * Who fills it: the alert response (server/suspension.ts) and the Admin API
 * (SuspendPrincipal); what it holds survives a restart through the server's
 * suspensions table (decisions/suspension-store.ts).
 *
 * @example
 * const book = new Suspensions();
 * book.suspend({ principalId: 'mallory', since: now, until: now + 900_000, alertId: 'a-1', alertType: 'probing', note: '…' });
 * book.active('mallory'); // the suspension, until it ends
 */
export class Suspensions {
  /** By folded principal id. */
  private readonly byPrincipal = new Map<string, SuspensionState>();
  private listeners: readonly SuspensionListener[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** Suspensions held (some may have expired and not been looked up since). */
  get size(): number {
    return this.byPrincipal.size;
  }

  /** Adds a listener; returns the function that removes it. */
  listen(listener: SuspensionListener): () => void {
    this.listeners = [...this.listeners, listener];
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  /** The principal's suspension in force now, if any. */
  active(principalId: string): SuspensionState | undefined {
    if (this.byPrincipal.size === 0) return undefined;
    const suspension = this.byPrincipal.get(foldedId(principalId));
    if (suspension === undefined) return undefined;
    if (suspension.until > this.now()) return suspension;
    this.end(suspension, true);
    return undefined;
  }

  /**
   * Suspends a principal. One already suspended keeps the later of the two ends
   * (a second alert never shortens a suspension); returns the suspension in force.
   */
  suspend(suspension: SuspensionState): SuspensionState {
    const current = this.active(suspension.principalId);
    if (current !== undefined && current.until >= suspension.until) return current;
    this.byPrincipal.set(foldedId(suspension.principalId), suspension);
    for (const l of this.listeners) l.suspended?.(suspension);
    return suspension;
  }

  /**
   * Makes the book hold exactly `suspensions` (those not yet ended), telling no
   * listener: how a server takes up what its store says (at start, and what
   * another worker process stored).
   */
  replace(suspensions: readonly SuspensionState[]): void {
    const now = this.now();
    this.byPrincipal.clear();
    for (const s of suspensions) {
      if (s.until <= now) continue;
      // Two spellings stored (by workers, or before ids were folded): the later end holds.
      const key = foldedId(s.principalId);
      const held = this.byPrincipal.get(key);
      if (held === undefined || held.until < s.until) this.byPrincipal.set(key, s);
    }
  }

  /**
   * Takes up rows another worker process (or this one) changed in the shared
   * table, oldest change first, telling no listener. A row is the table's word
   * for its principal id: it replaces what the book holds under that id, shorter
   * or not (the table shortens one only when it was lifted and made again). Under
   * another spelling of the id, the later end holds, as in `replace`. A lifted row
   * ends what the book holds unless the book's ends later (under another spelling).
   */
  apply(changes: readonly { readonly suspension: SuspensionState; readonly lifted: boolean }[]): void {
    const now = this.now();
    for (const { suspension: s, lifted } of changes) {
      const key = foldedId(s.principalId);
      const held = this.byPrincipal.get(key);
      const same = held !== undefined && held.principalId === s.principalId;
      if (lifted) {
        if (held !== undefined && (same || held.until <= s.until)) this.byPrincipal.delete(key);
      } else if (s.until <= now) {
        if (same) this.byPrincipal.delete(key);
      } else if (held === undefined || same || held.until < s.until) {
        this.byPrincipal.set(key, s);
      }
    }
  }

  /** Lifts a principal's suspension now; the one lifted, or undefined when none was in force. */
  lift(principalId: string): SuspensionState | undefined {
    const current = this.active(principalId);
    if (current === undefined) return undefined;
    this.end(current, false);
    return current;
  }

  /** The suspensions in force, soonest to end first (expired ones are dropped). */
  list(): SuspensionState[] {
    this.sweep();
    return [...this.byPrincipal.values()].sort(bySuspensionOrder);
  }

  /** Drops every expired suspension. */
  sweep(): void {
    const now = this.now();
    for (const suspension of [...this.byPrincipal.values()]) if (suspension.until <= now) this.end(suspension, true);
  }

  private end(suspension: SuspensionState, expired: boolean): void {
    const key = foldedId(suspension.principalId);
    if (this.byPrincipal.get(key) !== suspension) return;
    this.byPrincipal.delete(key);
    for (const l of this.listeners) l.ended?.(suspension, expired);
  }
}
