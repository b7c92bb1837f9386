import type { KeyObject } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { checkpointSignatureValid, type Checkpoint } from '../decisions/checkpoint.js';
import { keyIdOf } from '../decisions/keys.js';
import type { ChainPass, ChainStart } from './chain-pass.js';
import { diagnose } from './forensics.js';
import type { VerifyBreak, VerifyReport } from './report.js';
import type { RowSource } from './row-source.js';

/**
 * Checking the signed checkpoints against the chain, and the chain pass and
 * the checkpoints together: the report names the first break in seq order,
 * whether it is a bad signature, a checkpoint the chain no longer matches, a
 * checkpoint that names a removed one as signed before it, a row that breaks
 * the chain, or checkpoints beyond the last row.
 */

export interface PendingCheckpoint extends Checkpoint {
  /** Where it came from, for messages. */
  readonly origin: 'log' | 'file' | 'export';
}

export interface JudgeInput {
  readonly source: string;
  readonly start: ChainStart;
  readonly anchor: PendingCheckpoint | null;
  readonly checkpoints: readonly PendingCheckpoint[];
  readonly external: PendingCheckpoint | null;
  readonly keys: readonly KeyObject[];
  /**
   * The replica whose log this is: what the log records, or the export's header;
   * null when it names none. A checkpoint signed for another replica is a break.
   */
  readonly replicaId: string | null;
  /** Where replicaId was read, for messages: "this log" or "the export's header". */
  readonly replicaSource: string;
  readonly warnings: string[];
  readonly started: number;
  readonly diagnosis: () => RowSource;
}

/**
 * Put the chain pass and the checkpoints together, in seq order, so the break
 * reported is the first one: a bad signature, a checkpoint the chain no longer
 * matches, a row that breaks the chain, or checkpoints beyond the last row.
 */
