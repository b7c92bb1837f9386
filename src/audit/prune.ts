import type { KeyObject } from 'node:crypto';
import Database from 'better-sqlite3';
import { signCheckpoint, type Checkpoint } from '../decisions/checkpoint.js';
import type { CheckpointSigner } from '../decisions/keys.js';
import { recordedReplicaId } from '../decisions/replica.js';
import { migrate } from '../decisions/schema.js';
import { VerdictError, messageOf } from '../errors.js';
import { exportLogToFile, type ExportSummary } from './export.js';
import type { VerifyReport } from './report.js';
import { verifyLog } from './verify.js';

/**
 * Retention: remove the oldest rows and keep a signed anchor — the seq and hash
 * of the last row removed — so that what remains still verifies from it.
 *
 * The append-only triggers refuse DELETE unless the `audit_guard` table holds a
 * row; prune inserts that row, deletes, signs the anchor and removes the row in
 * one transaction, so no other connection ever sees deletion allowed. This is
 * the controlled path, not a secret: anyone who can write the file can do the
 * same (or drop the triggers). What stops them from deleting rows unnoticed is
 * that they cannot sign an anchor without the private key.
 *
 * Rows go in chunks, each its own short transaction with its own anchor, so a
 * running server's writer never waits long for the lock, and a crash halfway
 * leaves a log that verifies.
 */

export interface PruneOptions {
  /** Remove rows made before this time (ms since the epoch): the longest prefix of the log that is older. */
  readonly before: number;
  readonly signer: CheckpointSigner;
  /** The public half of `signer`'s key, and any older trusted keys, for the verification that comes first. */
  readonly publicKeys: readonly KeyObject[];
  /** Write the rows to be removed to this JSONL file first (fsynced before any deletion). */
  readonly exportTo?: string;
  /** Only report what would be removed. */
  readonly dryRun?: boolean;
  /** Rows per transaction. Default 5000. */
  readonly chunkRows?: number;
  /** How long to wait for the writer's lock. Default 5000 ms. */
  readonly busyTimeoutMs?: number;
}

export interface PruneResult {
  /** True when the log did not verify, so nothing was removed (see verification.break). */
  readonly refused: boolean;
  /** Rows removed (or that would be, in a dry run). */
  readonly rows: number;
  readonly fromSeq: number | null;
  readonly toSeq: number | null;
  /** The newest anchor written; null when nothing was pruned or in a dry run. */
  readonly anchor: Checkpoint | null;
  readonly exported: ExportSummary | null;
  readonly verification: VerifyReport;
}

/**
 * Verifies the whole log first and removes nothing when it does not verify
 * (`refused`): pruning would destroy the evidence.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE when the log cannot be opened or written
 */
export async function pruneLog(path: string, options: PruneOptions): Promise<PruneResult> {
  if (!Number.isFinite(options.before)) throw new VerdictError('USAGE', `prune needs a time to prune before, not ${String(options.before)}`);
  const chunkRows = options.chunkRows ?? 5000;
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: true, timeout: options.busyTimeoutMs ?? 5000 });
  } catch (error) {
    throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot open the decision log ${path} for writing: ${messageOf(error)}`, { cause: error });
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    // An older log gets the checkpoint table and triggers before anything is removed.
    migrate(db, path);

    const first = db.prepare('SELECT min(seq) FROM decisions').pluck().get() as number | null;
    const tip = db.prepare('SELECT max(seq) FROM decisions').pluck().get() as number | null;
    const firstKept = db.prepare('SELECT min(seq) FROM decisions WHERE time_ms >= ?').pluck().get(Math.trunc(options.before)) as number | null;
    const last = first === null ? null : firstKept === null ? tip : firstKept - 1;

    // Never remove what does not verify: the rows are the evidence of what went wrong.
    const verification = await verifyLog(path, { publicKeys: options.publicKeys });
    if (!verification.ok) {
      return { refused: true, rows: 0, fromSeq: null, toSeq: null, anchor: null, exported: null, verification };
    }
    if (first === null || last === null || last < first) {
      return { refused: false, rows: 0, fromSeq: null, toSeq: null, anchor: null, exported: null, verification };
    }
    const rows = last - first + 1;
    if (options.dryRun) return { refused: false, rows, fromSeq: first, toSeq: last, anchor: null, exported: null, verification };

    const exported = options.exportTo === undefined ? null : exportLogToFile(path, options.exportTo, { toSeq: last, signer: options.signer });
    if (exported !== null && exported.toSeq !== last) {
      throw new VerdictError('INTERNAL', `the export to ${options.exportTo} ended at seq ${String(exported.toSeq)}, not ${last}; nothing was pruned`);
    }

    const hashAt = db.prepare<[number], Buffer | null>('SELECT hash FROM decisions WHERE seq = ?').pluck();
    const guardOn = db.prepare("INSERT INTO audit_guard (id, reason) VALUES (1, 'verdict audit prune')");
    const guardOff = db.prepare('DELETE FROM audit_guard');
    const deleteRows = db.prepare<[number]>('DELETE FROM decisions WHERE seq <= ?');
    const deleteCheckpoints = db.prepare<[number]>('DELETE FROM checkpoints WHERE seq <= ?');
    const insertAnchor = db.prepare<[number, Buffer, number, string, Buffer, number, string | null]>(
      "INSERT INTO checkpoints (kind, seq, hash, time_ms, key_id, signature, previous_seq, replica_id) VALUES ('anchor', ?, ?, ?, ?, ?, ?, ?)",
    );
    // The anchor names the replica the log records, as the writer's checkpoints do (checkpoint.ts, format v3).
    const replicaId = recordedReplicaId(db, path);
    // The anchor names the newest checkpoint or anchor at or before its seq, read before the
    // deletion removes it (format v2, checkpoint.ts); 0 when there is none.
    const previousAt = db.prepare<[number], number | null>('SELECT max(seq) FROM checkpoints WHERE seq <= ?').pluck();
    let anchor: Checkpoint | null = null;
    for (let done = first - 1; done < last; ) {
      const end = Math.min(done + chunkRows, last);
      const step = db.transaction(() => {
        const hash = hashAt.get(end);
        if (hash === null || hash === undefined) {
          throw new VerdictError('DECISION_LOG_CORRUPT', `row ${end} vanished or lost its hash while pruning; stopped with rows up to ${done} pruned`);
        }
        const previousSeq = previousAt.get(end) ?? 0;
        const signed = signCheckpoint({ kind: 'anchor', seq: end, hash, timeMs: Date.now(), previousSeq, replicaId }, options.signer);
        guardOn.run();
        deleteRows.run(end);
        deleteCheckpoints.run(end);
        insertAnchor.run(end, hash, signed.timeMs, signed.keyId, Buffer.from(signed.signature), previousSeq, replicaId);
        guardOff.run();
        return signed;
      });
      try {
        anchor = step.immediate();
      } catch (error) {
        if (error instanceof VerdictError) throw error;
        throw new VerdictError('DECISION_LOG_UNAVAILABLE', `pruning ${path} stopped after seq ${done}: ${messageOf(error)} (what was pruned is anchored; run prune again)`, { cause: error });
      }
      done = end;
    }
    return { refused: false, rows, fromSeq: first, toSeq: last, anchor, exported, verification };
  } finally {
    db.close();
  }
}
