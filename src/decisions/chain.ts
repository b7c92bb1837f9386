/**
 * The hash chain over the decision log.
 *
 * Canonical form of a row (format `verdict.decision.v1`): the UTF-8 bytes of
 *
 * ```
 * JSON.stringify(["verdict.decision.v1", seq, decision_id, time_ms, caller, request_id,
 *                 principal_id, action, resource_type, resource_id, effect, reason,
 *                 rule_ids, errors, policy_version, request, latency_us])
 * ```
 *
 * with every value exactly as stored in its column: integers as JSON numbers,
 * `request_id` as `null` when absent, and the JSON columns (`rule_ids`, `errors`,
 * `request`) as the JSON *strings* holding their stored text — not re-parsed, so
 * a verifier never has to re-canonicalise JSON and any change to the stored text
 * shows. JSON.stringify is deterministic for this input (no objects, safe
 * integers, well-formed strings), so any language can rebuild the bytes.
 *
 * `hash = SHA-256(prev_hash ‖ canonical)`, where `prev_hash` is the previous
 * row's `hash` (32 bytes) and the first row's `prev_hash` is 32 zero bytes.
 * Including `seq` makes a deleted, inserted or reordered row visible even where
 * its neighbours happen to be re-linked.
 *
 * @example
 * const hash = chainHash(GENESIS_HASH, { seq: 1, ...toRow(record) });
 */
import { hash as oneShotHash } from 'node:crypto';
import type { DecisionRow, SequencedRow } from './row.js';

export const CANONICAL_FORMAT = 'verdict.decision.v1';

/** The `prev_hash` of the first row in a chain. */
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

/** The canonical bytes of one stored row (see the module comment). */
export function canonicalRowBytes(row: SequencedRow): Buffer {
  return Buffer.from(canonicalRowText(row, row.seq), 'utf8');
}

/** The canonical form as a string, for the row as if stored at `seq`. */
function canonicalRowText(row: DecisionRow, seq: number): string {
  return JSON.stringify([
    CANONICAL_FORMAT,
    seq,
    row.decisionId,
    row.timeMs,
    row.caller,
    row.requestId,
    row.principalId,
    row.action,
    row.resourceType,
    row.resourceId,
    row.effect,
    row.reason,
    row.ruleIds,
    row.errors,
    row.policyVersion,
    row.request,
    row.latencyUs,
  ]);
}

/** SHA-256(prevHash ‖ canonical bytes of row). */
export function chainHash(prevHash: Uint8Array, row: SequencedRow): Buffer {
  return hashAfter(prevHash, canonicalRowText(row, row.seq));
}

/** chainHash for a row about to be stored at `seq` (the writer's path: no copy of the row to add seq). */
export function chainHashAt(prevHash: Uint8Array, row: DecisionRow, seq: number): Buffer {
  return hashAfter(prevHash, canonicalRowText(row, seq));
}

// One reused buffer and the one-shot hash: a Hash object and a Buffer per row
// cost more than the SHA-256 itself, and the writer does this for every decision.
let scratch = Buffer.alloc(16 * 1024);

/** SHA-256(prev ‖ UTF-8 of text). */
function hashAfter(prev: Uint8Array, text: string): Buffer {
  // A UTF-16 code unit is at most 3 bytes of UTF-8, so this always fits.
  const need = prev.length + text.length * 3;
  if (scratch.length < need) scratch = Buffer.alloc(Math.max(need, scratch.length * 2));
  scratch.set(prev, 0);
  const n = scratch.write(text, prev.length, 'utf8');
  return oneShotHash('sha256', scratch.subarray(0, prev.length + n), 'buffer');
}

/**
 * A row as verification reads it: the 16 canonical values in canonical order
 * (which is also the column order of `decisions`), then prev_hash and hash.
 * Arrays rather than objects because verification is one tight loop over them.
 */
export type RawRow = [
  seq: number, decisionId: string, timeMs: number, caller: string, requestId: string | null, principalId: string,
  action: string, resourceType: string, resourceId: string, effect: string, reason: string, ruleIds: string,
  errors: string, policyVersion: string, request: string, latencyUs: number, prevHash: Buffer | null, hash: Buffer | null,
];

/** The columns of a RawRow, for `SELECT ... FROM decisions` with better-sqlite3's raw mode. */
export const RAW_COLUMNS = `seq, decision_id, time_ms, caller, request_id, principal_id, action, resource_type, resource_id,
  effect, reason, rule_ids, errors, policy_version, request, latency_us, prev_hash, hash`;

/**
 * chainHash for a RawRow, hashed as if its seq were `seq` (verification uses
 * that to find where a moved row was written). Same bytes as canonicalRowBytes;
 * a test holds the two together.
 */
export function rawChainHash(prev: Uint8Array, r: RawRow, seq: number = r[0]): Buffer {
  const canonical = JSON.stringify([
    CANONICAL_FORMAT, seq, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15],
  ]);
  return hashAfter(prev, canonical);
}