export function judge(input: JudgeInput, pass: ChainPass): VerifyReport {
  const { start, keys, warnings } = input;
  const keyIds = keys.map(keyIdOf);
  const byKeyId = new Map(keys.map((k) => [keyIdOf(k), k] as const));
  const lastVerified = start.seq + pass.rows;
  let verified = 0;
  let lastCheckpoint: PendingCheckpoint | null = null;
  let external: VerifyReport['external'] = null;

  const finish = (brk: VerifyBreak | null): VerifyReport => {
    const rows = brk === null ? pass.rows : Math.min(pass.rows, Math.max(0, brk.seq - 1 - start.seq));
    const lastSeq = rows > 0 ? start.seq + rows : null;
    const signedThrough = Math.max(lastCheckpoint?.seq ?? start.seq, start.seq);
    // A warning, not a break: a server killed before its first checkpoint leaves a genuine
    // log like this, and verify cannot know the checkpointEveryRows/Seconds it ran with.
    if (brk === null && lastSeq !== null && input.checkpoints.length === 0 && input.anchor === null) {
      warnings.push(
        `${rows} rows and no signed checkpoint: the server signs one every checkpointEveryRows rows or checkpointEverySeconds and on shutdown, ` +
          'so either it was stopped before its first one, or the checkpoints were deleted and the log may have been rewritten from scratch, which the chain alone cannot show; ' +
          'check it against a checkpoint exported earlier (verdict audit checkpoint --export, then --from-checkpoint FILE)',
      );
    }
    const unsignedRows = lastSeq === null ? 0 : Math.max(0, lastSeq - signedThrough);
    const spacing = widestSpacing(start.seq, input.checkpoints, signedThrough);
    if (brk === null && lastCheckpoint !== null && spacing > 0 && unsignedRows > 2 * spacing) {
      warnings.push(
        `${unsignedRows} rows after the last checkpoint (seq ${signedThrough}) are not signed, more than twice the most rows between two checkpoints before it (${spacing}): ` +
          'checkpoints may have been removed from the end so that rows they signed could be rewritten; check against a checkpoint exported earlier (--from-checkpoint)',
      );
    }
    return {
      ok: brk === null,
      source: input.source,
      rows,
      firstSeq: pass.firstSeq,
      lastSeq,
      start: { seq: start.seq, from: start.from },
      keyIds,
      checkpoints: { total: input.checkpoints.length, verified, lastSeq: lastCheckpoint?.seq ?? null, lastTimeMs: lastCheckpoint?.timeMs ?? null },
      unsignedRows,
      external,
      break: brk,
      warnings,
      seconds: (performance.now() - input.started) / 1000,
    };
  };

  const signatureBreak = (cp: PendingCheckpoint): VerifyBreak | null => {
    const key = byKeyId.get(cp.keyId);
    const what = describeCheckpoint(cp);
    if (key === undefined) {
      return { kind: 'bad-signature', seq: cp.seq, message: `${what} is signed by key ${cp.keyId}, not by the trusted key ${keyIds.join(' or ')}` };
    }
    if (!checkpointSignatureValid(cp, key)) {
      return { kind: 'bad-signature', seq: cp.seq, message: `${what} has an invalid signature: its seq, hash, time, kind or replica were altered, or it was forged` };
    }
    return otherReplica(cp, input.replicaId, input.replicaSource);
  };

  if (input.anchor !== null) {
    const brk = signatureBreak(input.anchor);
    if (brk !== null) return finish(brk);
  }

  // A log that starts from genesis where an exported checkpoint says a chain already
  // existed: the file (or its -wal) was replaced by a new log, or everything was cut back.
  const startedAnew = (cp: PendingCheckpoint): string =>
    cp.origin === 'file' && start.from === 'genesis'
      ? `. This log starts from genesis (seq 1): either it was cut or rewritten, or it is a new log that replaced the one the checkpoint was signed for (its file or -wal removed while in use, a restore from an old backup); look for the earlier file (${input.source}-wal.orphaned-*, ${input.source}-wal.replaced-*, backups)`
      : '';
  const pending = [...input.checkpoints, ...(input.external ? [input.external] : [])].sort((a, b) => a.seq - b.seq);
  const held = heldCheckpointSeqs(input.checkpoints, input.anchor);
  let lastGood = start.seq;
  for (const cp of pending) {
    if (pass.failure !== null && cp.seq >= pass.failure.expected) break;
    const brk = signatureBreak(cp);
    if (brk !== null) return finish(brk);
    if (cp.seq <= start.seq) {
      // Before the start (pruned): only the signature can be checked, and agreement at the start itself.
      if (cp.seq === start.seq && !Buffer.from(cp.hash).equals(start.hash)) {
        return finish({ kind: 'changed', seq: start.seq, message: `${describeCheckpoint(cp)} disagrees with ${describeStart(start)} about the chain hash at seq ${start.seq}` });
      }
      if (cp.origin === 'file') external = { seq: cp.seq, status: cp.seq === start.seq ? 'matched' : 'before-anchor' };
      else verified++;
      continue;
    }
    if (cp.seq > lastVerified) {
      const end = lastVerified;
      return finish({
        kind: 'truncated',
        seq: end + 1,
        message:
          (end === start.seq
            ? `the log holds no rows after seq ${start.seq}, but ${describeCheckpoint(cp)} covers seq ${cp.seq}: rows ${start.seq + 1}..${cp.seq} were removed`
            : `the log ends at seq ${end}, but ${describeCheckpoint(cp)} covers seq ${cp.seq}: rows ${end + 1}..${cp.seq} were removed`) + startedAnew(cp),
      });
    }
    const computed = pass.hashesAt.get(cp.seq);
    if (computed === undefined || !computed.equals(cp.hash)) {
      return finish({
        kind: 'changed',
        seq: lastGood + 1,
        message: `the chain hash at seq ${cp.seq} does not match ${describeCheckpoint(cp)}: rows in seq ${lastGood + 1}..${cp.seq} were rewritten with recomputed hashes` + startedAnew(cp),
      });
    }
    const removed = removedPredecessor(cp, start.seq, held);
    if (removed !== null) return finish(removed);
    if (cp.origin === 'file') {
      external = { seq: cp.seq, status: 'matched' };
    } else {
      verified++;
      lastCheckpoint = cp;
    }
    lastGood = cp.seq;
  }
  if (pass.failure !== null) {
    return finish(diagnose(input.diagnosis(), pass.failure.index, pass.failure.expected, pass.failure.prev, start));
  }
  return finish(null);
}

