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
import fs from 'node:fs';
import { VerdictError, messageOf } from '../errors.js';
import { keyIdOf, parsePublicKey, publicKeyPem, type CheckpointSigner } from './keys.js';

export const CHECKPOINT_FORMAT = 'verdict.checkpoint.v1';
export const CHECKPOINT_EXPORT_FORMAT = 'verdict.checkpoint-export.v1';

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

/** The file `verdict audit checkpoint --export` writes: self-describing, kept away from the log. */
export interface CheckpointExport {
  readonly format: typeof CHECKPOINT_EXPORT_FORMAT;
  readonly kind: CheckpointKind;
  readonly seq: number;
  readonly hash: string;
  readonly timeMs: number;
  readonly time: string;
  readonly keyId: string;
  readonly signature: string;
  /** The signed message, for people re-implementing verification. */
  readonly message: string;
  /** SPKI PEM of the key that signed it. */
  readonly publicKey: string;
}

export function toExport(checkpoint: Checkpoint, publicKey: KeyObject): CheckpointExport {
  return {
    format: CHECKPOINT_EXPORT_FORMAT,
    kind: checkpoint.kind,
    seq: checkpoint.seq,
    hash: Buffer.from(checkpoint.hash).toString('hex'),
    timeMs: checkpoint.timeMs,
    time: new Date(checkpoint.timeMs).toISOString(),
    keyId: checkpoint.keyId,
    signature: Buffer.from(checkpoint.signature).toString('base64'),
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
  return parseCheckpointJson(data, path);
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
    },
    publicKey,
  };
}
