/**
 * What Settle needs to correct a cost budget after the fact: for each allowed
 * decision whose limits took a cost, the keys and units reserved, who made it, and
 * until when it may be settled. Bounded: at most `max` decisions are held; an entry
 * past its window is dropped as writes go by, and when full an entry is evicted (it
 * can no longer be settled), taken from whoever holds more than its share (add). A
 * settled entry stays until its window ends, so a second Settle of the same decision
 * is told so.
 */

import { peerHost } from '../peer-address.js';

/** Units one limit took up front for a decision, and where. */
export interface Reservation {
  readonly limitId: string;
  readonly key: string;
  readonly emissionMs: number;
  readonly burst: number;
  readonly units: number;
  /** Where they were taken: this process's memory, or Redis. */
  readonly backend: 'memory' | 'redis';
  /**
   * Taken in Redis for a limit whose fallback is `local`: a correction is copied into the
   * fallback too (see fallbackFollows), whose key takes this long from empty to its whole
   * share. Absent otherwise.
   */
  readonly fallbackToleranceMs?: number;
}

export interface SettleEntry {
  /** Who asked for the decision (as the log records callers); only they may settle it. */
  readonly caller: string;
  readonly principalId: string;
  readonly resourceType: string;
  readonly resourceId: string;
  /** What is still to be corrected: every reservation, until a Settle corrects some and fails on others. */
  reservations: readonly Reservation[];
  readonly expiresAt: number;
  /** `settling` while a Settle corrects it: another Settle then is told to retry, not that it is settled. */
  state: 'open' | 'settling' | 'settled';
}

/** Entries looked at for expiry on each write. */
const SWEEP_PER_WRITE = 4;

interface HeldEntry extends SettleEntry {
  /** The caller group it counts against when the book is full. */
  readonly group: string;
}

export class SettlementBook {
  private readonly entries = new Map<string, HeldEntry>();
  /** Each caller group's entries, oldest first. */
  private readonly groups = new Map<string, Set<string>>();
  /** The group evictions were last taken from (evictFor). */
  private victim: Set<string> | undefined;
  /** Entries evicted before their window ended, because the book was full. */
  evictions = 0;

  constructor(
    readonly max = 100_000,
    readonly windowMs = 3_600_000,
    private readonly clock: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Holds a decision for Settle. `group` is who it counts against when the book is
   * full (decisions/caller-group.ts: an identity, or a host): a group holding its
   * share or more loses its own oldest entry, else one that holds at least its share does.
   * With one oldest-first list for all, one caller's flood of reservations evicted
   * every other caller's, whose Settles then found nothing and whose unused units
   * were never given back.
   */
  add(decisionId: string, entry: Omit<SettleEntry, 'expiresAt' | 'state'>, group: string = entry.caller): void {
    const now = this.clock();
    let looked = 0;
    for (const [id, e] of this.entries) {
      if (looked++ >= SWEEP_PER_WRITE || e.expiresAt > now) break;
      this.drop(id);
    }
    if (this.entries.size >= this.max) this.evictFor(group);
    // Object.assign, not a spread followed by new members: that takes V8's slow path (engine/decision-with.ts).
    this.entries.set(decisionId, Object.assign({}, entry, { group, expiresAt: now + this.windowMs, state: 'open' as const }));
    let ids = this.groups.get(group);
    if (ids === undefined) this.groups.set(group, (ids = new Set()));
    ids.add(decisionId);
  }

  private evictFor(group: string): void {
    const own = this.groups.get(group);
    const share = this.max / (this.groups.size + (own === undefined ? 1 : 0));
    let from = own !== undefined && own.size >= share ? own : undefined;
    if (from === undefined && this.victim !== undefined && this.victim.size >= share) from = this.victim;
    if (from === undefined) {
      // The first group holding at least its share (there always is one: the book is full), kept for the next
      // evictions while it still does, so that a book spread over many groups is not scanned on every add.
      for (const ids of this.groups.values()) {
        if (ids.size >= share) {
          from = ids;
          break;
        }
        if (from === undefined || ids.size > from.size) from = ids;
      }
      this.victim = from;
    }
    const oldest = from?.values().next();
    if (oldest === undefined || oldest.done) return;
    this.drop(oldest.value);
    this.evictions += 1;
  }

  private drop(decisionId: string): void {
    const entry = this.entries.get(decisionId);
    if (entry === undefined) return;
    this.entries.delete(decisionId);
    const ids = this.groups.get(entry.group);
    ids?.delete(decisionId);
    if (ids?.size === 0) {
      this.groups.delete(entry.group);
      if (this.victim === ids) this.victim = undefined;
    }
  }

  /** Whether `caller`'s decision is held here (open, being settled, settled or past its window), without taking it. */
  holds(decisionId: string, caller: string): boolean {
    const entry = this.entries.get(decisionId);
    return entry !== undefined && sameCaller(entry.caller, caller);
  }

  /**
   * The entry `caller` may settle now, marked `settling` until `settled` or `reopen`
   * is called for it; or why not: `unknown` (no such decision, not one that reserved a
   * cost, another caller's, or dropped), `expired` (its window has passed), `settled`
   * (already settled), `settling` (another Settle of it has not answered yet).
   */
  take(decisionId: string, caller: string): SettleEntry | 'unknown' | 'expired' | 'settled' | 'settling' {
    const entry = this.entries.get(decisionId);
    if (entry === undefined || !sameCaller(entry.caller, caller)) return 'unknown';
    if (entry.expiresAt <= this.clock()) {
      this.drop(decisionId);
      return 'expired';
    }
    if (entry.state !== 'open') return entry.state;
    entry.state = 'settling';
    return entry;
  }

  /** The Settle that took the entry is over and may have corrected it: it cannot be settled again. */
  settled(decisionId: string): void {
    const entry = this.entries.get(decisionId);
    if (entry !== undefined) entry.state = 'settled';
  }

  /**
   * A Settle that could not correct every reservation (the shared backend did not
   * answer): the entry can be settled again, for what is left, within its window.
   */
  reopen(decisionId: string, left: readonly Reservation[]): void {
    const entry = this.entries.get(decisionId);
    if (entry === undefined) return;
    entry.reservations = left;
    entry.state = 'open';
  }
}

/**
 * Whether two callers as the log records them are the same: an identity (a
 * certificate's, `api-key:…`, `jwt:…`) exactly; a peer address by its host (each
 * connection has its own port).
 */
export function sameCaller(a: string, b: string): boolean {
  if (a === b) return true;
  const host = peerHost(a);
  return host !== null && host === peerHost(b);
}
