import { GENESIS_HASH, storedRowHash, storedRowProblem, type StoredRow } from '../decisions/chain.js';
import type { ChainStart } from './chain-pass.js';
import type { VerifyBreak } from './report.js';
import type { RowSource } from './row-source.js';

/**
 * Naming the first break: once the chain pass has stopped at a row, work out
 * whether rows there were changed, deleted, inserted or reordered, by finding
 * the seq each row was written with (its hash still matches its content and
 * prev_hash there) and where the rows around it went.
 */

/**
 * The first pass stopped at `index` (storage order), where a row with seq
 * `expected` continuing from `prev` should have been. Work out what happened.
 */
export function diagnose(rows: RowSource, index: number, expected: number, prev: Buffer, start: ChainStart): VerifyBreak {
  const e = expected;
  const r = rows.rowAt(index);
  const origins = new OriginalSeq(rows, start);

  if (r.seq > e) {
    if (!Number.isSafeInteger(r.seq)) {
      return { kind: 'inserted', seq: e, message: `the row after seq ${e - 1} claims a seq past 2^53 (${Number.MAX_SAFE_INTEGER.toLocaleString('en-US')}), which no log reaches: it was added` };
    }
    const elsewhere = rows.bySeq(e);
    if (elsewhere !== undefined && elsewhere > index) {
      return { kind: 'reordered', seq: e, message: `row ${e} is out of place: seq ${r.seq} comes before it` };
    }
    const missing = r.seq - 1 === e ? `row ${e} is missing` : `rows ${e}..${r.seq - 1} are missing`;
    return { kind: 'deleted', seq: e, message: `${missing} (the log jumps from seq ${e - 1} to ${r.seq})` };
  }
  if (r.seq <= start.seq) {
    return { kind: 'inserted', seq: r.seq, message: `row ${r.seq} sits at or before the prune anchor at seq ${start.seq}: it was added (or restored) after pruning` };
  }
  if (r.seq < e) {
    return { kind: 'inserted', seq: r.seq, message: `a second row claims seq ${r.seq} after seq ${e - 1}` };
  }
  if (r.prevHash === null || r.hash === null) {
    return { kind: 'changed', seq: e, message: `row ${e} has no hash (its prev_hash or hash column was cleared)` };
  }
  const problem = storedRowProblem(r);
  if (problem !== null) return { kind: 'changed', seq: e, message: `row ${e} was changed: ${problem}` };

  const o = origins.of(index);
  if (o === null) {
    const following = index + 1 < rows.length ? rows.rowAt(index + 1) : null;
    if (following !== null && following.prevHash !== null && following.prevHash.equals(r.hash)) {
      return { kind: 'changed', seq: e, message: `row ${e} was changed: its content no longer matches its hash` };
    }
    if (following !== null && following.prevHash !== null && following.prevHash.equals(prev)) {
      return { kind: 'inserted', seq: e, message: `row ${e} is not part of the chain: the row after it continues from seq ${e - 1} (a forged row was inserted and later rows renumbered)` };
    }
    return { kind: 'changed', seq: e, message: `row ${e} was changed: its content no longer matches its hash` };
  }
  if (o === e) {
    // Intact where it is, but it does not continue from the row before it: that row
    // (or this one's prev_hash) was rewritten with a recomputed hash.
    const seq = e - 1 > start.seq ? e - 1 : e;
    return {
      kind: 'changed',
      seq,
      message: `row ${e} does not continue from row ${e - 1}: ${seq === e - 1 ? `row ${e - 1} was replaced by one with a recomputed hash` : `its prev_hash was rewritten`}`,
    };
  }
  if (o < e) {
    const n = e - o;
    return {
      kind: 'inserted',
      seq: o,
      message: `${n === 1 ? `row ${o} is` : `rows ${o}..${e - 1} are`} not part of the chain: the original row ${o} now sits at seq ${e} (forged row${n === 1 ? '' : 's'} inserted, later rows renumbered)`,
    };
  }
  // o > e: this row belongs further on. Is the original row e elsewhere?
  const claimants = rows.byPrev(prev);
  for (const j of claimants.length > MAX_CLAIMANTS ? claimants.slice(0, MAX_CLAIMANTS) : claimants) {
    if (j !== index && origins.of(j) === e) {
      return { kind: 'reordered', seq: e, message: `rows are out of order: seq ${e} holds the row written as seq ${o}, and the row written as seq ${e} is at seq ${rows.rowAt(j).seq}` };
    }
  }
  const guess = claimants.length > MAX_CLAIMANTS || origins.exhausted ? `; the kind is a best guess: ${claimants.length.toLocaleString('en-US')} rows claim to follow seq ${e - 1}, more than verify examines` : '';
  return {
    kind: 'deleted',
    seq: e,
    message: `${o - 1 === e ? `row ${e} is` : `rows ${e}..${o - 1} are`} missing: seq ${e} holds the row written as seq ${o} (later rows were renumbered to close the gap)${guess}`,
  };
}