/** The seqs a v2 checkpoint may name as signed before it: the checkpoints held, and the start's anchor (only their seqs are read). */
export function heldCheckpointSeqs(checkpoints: readonly { readonly seq: number }[], anchor: { readonly seq: number } | null): ReadonlySet<number> {
  return new Set([...checkpoints.map((cp) => cp.seq), ...(anchor !== null ? [anchor.seq] : [])]);
}

/**
 * The break when a v2 checkpoint names, as signed before it, a seq after the
 * chain's start (`startSeq`) where no checkpoint is held (heldCheckpointSeqs):
 * it was removed (perhaps so that the rows it signed could be rewritten). A seq
 * at or before the start was pruned with its rows (or lies before an export's
 * range); a v1 checkpoint names none. Full verification and the console's
 * incremental passes both apply it.
 */
export function removedPredecessor(cp: PendingCheckpoint, startSeq: number, held: ReadonlySet<number>): VerifyBreak | null {
  const previous = cp.previousSeq;
  if (previous === null || !namesRemovedCheckpoint(cp, startSeq, held)) return null;
  return {
    kind: 'checkpoint-removed',
    seq: previous,
    message:
      `${describeCheckpoint(cp)} names seq ${previous} as the checkpoint signed before it, which is missing: checkpoints were removed, ` +
      `so rows after seq ${previous} may have been rewritten; check the log against a checkpoint exported earlier (--from-checkpoint) or restore it from a backup`,
  };
}

/**
 * The break when a checkpoint with a valid signature was signed for another
 * replica (format v3) than `replicaId`, which the log (or an export's header)
 * records: one replica's checkpoint copied into another's log, or the log's
 * recorded id changed. A v2 or v1 checkpoint names no replica and is not judged.
 */
export function otherReplica(cp: PendingCheckpoint, replicaId: string | null, replicaSource: string): VerifyBreak | null {
  if (cp.replicaId === null || cp.replicaId === replicaId) return null;
  const recorded = replicaId === null ? `${replicaSource} records no replica id` : `${replicaSource} records replica ${replicaId}`;
  return {
    kind: 'replica-mismatch',
    seq: cp.seq,
    message:
      `${describeCheckpoint(cp)} was signed in the log of replica ${cp.replicaId}, but ${recorded}: ` +
      `either the checkpoint (with the rows it signs) was copied from replica ${cp.replicaId}'s log, or the recorded replica id was changed; ` +
      `compare this log with replica ${cp.replicaId}'s own log and its exported checkpoints, and restore the right one from a backup`,
  };
}

/** The rule of removedPredecessor on a checkpoint's seq and previous_seq alone (all the console's incremental passes read of checkpoints already verified). */
export function namesRemovedCheckpoint(cp: { readonly previousSeq: number | null }, startSeq: number, held: ReadonlySet<number>): boolean {
  const previous = cp.previousSeq;
  return previous !== null && previous > startSeq && !held.has(previous);
}

/** The most rows between consecutive checkpoints (from the chain's start) up to `through`: how far apart the writer signs. */
function widestSpacing(from: number, checkpoints: readonly PendingCheckpoint[], through: number): number {
  let widest = 0;
  let previous = from;
  for (const seq of checkpoints.map((cp) => cp.seq).filter((seq) => seq > from && seq <= through).sort((a, b) => a - b)) {
    widest = Math.max(widest, seq - previous);
    previous = seq;
  }
  return widest;
}

function describeCheckpoint(cp: PendingCheckpoint): string {
  const when = new Date(cp.timeMs).toISOString();
  if (cp.origin === 'file') return `the exported checkpoint (seq ${cp.seq}, signed ${when})`;
  return `the ${cp.kind === 'anchor' ? 'prune anchor' : 'checkpoint'} at seq ${cp.seq} (signed ${when})`;
}

function describeStart(start: ChainStart): string {
  return start.from === 'anchor' ? 'the prune anchor' : start.from === 'genesis' ? 'the genesis hash' : 'the export';
}
