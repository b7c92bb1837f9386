/**
 * `verdict audit checkpoint`: the latest signed checkpoint of a log, written
 * to a self-describing file to keep where the log's host cannot write; later
 * `verdict audit verify --from-checkpoint FILE` reads it back, so a tail cut
 * off together with its checkpoints still shows.
 */
import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_V2, checkpointFormat, checkpointMessage, type Checkpoint, type CheckpointKind } from '../decisions/checkpoint.js';
import { REPLICA_ID_PATTERN, REPLICA_ID_RULE, recordedReplicaId } from '../decisions/replica.js';
import { keyIdOf, parsePublicKey, publicKeyPem } from '../decisions/keys.js';
import { VerdictError, messageOf } from '../errors.js';
import { previousSeqColumn, readCheckpointReplicaId, readPreviousSeq, replicaIdColumn, withLogFile } from './log-file.js';

/**
 * The format of the file follows the checkpoint's: v3 for a checkpoint of
 * format v3 (it carries `previousSeq` and `replicaId`, which its signature
 * covers), v2 for one of format v2 (`previousSeq` only), v1 for one of format
 * v1, each written as the release that introduced it wrote it. The name tells
 * a reader which message was signed: a reader that knows only an older format
 * would rebuild the older message and call a genuine signature bad. All are read.
 */
export const CHECKPOINT_EXPORT_FORMAT = 'verdict.checkpoint-export.v3';
export const CHECKPOINT_EXPORT_FORMAT_V2 = 'verdict.checkpoint-export.v2';
export const CHECKPOINT_EXPORT_FORMAT_V1 = 'verdict.checkpoint-export.v1';

type CheckpointExportFormat = typeof CHECKPOINT_EXPORT_FORMAT | typeof CHECKPOINT_EXPORT_FORMAT_V2 | typeof CHECKPOINT_EXPORT_FORMAT_V1;
const EXPORT_FORMATS: readonly string[] = [CHECKPOINT_EXPORT_FORMAT, CHECKPOINT_EXPORT_FORMAT_V2, CHECKPOINT_EXPORT_FORMAT_V1];

/** The file `verdict audit checkpoint --export` writes: self-describing, kept away from the log. */
export interface CheckpointExport {
  readonly format: CheckpointExportFormat;
  readonly kind: CheckpointKind;
  readonly seq: number;
  readonly hash: string;
  readonly timeMs: number;
  readonly time: string;
  readonly keyId: string;
  readonly signature: string;
  /** The seq of the checkpoint or anchor signed before it (format v2); null for a v1 checkpoint. */
  readonly previousSeq: number | null;
  /** The replica id the log recorded when it was signed (format v3); absent for a v2 or v1 checkpoint. */
  readonly replicaId?: string;
  /** The signed message, for people re-implementing verification. */
  readonly message: string;
  /** SPKI PEM of the key that signed it. */
  readonly publicKey: string;
}

/** A checkpoint as JSON: in a checkpoint export and as a line of a JSONL export (parseCheckpointJson reads both). */
export function checkpointJson(checkpoint: Checkpoint): Pick<CheckpointExport, 'kind' | 'seq' | 'hash' | 'timeMs' | 'time' | 'keyId' | 'signature' | 'previousSeq' | 'replicaId'> {
  return {
    kind: checkpoint.kind,
    seq: checkpoint.seq,
    hash: Buffer.from(checkpoint.hash).toString('hex'),
    timeMs: checkpoint.timeMs,
    time: new Date(checkpoint.timeMs).toISOString(),
    keyId: checkpoint.keyId,
    signature: Buffer.from(checkpoint.signature).toString('base64'),
    previousSeq: checkpoint.previousSeq,
    // Absent, not null, for a v2 or v1 checkpoint: such lines and files look as earlier releases wrote them.
    ...(checkpoint.replicaId === null ? {} : { replicaId: checkpoint.replicaId }),
  };
}

export function toExport(checkpoint: Checkpoint, publicKey: KeyObject): CheckpointExport {
  const signed = checkpointFormat(checkpoint);
  return {
    format: signed === CHECKPOINT_FORMAT ? CHECKPOINT_EXPORT_FORMAT : signed === CHECKPOINT_FORMAT_V2 ? CHECKPOINT_EXPORT_FORMAT_V2 : CHECKPOINT_EXPORT_FORMAT_V1,
    ...checkpointJson(checkpoint),
    message: checkpointMessage(checkpoint).toString('utf8'),
    publicKey: publicKeyPem(publicKey),
  };
}

/**
 * Write an exported checkpoint durably (fsynced) with a trailing newline.
 * @throws VerdictError INPUT_UNREADABLE when the file cannot be written
 */
