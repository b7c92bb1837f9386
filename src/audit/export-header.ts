/**
 * The signed header of a JSONL export (`verdict audit export`, format
 * `verdict.export.v2`): what range of which replica's chain the export holds,
 * signed with the log's key so that a header rewritten to match an export cut
 * back to one of its checkpoints no longer verifies.
 *
 * The signed message (format `verdict.export-header.v1`) is the UTF-8 bytes of
 *
 * ```
 * JSON.stringify(["verdict.export-header.v1", replica_id, from_seq, to_seq, start_hash_hex, end_hash_hex, exported_at])
 * ```
 *
 * with `replica_id` the log's replica id (null when it records none),
 * `from_seq` and `to_seq` the first and last row exported (both null for an
 * export of no rows), `start_hash_hex` the chain hash the first row follows
 * (its `prev_hash`) and `end_hash_hex` the last row's hash, as 64 lower-case
 * hex digits (null for an export of no rows), and `exported_at` the header's
 * ISO 8601 time. The two hashes bind the range to the chain: the header fits
 * only the rows it was written with. Its first element differs from every
 * checkpoint message's, so neither signature can pass for the other.
 *
 * Exports of format `verdict.export.v1` (earlier releases) have an unsigned
 * header, and a signed one rewritten as v1 looks the same: nothing binds its
 * range, replica, time or the rows after the export's last checkpoint. Such an
 * export fails verification (`unsigned-header`) unless the verifier accepts
 * unsigned headers knowingly; even then it is a break when the export carries
 * a checkpoint that names a replica (format v3), since only releases that sign
 * the header write those, so its header was replaced.
 */
import { verify, type KeyObject } from 'node:crypto';
import { CHECKPOINT_FORMAT_V1, CHECKPOINT_FORMAT_V2 } from '../decisions/checkpoint.js';
import { keyIdOf, type CheckpointSigner } from '../decisions/keys.js';
import type { VerifyBreak } from './report.js';

export const EXPORT_HEADER_MESSAGE = 'verdict.export-header.v1';

/** What the header's signature covers. */
export interface HeaderBinding {
  readonly replicaId: string | null;
  readonly fromSeq: number | null;
  readonly toSeq: number | null;
  /** The chain hash before the first row (its prev_hash), hex; null without rows. */
  readonly startHash: string | null;
  /** The last row's hash, hex; null without rows. */
  readonly endHash: string | null;
  readonly exportedAt: string;
}

/** A header as read back: its binding, and its signature when it is of a release that signs it. */
export interface ReadHeader extends HeaderBinding {
  readonly signed: { readonly keyId: string; readonly signature: Buffer } | null;
}

export function exportHeaderMessage(binding: HeaderBinding): Buffer {
  const fields = [EXPORT_HEADER_MESSAGE, binding.replicaId, binding.fromSeq, binding.toSeq, binding.startHash, binding.endHash, binding.exportedAt];
  return Buffer.from(JSON.stringify(fields), 'utf8');
}

/** The header's signed members: `keyId` and `signature` (base64). */
export function signHeader(binding: HeaderBinding, signer: CheckpointSigner): { keyId: string; signature: string } {
  return { keyId: signer.keyId, signature: signer.sign(exportHeaderMessage(binding)).toString('base64') };
}

/** The rows of an export as far as the header is concerned. */
export interface ExportedRange {
  readonly first: { readonly seq: number; readonly prevHash: string | null } | null;
  readonly last: { readonly seq: number; readonly hash: string | null } | null;
  /** The signed message format of each checkpoint line. */
  readonly checkpointFormats: readonly string[];
}

/**
 * The break in an export's header: a signature that does not verify with a
 * trusted key, a signed range or hash the rows do not match, or an unsigned
 * header on an export that carries checkpoints only header-signing releases
 * write (the signed header was replaced). Null when the header holds, or is
 * an earlier release's unsigned header (the caller warns).
 */
