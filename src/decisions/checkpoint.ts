/**
 * Signed checkpoints over the hash chain.
 *
 * A checkpoint says "the chain hash after row `seq` is `hash`", signed with the
 * log's Ed25519 key. An anchor says the same about the last row removed by
 * `verdict audit prune`: rows up to and including `seq` are gone on purpose and
 * the chain continues from `hash`. The kind is part of what is signed, so a
 * checkpoint can never be passed off as an anchor (which would excuse deleting
 * the rows before it).
 *
 * The signed message (format `verdict.checkpoint.v3`) is the UTF-8 bytes of
 *
 * ```
 * JSON.stringify(["verdict.checkpoint.v3", kind, seq, hash_hex, time_ms, previous_seq, replica_id])
 * ```
 *
 * with `kind` "checkpoint" or "anchor", `seq`, `time_ms` and `previous_seq`
 * integers, `hash_hex` the 32-byte chain hash as 64 lower-case hex digits, and
 * `replica_id` the replica id the log records (replica.ts) when it was signed.
 * `previous_seq` is the seq of the checkpoint or anchor signed before this one
 * in the same log (0 for the first); an anchor names the last one at or before
 * its own seq. The signature is plain Ed25519 (RFC 8032, no pre-hash) over
 * those bytes.
 *
 * What the link proves: the signed checkpoints of a log form a chain of their
 * own, so deleting one that a later one names is a break (`verify` reports
 * `checkpoint-removed`), unless the named seq lies before the log's start (the
 * prune that removed those rows removed it too). What it cannot prove: that
 * checkpoints were not cut from the end, together with the rows they signed or
 * so that those rows can be rewritten; the last checkpoint names no successor.
 * Only a checkpoint exported earlier (`verdict audit checkpoint --export`, then
 * `verify --from-checkpoint`) shows a cut tail.
 *
 * What the replica id proves: which replica's log the checkpoint was signed in,
 * so one copied into another replica's log (or that log's recorded id changed)
 * is a break (`replica-mismatch`), even where replicas share a signing key.
 *
 * Format `verdict.checkpoint.v2` is the same array without `replica_id`: what
 * earlier releases signed, and what this one signs in a log that records no
 * replica id (one written by tools, not by a server). Such a checkpoint (stored
 * with `replica_id` NULL, `replicaId: null` here) still verifies and names no
 * replica. Format `verdict.checkpoint.v1`, older still, lacks `previous_seq`
 * too; such a checkpoint (stored with `previous_seq` NULL) still verifies, but
 * proves nothing about the checkpoints around it. The first v2 or v3
 * checkpoint after a v1 one names its seq. Which message was signed is told by
 * which fields are null, so nulling one turns the message into another and the
 * signature fails.
 *
 * @example
 * const message = checkpointMessage({ kind: 'checkpoint', seq: 42, hash, timeMs: Date.now(), previousSeq: 32, replicaId: 'verdict-0' });
 * // ["verdict.checkpoint.v3","checkpoint",42,"9f86d0…",1748779200000,32,"verdict-0"]
 */
import { verify, type KeyObject } from 'node:crypto';
import type { CheckpointSigner } from './keys.js';

/** The format this build signs in a log that records its replica id. */
export const CHECKPOINT_FORMAT = 'verdict.checkpoint.v3';
/** The format of earlier releases, and of this one in a log that records no replica id. */
export const CHECKPOINT_FORMAT_V2 = 'verdict.checkpoint.v2';
/** The format of releases before v2, verified but never signed any more. */
export const CHECKPOINT_FORMAT_V1 = 'verdict.checkpoint.v1';

export type CheckpointKind = 'checkpoint' | 'anchor';

/** What a signature covers. */
export interface CheckpointBody {
  readonly kind: CheckpointKind;
  readonly seq: number;
  readonly hash: Uint8Array;
  readonly timeMs: number;
  /**
   * The seq of the checkpoint or anchor signed before this one in the same log,
   * 0 for the first (format v2); null for a v1 checkpoint, which names none.
   */
  readonly previousSeq: number | null;
  /**
   * The replica id the log recorded when it was signed (format v3); null for a
   * v2 or v1 checkpoint, which names no replica.
   */
  readonly replicaId: string | null;
}

export interface Checkpoint extends CheckpointBody {
  readonly keyId: string;
  readonly signature: Uint8Array;
}

/** The format of a checkpoint's message: v3 when it names a replica, else v2, or v1 when it names no previous seq either. */
export function checkpointFormat(body: CheckpointBody): typeof CHECKPOINT_FORMAT | typeof CHECKPOINT_FORMAT_V2 | typeof CHECKPOINT_FORMAT_V1 {
  if (body.replicaId !== null) return CHECKPOINT_FORMAT;
  return body.previousSeq === null ? CHECKPOINT_FORMAT_V1 : CHECKPOINT_FORMAT_V2;
}

/** The exact bytes that are signed (see the module comment). */
export function checkpointMessage(body: CheckpointBody): Buffer {
  const hashHex = Buffer.from(body.hash).toString('hex');
  const format = checkpointFormat(body);
  // A v3 body without a previous seq is never signed: its message keeps the null, so no signature matches it.
  const fields =
    format === CHECKPOINT_FORMAT
      ? [format, body.kind, body.seq, hashHex, body.timeMs, body.previousSeq, body.replicaId]
      : format === CHECKPOINT_FORMAT_V2
        ? [format, body.kind, body.seq, hashHex, body.timeMs, body.previousSeq]
        : [format, body.kind, body.seq, hashHex, body.timeMs];
  return Buffer.from(JSON.stringify(fields), 'utf8');
}

/** A body this build signs: format v3 (v2 where the log records no replica id), so it names the checkpoint before it. */
export interface SignableCheckpointBody extends CheckpointBody {
  readonly previousSeq: number;
}

export function signCheckpoint(body: SignableCheckpointBody, signer: CheckpointSigner): Checkpoint {
  return { ...body, keyId: signer.keyId, signature: signer.sign(checkpointMessage(body)) };
}

/** True when `publicKey` made this checkpoint's signature over its own fields. */
export function checkpointSignatureValid(checkpoint: Checkpoint, publicKey: KeyObject): boolean {
  if (checkpoint.signature.length !== 64 || checkpoint.hash.length !== 32) return false;
  try {
    return verify(null, checkpointMessage(checkpoint), publicKey, checkpoint.signature);
  } catch {
    return false;
  }
}
