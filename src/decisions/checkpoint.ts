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
 * The signed message (format `verdict.checkpoint.v2`) is the UTF-8 bytes of
 *
 * ```
 * JSON.stringify(["verdict.checkpoint.v2", kind, seq, hash_hex, time_ms, previous_seq])
 * ```
 *
 * with `kind` "checkpoint" or "anchor", `seq`, `time_ms` and `previous_seq`
 * integers, and `hash_hex` the 32-byte chain hash as 64 lower-case hex digits.
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
 * Format `verdict.checkpoint.v1`, written by earlier releases, is the same
 * array without `previous_seq`; such a checkpoint (stored with `previous_seq`
 * NULL, `previousSeq: null` here) still verifies, but proves nothing about the
 * checkpoints around it. The first v2 checkpoint after a v1 one names its seq.
 *
 * @example
 * const message = checkpointMessage({ kind: 'checkpoint', seq: 42, hash, timeMs: Date.now(), previousSeq: 32 });
 * // ["verdict.checkpoint.v2","checkpoint",42,"9f86d0…",1748779200000,32]
 */
import { verify, type KeyObject } from 'node:crypto';
import type { CheckpointSigner } from './keys.js';

/** The format this build signs. */
export const CHECKPOINT_FORMAT = 'verdict.checkpoint.v2';
/** The format of earlier releases, verified but never signed any more. */
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
}

export interface Checkpoint extends CheckpointBody {
  readonly keyId: string;
  readonly signature: Uint8Array;
}

/** The exact bytes that are signed (see the module comment): v2, or v1 when `previousSeq` is null. */
export function checkpointMessage(body: CheckpointBody): Buffer {
  const hashHex = Buffer.from(body.hash).toString('hex');
  const fields =
    body.previousSeq === null
      ? [CHECKPOINT_FORMAT_V1, body.kind, body.seq, hashHex, body.timeMs]
      : [CHECKPOINT_FORMAT, body.kind, body.seq, hashHex, body.timeMs, body.previousSeq];
  return Buffer.from(JSON.stringify(fields), 'utf8');
}

/** A body this build signs: always format v2, so it names the checkpoint before it. */
export interface CheckpointBodyV2 extends CheckpointBody {
  readonly previousSeq: number;
}

export function signCheckpoint(body: CheckpointBodyV2, signer: CheckpointSigner): Checkpoint {
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