/**
 * Rows claiming to follow the last good row that are examined to tell a reorder
 * from a deletion; thousands of forged rows pointing at it would otherwise each
 * cost a window search.
 */
const MAX_CLAIMANTS = 64;
/**
 * Row hashes forensics computes at most (about a second here): past it, a row's
 * original seq counts as unknown, so a log stuffed with forged rows gets its
 * first break named quickly rather than after minutes of search.
 */
const MAX_FORENSIC_HASHES = 500_000;

/**
 * The seq a row was written with: the one at which its stored hash matches its
 * content and stored prev_hash. Found at its current seq, else by following
 * prev_hash back to a row that is in place, else by trying nearby seqs (rows
 * renumbered after a deletion point at a row that no longer exists).
 */
class OriginalSeq {
  private readonly memo = new Map<number, number | null>();
  private static readonly WINDOW = 2048;
  private static readonly MAX_WALK = 200_000;
  private hashesLeft = MAX_FORENSIC_HASHES;

  /** Whether the hash budget ran out, so some origins were left unknown. */
  get exhausted(): boolean {
    return this.hashesLeft <= 0;
  }

  constructor(
    private readonly rows: RowSource,
    private readonly start: ChainStart,
  ) {}

  of(index: number): number | null {
    const known = this.memo.get(index);
    if (known !== undefined) return known;
    // Walk back along prev_hash to a row whose original seq is known or in place.
    const path: number[] = [];
    let current = index;
    let base: number | null = null;
    const seen = new Set<number>();
    for (let steps = 0; steps < OriginalSeq.MAX_WALK && !this.exhausted; steps++) {
      const memo = this.memo.get(current);
      if (memo !== undefined) {
        base = memo;
        break;
      }
      const r = this.rows.rowAt(current);
      if (r.prevHash === null || r.hash === null) {
        base = null;
        path.push(current);
        break;
      }
      if (this.matches(r.prevHash, r, r.seq, r.hash)) {
        this.memo.set(current, r.seq);
        base = r.seq;
        break;
      }
      path.push(current);
      seen.add(current);
      if (r.prevHash.equals(this.start.hash)) {
        base = this.start.seq;
        break;
      }
      if (r.prevHash.equals(GENESIS_HASH)) {
        base = 0;
        break;
      }
      const pred = this.rows.byHash(r.prevHash).find((p) => !seen.has(p));
      if (pred === undefined) {
        base = null;
        break;
      }
      current = pred;
    }
    // Forward again, one seq per step, confirming each row's hash at its claimed seq.
    for (let k = path.length - 1; k >= 0; k--) {
      const at = path[k] as number;
      const r = this.rows.rowAt(at);
      let o: number | null = null;
      if (base !== null && r.prevHash !== null && r.hash !== null && this.matches(r.prevHash, r, base + 1, r.hash)) o = base + 1;
      if (o === null) o = this.searchWindow(r);
      this.memo.set(at, o);
      base = o;
    }
    return this.memo.get(index) ?? null;
  }

  private searchWindow(r: StoredRow): number | null {
    const prevHash = r.prevHash;
    const hash = r.hash;
    if (prevHash === null || hash === null) return null;
    for (let d = 1; d <= OriginalSeq.WINDOW && !this.exhausted; d++) {
      for (const seq of [r.seq + d, r.seq - d]) {
        if (seq >= 1 && this.matches(prevHash, r, seq, hash)) return seq;
      }
    }
    return null;
  }

  /** Whether `r`, written as `seq` after `prev`, has hash `hash`; false once the budget is spent. */
  private matches(prev: Buffer, r: StoredRow, seq: number, hash: Buffer): boolean {
    if (this.hashesLeft <= 0) return false;
    this.hashesLeft--;
    return storedRowHash(prev, r, seq)?.equals(hash) ?? false;
  }
}
