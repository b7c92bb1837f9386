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
 * The signed message (format `verdict.checkpoint.v1`) is the UTF-8 bytes of
 *
 * ```
 * JSON.stringify(["verdict.checkpoint.v1", kind, seq, hash_hex, time_ms])
 * ```
 *
 * with `kind` "checkpoint" or "anchor", `seq` and `time_ms` integers, and
 * `hash_hex` the 32-byte chain hash as 64 lower-case hex digits. The signature
 * is plain Ed25519 (RFC 8032, no pre-hash) over those bytes.
 *
 * @example
 * const message = checkpointMessage({ kind: 'checkpoint', seq: 42, hash, timeMs: Date.now() });
 * // ["verdict.checkpoint.v1","checkpoint",42,"9f86d0…",1748779200000]
 */
import { verify, type KeyObject } from 'node:crypto';
import type { CheckpointSigner } from './keys.js';

export const CHECKPOINT_FORMAT = 'verdict.checkpoint.v1';

export type CheckpointKind = 'checkpoint' | 'anchor';

/** What a signature covers. */
export interface CheckpointBody {
  readonly kind: CheckpointKind;
  readonly seq: number;
  readonly hash: Uint8Array;
  readonly timeMs: number;
}

export interface Checkpoint extends CheckpointBody {
  readonly keyId: string;
  readonly signature: Uint8Array;
}

/** The exact bytes that are signed (see the module comment). */
export function checkpointMessage(body: CheckpointBody): Buffer {
  return Buffer.from(JSON.stringify([CHECKPOINT_FORMAT, body.kind, body.seq, Buffer.from(body.hash).toString('hex'), body.timeMs]), 'utf8');
}

export function signCheckpoint(body: CheckpointBody, signer: CheckpointSigner): Checkpoint {
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