export function writeCheckpointExport(path: string, data: CheckpointExport): void {
  try {
    const fd = fs.openSync(path, 'w', 0o644);
    try {
      fs.writeSync(fd, `${JSON.stringify(data, null, 2)}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (error) {
    throw new VerdictError('INPUT_UNREADABLE', `cannot write the checkpoint to ${path}: ${messageOf(error)}`, { cause: error });
  }
}

/**
 * Read and check the shape of an exported checkpoint. Its signature is checked
 * by the verifier against the trusted key, not here.
 * @throws VerdictError INPUT_UNREADABLE or INPUT_INVALID naming the file and the field
 */
export function readCheckpointExport(path: string): { checkpoint: Checkpoint; publicKey: KeyObject | null } {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (error) {
    throw new VerdictError('INPUT_UNREADABLE', `cannot read the checkpoint file ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new VerdictError('INPUT_INVALID', `${path} is not JSON: ${messageOf(error)}`, { cause: error });
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new VerdictError('INPUT_INVALID', `${path}: the checkpoint must be a JSON object`);
  const format = (data as Record<string, unknown>).format;
  if (typeof format !== 'string' || !EXPORT_FORMATS.includes(format)) {
    throw new VerdictError('INPUT_INVALID', `${path}: format must be ${CHECKPOINT_EXPORT_FORMAT}, ${CHECKPOINT_EXPORT_FORMAT_V2} or ${CHECKPOINT_EXPORT_FORMAT_V1} (a file of verdict audit checkpoint --export), not ${JSON.stringify(format)}`);
  }
  const parsed = parseCheckpointJson(data, path);
  // The format says which message was signed: v3 names the checkpoint before it and the replica, v2 the checkpoint only.
  if ((format === CHECKPOINT_EXPORT_FORMAT || format === CHECKPOINT_EXPORT_FORMAT_V2) && parsed.checkpoint.previousSeq === null) {
    throw new VerdictError('INPUT_INVALID', `${path}: previousSeq must be an integer in a ${format} file (the seq of the checkpoint signed before it)`);
  }
  if (format === CHECKPOINT_EXPORT_FORMAT && parsed.checkpoint.replicaId === null) {
    throw new VerdictError('INPUT_INVALID', `${path}: replicaId must be given in a ${format} file (the replica whose log the checkpoint was signed in)`);
  }
  // An older-named file carrying newer fields (a v1 name with previousSeq, as the release before the v2 name wrote
  // for a v2 checkpoint) is still read: the signature, not the file's name, decides which message was signed.
  return parsed;
}

/** Validate a checkpoint given as JSON (an export file, or a line of a JSONL export). */
export function parseCheckpointJson(data: unknown, origin: string): { checkpoint: Checkpoint; publicKey: KeyObject | null } {
  const bad = (field: string, want: string): VerdictError => new VerdictError('INPUT_INVALID', `${origin}: ${field} must be ${want}`);
  if (typeof data !== 'object' || data === null) throw bad('the checkpoint', 'a JSON object');
  const o = data as Record<string, unknown>;
  if (o.kind !== 'checkpoint' && o.kind !== 'anchor') throw bad('kind', '"checkpoint" or "anchor"');
  if (!Number.isSafeInteger(o.seq) || (o.seq as number) < 0) throw bad('seq', 'a non-negative integer');
  if (typeof o.hash !== 'string' || !/^[0-9a-f]{64}$/.test(o.hash)) throw bad('hash', '64 lower-case hex digits');
  if (!Number.isSafeInteger(o.timeMs)) throw bad('timeMs', 'an integer (milliseconds since the epoch)');
  if (typeof o.keyId !== 'string') throw bad('keyId', 'a string');
  if (typeof o.signature !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(o.signature)) throw bad('signature', 'base64');
  // Absent or null: a v1 checkpoint (earlier releases wrote no previousSeq).
  const previousSeq = o.previousSeq ?? null;
  if (previousSeq !== null && (!Number.isSafeInteger(previousSeq) || (previousSeq as number) < 0 || (previousSeq as number) > (o.seq as number))) {
    throw bad('previousSeq', `null or an integer from 0 to seq (${o.seq as number})`);
  }
  // Absent or null: a v2 or v1 checkpoint, which names no replica.
  const replicaId = o.replicaId ?? null;
  if (replicaId !== null && (typeof replicaId !== 'string' || !REPLICA_ID_PATTERN.test(replicaId))) throw bad('replicaId', `null or ${REPLICA_ID_RULE}`);
  const publicKey = typeof o.publicKey === 'string' ? parsePublicKey(o.publicKey, `${origin}: publicKey`) : null;
  if (publicKey !== null && keyIdOf(publicKey) !== o.keyId) throw bad('publicKey', `the key named by keyId ${o.keyId}`);
  return {
    checkpoint: {
      kind: o.kind,
      seq: o.seq as number,
      hash: Buffer.from(o.hash, 'hex'),
      timeMs: o.timeMs as number,
      keyId: o.keyId,
      signature: Buffer.from(o.signature, 'base64'),
      previousSeq: previousSeq as number | null,
      replicaId,
    },
    publicKey,
  };
}

/**
 * The newest checkpoint of the log at `path` by seq (an anchor when everything
 * was pruned since), with the replica id the log records; null when it has none.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE / DECISION_LOG_CORRUPT (a recorded replica id that is not one included)
 */
export function latestCheckpoint(path: string): { readonly checkpoint: Checkpoint; readonly replicaId: string | null } | null {
  return withLogFile(path, 'read the checkpoints of', (log) => {
    if (log.schemaVersion < 2) return null;
    const row = log.db
      .prepare(
        `SELECT kind, seq, hash, time_ms, key_id, signature, ${previousSeqColumn(log)} AS previous_seq, ${replicaIdColumn(log)} AS replica_id FROM checkpoints ORDER BY seq DESC, kind DESC, id DESC LIMIT 1`,
      )
      .get() as { kind: string; seq: number; hash: Buffer; time_ms: number; key_id: string; signature: Buffer; previous_seq: unknown; replica_id: unknown } | undefined;
    if (row === undefined) return null;
    const checkpoint: Checkpoint = {
      kind: row.kind === 'anchor' ? 'anchor' : 'checkpoint',
      seq: row.seq,
      hash: row.hash,
      timeMs: row.time_ms,
      keyId: row.key_id,
      signature: row.signature,
      previousSeq: readPreviousSeq(row.previous_seq),
      replicaId: readCheckpointReplicaId(row.replica_id),
    };
    return { checkpoint, replicaId: recordedReplicaId(log.db, path) };
  });
}
