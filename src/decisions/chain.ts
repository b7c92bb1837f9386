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
import { createHash } from 'node:crypto';
import type { SequencedRow } from './row.js';

export const CANONICAL_FORMAT = 'verdict.decision.v1';

/** The `prev_hash` of the first row in a chain. */
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

/** The canonical bytes of one stored row (see the module comment). */
export function canonicalRowBytes(row: SequencedRow): Buffer {
  return Buffer.from(
    JSON.stringify([
      CANONICAL_FORMAT,
      row.seq,
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
    ]),
    'utf8',
  );
}

/** SHA-256(prevHash ‖ canonical bytes of row). */
export function chainHash(prevHash: Uint8Array, row: SequencedRow): Buffer {
  return createHash('sha256').update(prevHash).update(canonicalRowBytes(row)).digest();
}

/** A row as read back for verification. */
export interface ChainedRow extends SequencedRow {
  readonly prevHash: Uint8Array | null;
  readonly hash: Uint8Array | null;
}

export type ChainProblem = 'GAP' | 'PREV_HASH_MISMATCH' | 'HASH_MISMATCH';

export type ChainVerification =
  | { readonly ok: true; readonly rows: number; readonly lastHash: Buffer }
  | { readonly ok: false; readonly rows: number; readonly seq: number; readonly problem: ChainProblem; readonly message: string };

/**
 * Walk rows in `seq` order and report the first one that breaks the chain.
 * `start` lets a caller resume from a trusted anchor (a later checkpoint or a
 * pruned prefix); by default the chain must start at seq 1 from GENESIS_HASH.
 */
export function verifyChain(
  rows: Iterable<ChainedRow>,
  start: { readonly seq: number; readonly hash: Uint8Array } = { seq: 0, hash: GENESIS_HASH },
): ChainVerification {
  let expectedSeq = start.seq + 1;
  let prev: Buffer = Buffer.from(start.hash);
  let count = 0;
  for (const row of rows) {
    if (row.seq !== expectedSeq) {
      return { ok: false, rows: count, seq: row.seq, problem: 'GAP', message: `expected seq ${expectedSeq}, found ${row.seq}` };
    }
    if (row.prevHash === null || !prev.equals(row.prevHash)) {
      return { ok: false, rows: count, seq: row.seq, problem: 'PREV_HASH_MISMATCH', message: `seq ${row.seq}: prev_hash does not match the hash of seq ${row.seq - 1}` };
    }
    const hash = chainHash(prev, row);
    if (row.hash === null || !hash.equals(row.hash)) {
      return { ok: false, rows: count, seq: row.seq, problem: 'HASH_MISMATCH', message: `seq ${row.seq}: stored hash does not match the row's content` };
    }
    prev = hash;
    expectedSeq += 1;
    count += 1;
  }
  return { ok: true, rows: count, lastHash: prev };
}