export function headerBreak(header: ReadHeader, range: ExportedRange, keys: readonly KeyObject[]): VerifyBreak | null {
  const seq = header.fromSeq ?? range.first?.seq ?? 0;
  const what = headerClaims(header);
  if (header.signed === null) {
    const named = range.checkpointFormats.some((format) => format !== CHECKPOINT_FORMAT_V2 && format !== CHECKPOINT_FORMAT_V1);
    if (!named) return null;
    return {
      kind: 'bad-signature',
      seq,
      message:
        `${what} is unsigned (format verdict.export.v1), but the export carries checkpoints that name their replica, which only releases that sign the header write: ` +
        'the signed header was replaced, perhaps to present the export as a shorter range than was exported; compare it with the export as first received',
    };
  }
  const key = keys.find((k) => keyIdOf(k) === header.signed?.keyId);
  if (key === undefined) {
    return { kind: 'bad-signature', seq, message: `${what} is signed by key ${header.signed.keyId}, not by the trusted key ${keys.map(keyIdOf).join(' or ') || '(none given: pass --pubkey)'}` };
  }
  if (!signatureValid(header, key)) {
    return {
      kind: 'bad-signature',
      seq,
      message: `${what} has an invalid signature: its range, replica, hashes or time were altered (an export cut back to one of its checkpoints and relabelled reads like this), or it was forged; compare it with the export as first received`,
    };
  }
  // A first row other than the header's fromSeq is a cut or added beginning, which the caller names.
  if (range.first !== null && range.first.seq === header.fromSeq && range.first.prevHash !== header.startHash) {
    return { kind: 'changed', seq: range.first.seq, message: `the first row (seq ${range.first.seq}) does not follow the chain hash ${what} signs (${String(header.startHash)}): it is not the row that was exported there` };
  }
  if (range.last !== null && header.toSeq !== null && range.last.seq > header.toSeq) {
    return { kind: 'inserted', seq: header.toSeq + 1, message: `${what} signs a range ending at seq ${header.toSeq}, but the export holds rows up to seq ${range.last.seq}: rows were added after the export was made` };
  }
  if (range.last !== null && range.last.seq === header.toSeq && range.last.hash !== header.endHash) {
    return { kind: 'changed', seq: range.last.seq, message: `the last row (seq ${range.last.seq}) does not have the hash ${what} signs (${String(header.endHash)}): rows were replaced after the export was made` };
  }
  return null;
}

/** The header as it describes itself, for messages: "the export's header (seq 8..45, replica alpha)". */
function headerClaims(header: ReadHeader): string {
  return `the export's header (${header.fromSeq === null ? 'no rows' : `seq ${header.fromSeq}..${String(header.toSeq)}`}, replica ${header.replicaId ?? 'unnamed'})`;
}

/**
 * What an unsigned header leaves unproven. A v1 header and a v2 header
 * rewritten as v1 by someone who cut or altered the export read alike, so
 * neither is named as the cause.
 */
const UNPROVEN = 'its range, replica and time are unproven, and so are the rows after its last checkpoint';
const DOWNGRADE = 'a signed export cut or altered, with its header rewritten as v1, reads the same';

/** The break for an unsigned header the verifier did not accept: a downgraded export would otherwise verify like a signed one. */
export function unsignedHeaderBreak(header: ReadHeader): VerifyBreak {
  return {
    kind: 'unsigned-header',
    seq: 0,
    message:
      `${headerClaims(header)} is unsigned (format verdict.export.v1): ${UNPROVEN}. Releases before headers were signed wrote such headers, but ${DOWNGRADE}. ` +
      'Its rows and checkpoints verified; if this export came from an earlier release, run again with --allow-unsigned-header and compare the range and replica with the ones exported',
  };
}

/** The warning on an unsigned header the verifier accepted (--allow-unsigned-header). */
export function unsignedHeaderWarning(header: ReadHeader): string {
  return `${headerClaims(header)} is unsigned (format verdict.export.v1): ${UNPROVEN} (${DOWNGRADE}); compare the range and replica above with the ones exported`;
}

function signatureValid(header: ReadHeader, key: KeyObject): boolean {
  if (header.signed === null || header.signed.signature.length !== 64) return false;
  try {
    return verify(null, exportHeaderMessage(header), key, header.signed.signature);
  } catch {
    return false;
  }
}
