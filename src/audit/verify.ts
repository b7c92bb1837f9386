import type { KeyObject } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { GENESIS_HASH } from '../decisions/chain.js';
import { recordedReplicaId } from '../decisions/replica.js';
import { decisionsShapeProblem } from '../decisions/schema.js';
import { checkpointFormat, type Checkpoint } from '../decisions/checkpoint.js';
import { keyIdOf } from '../decisions/keys.js';
import { VerdictError, messageOf } from '../errors.js';
import { PARALLEL_MIN_ROWS, chainPassDb, chainPassRows, type ChainStart } from './chain-pass.js';
import { judge, type PendingCheckpoint } from './checkpoints.js';
import { headerBreak, unsignedHeaderBreak, unsignedHeaderWarning, type ExportedRange } from './export-header.js';
import { readExportFile, type ExportContents } from './export-reader.js';
import { hasCheckpointTable, openLogFile, readCheckpoints, type LogFile } from './log-file.js';
import type { VerifyBreak, VerifyReport } from './report.js';
import { arrayRowSource, dbRowSource } from './row-source.js';
import { startStorageCheck, storageProblem, type StorageCheck } from './storage-check.js';
import { useMmap } from './verify-range.js';

/**
 * `verdict audit verify`: recompute the hash chain of a decision log (or of a
 * JSONL export), check every checkpoint signature against a trusted public
 * key, and name the first break and its kind (report.ts).
 *
 * The chain pass (chain-pass.ts) streams the rows and keeps O(1) state, so
 * verifying a large log is limited by SQLite's read speed and SHA-256; the
 * checkpoints are judged against it (checkpoints.ts); only when a break is
 * found does forensics.ts index the rows (row-source.ts) to tell the kinds
 * apart.
 */

export interface VerifyOptions {
  /** Trusted public keys; a checkpoint signed by any other key is a break. */
  readonly publicKeys: readonly KeyObject[];
  /** An exported checkpoint kept elsewhere: makes truncation after it detectable. */
  readonly fromCheckpoint?: Checkpoint;
  /** Threads for a large log, this one included; default: one per core, at most 4. 1 verifies in this thread alone. */
  readonly workers?: number;
  /**
   * Whether SQLite's integrity check runs too (default true): it proves the indexes
   * that queries read through hold the rows the chain holds. About 2 s a million
   * rows on top of the chain; `--chain-only` turns it off.
   */
  readonly checkStorage?: boolean;
  /**
   * Export only: verify an export whose header is unsigned (format v1, of an
   * earlier release) as far as its rows and checkpoints go, and say the header
   * was not authenticated, instead of failing with `unsigned-header`.
   */
  readonly allowUnsignedHeader?: boolean;
}

/**
 * Verify the decision log at `path`, opened read-only (safe while the server runs:
 * it sees the last committed state). Large logs are split into ranges verified
 * by worker threads, one per core.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE / DECISION_LOG_CORRUPT when the file cannot be read as a log,
 *   CONFIG_INVALID when checkpoints exist and no public key was given
 */
export async function verifyLog(path: string, options: VerifyOptions): Promise<VerifyReport> {
  const started = performance.now();
  const log = openLogFile(path, 'unchecked');
  const db = log.db;
  let beside: StorageCheck | null = null;
  try {
    useMmap(db);
    const warnings: string[] = [];
    const misshapen = decisionsShapeProblem(db) ?? versionProblem(log);
    if (misshapen !== null) return structureBroken(path, misshapen, started);
    const stored = readCheckpoints(log).map((c) => ({ ...c, origin: 'log' as const }));
    if (!hasCheckpointTable(log)) warnings.push(`schema v${log.schemaVersion}: this log predates signed checkpoints; only the hash chain is checked`);
    const anchor = stored.filter((c) => c.kind === 'anchor').reduce<PendingCheckpoint | null>((a, b) => (a === null || b.seq > a.seq ? b : a), null);
    const start: ChainStart = anchor === null ? { seq: 0, hash: GENESIS_HASH, from: 'genesis' } : { seq: anchor.seq, hash: Buffer.from(anchor.hash), from: 'anchor' };
    const checkpoints = stored.filter((c) => c.kind === 'checkpoint');
    const external = options.fromCheckpoint ? { ...options.fromCheckpoint, origin: 'file' as const } : null;
    if (stored.length + (external ? 1 : 0) > 0 && options.publicKeys.length === 0) {
      throw new VerdictError('CONFIG_INVALID', `${path} has signed checkpoints but no public key was given to check them; pass --pubkey FILE`);
    }
    const wanted = [...checkpoints, ...(external ? [external] : [])].map((c) => c.seq);
    const checkStorage = options.checkStorage !== false;
    // When the chain is verified by several threads, the integrity check takes a thread of its own beside them.
    if (checkStorage && (options.workers === undefined ? spanOf(db) >= PARALLEL_MIN_ROWS : options.workers > 1)) beside = startStorageCheck(path);
    const pass = await chainPassDb(db, path, start, wanted, options.workers);
    const replicaId = replicaOf(db, path, warnings);
    const judged = judge(
      { source: path, start, anchor, checkpoints, external, keys: options.publicKeys, replicaId, replicaSource: 'this log', warnings, started, diagnosis: () => dbRowSource(db, log.columns) },
      pass,
    );
    const report = { ...judged, replicaId };
    if (!report.ok) return report;
    if (!checkStorage) return { ...report, storage: 'skipped' };
    const damaged = beside === null ? storageProblem(db) : await beside.result;
    const seconds = (performance.now() - started) / 1000;
    if (damaged === null) return { ...report, storage: 'checked', seconds };
    return { ...report, ok: false, storage: 'checked', break: { kind: 'structure', seq: 0, message: damaged }, seconds };
  } catch (error) {
    if (error instanceof VerdictError) throw error;
    throw new VerdictError('DECISION_LOG_CORRUPT', `cannot read the decision log ${path}: ${messageOf(error)}`, { cause: error });
  } finally {
    await beside?.cancel();
    db.close();
  }
}

/** The replica id the log records; one that is not a replica id is reported as a warning, not a reason to stop verifying the chain. */
function replicaOf(db: LogFile['db'], path: string, warnings: string[]): string | null {
  try {
    return recordedReplicaId(db, path);
  } catch (error) {
    warnings.push(messageOf(error));
    return null;
  }
}

/** Rows from the first seq to the last, as the chain pass will see them. */
function spanOf(db: LogFile['db']): number {
  const span = db.prepare('SELECT max(seq) - min(seq) + 1 FROM decisions').pluck().get() as number | null;
  return span ?? 0;
}

/** A log whose version says it predates columns it has: lowered to make verify expect less of it. */
function versionProblem(log: LogFile): string | null {
  if (log.schemaVersion < 3 && (log.columns.has('details') || log.columns.has('format'))) {
    return `the log says schema v${log.schemaVersion} but has the columns schema v3 added (details, format): its version was lowered`;
  }
  return null;
}

/** The report for a log whose tables are not shaped as verdict makes them: nothing else is checked. */
function structureBroken(path: string, message: string, started: number): VerifyReport {
  return {
    ok: false,
    source: path,
    rows: 0,
    firstSeq: null,
    lastSeq: null,
    start: { seq: 0, from: 'genesis' },
    keyIds: [],
    checkpoints: { total: 0, verified: 0, lastSeq: null, lastTimeMs: null },
    unsignedRows: 0,
    external: null,
    break: { kind: 'structure', seq: 0, message },
    warnings: [],
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Verify a JSONL export (`verdict audit export`). The chain inside the export is
 * recomputed and every checkpoint it carries is checked; where the export does
 * not start at seq 1 or at a checkpoint, its link to the rows before it is taken
 * on trust, and the report says so. An unsigned header (format v1) fails with
 * `unsigned-header` once all else verified, unless `allowUnsignedHeader`.
 * @throws VerdictError INPUT_UNREADABLE / INPUT_INVALID for a file that is not an export
 */
export function verifyExport(path: string, options: VerifyOptions): VerifyReport {
  const started = performance.now();
  const contents = readExportFile(path);
  const report = judgeExport(path, contents, options, started);
  const header = contents.header;
  if (header === null || header.signed !== null) return report;
  // A break that shows tampering says more than the missing signature, which the warning still names.
  if (!report.ok || options.allowUnsignedHeader === true) return { ...report, warnings: [...report.warnings, unsignedHeaderWarning(header)] };
  return { ...report, ok: false, break: unsignedHeaderBreak(header) };
}

function judgeExport(path: string, contents: ExportContents, options: VerifyOptions, started: number): VerifyReport {
  const warnings: string[] = [];
  let keys = options.publicKeys;
  if (keys.length === 0 && contents.publicKey !== null) {
    keys = [contents.publicKey];
    warnings.push(`the public key came from the export itself (${keyIdOf(contents.publicKey)}); pass --pubkey with a copy kept elsewhere for independent assurance`);
  }
  const external = options.fromCheckpoint ? { ...options.fromCheckpoint, origin: 'file' as const } : null;
  if (contents.checkpoints.length + (external ? 1 : 0) > 0 && keys.length === 0) {
    throw new VerdictError('CONFIG_INVALID', `${path} carries signed checkpoints but no public key is known; pass --pubkey FILE`);
  }
  const first = contents.rows[0];
  let start: ChainStart;
  let anchor: PendingCheckpoint | null = null;
  const before = first === undefined ? undefined : contents.checkpoints.find((c) => c.seq === first.seq - 1);
  if (first === undefined || first.seq === 1) {
    start = { seq: 0, hash: GENESIS_HASH, from: 'genesis' };
  } else if (before !== undefined) {
    anchor = { ...before, origin: 'export' };
    start = { seq: before.seq, hash: Buffer.from(before.hash), from: before.kind === 'anchor' ? 'anchor' : 'checkpoint' };
  } else {
    start = { seq: first.seq - 1, hash: Buffer.from(first.prevHash ?? GENESIS_HASH), from: 'unanchored' };
    warnings.push(`the export starts at seq ${first.seq} with no checkpoint at seq ${first.seq - 1}: its link to the rows before it is taken on trust`);
  }
  const checkpoints = contents.checkpoints.filter((c) => c !== before).map((c) => ({ ...c, origin: 'export' as const }));
  const wanted = [...checkpoints, ...(external ? [external] : [])].map((c) => c.seq);
  const pass = chainPassRows(contents.rows, start, wanted);
  // The header's replicaId is checked against every checkpoint that names one (format v3): those are signed, the header is not.
  const replicaId = contents.header?.replicaId ?? null;
  const judged = judge({ source: path, start, anchor, checkpoints, external, keys, replicaId, replicaSource: "the export's header", warnings, started, diagnosis: () => arrayRowSource(contents.rows) }, pass);
  // The header's own break first: a relabelled header makes every other message about the range misleading.
  const relabelled = contents.header === null ? null : headerBreak(contents.header, exportedRange(contents), keys);
  const header = contents.header === null ? 'missing' : relabelled !== null ? 'failed' : contents.header.signed === null ? 'unsigned' : 'signed';
  const report = { ...judged, replicaId, header } as const;
  if (relabelled !== null) return { ...report, ok: false, break: relabelled };
  const cut = missingBeginning(contents);
  if (cut !== null) return { ...report, ok: false, rows: 0, lastSeq: null, break: cut };
  // The end line is unsigned: it catches a cut-off copy, not an attacker.
  if (report.ok && contents.footer !== null && contents.footer.rows !== contents.rows.length) {
    const lastSeq = report.lastSeq ?? start.seq;
    return {
      ...report,
      ok: false,
      break: {
        kind: 'truncated',
        seq: lastSeq + 1,
        message: `the export's end line says it holds ${contents.footer.rows} rows but it holds ${contents.rows.length}: rows after seq ${lastSeq} are missing`,
      },
    };
  }
  const headerEnd = contents.header?.toSeq ?? null;
  if (report.ok && headerEnd !== null && (report.lastSeq ?? start.seq) < headerEnd) {
    const lastSeq = report.lastSeq ?? start.seq;
    return {
      ...report,
      ok: false,
      break: { kind: 'truncated', seq: lastSeq + 1, message: `the export's header says it ends at seq ${headerEnd}, but its last row is seq ${lastSeq}: rows ${lastSeq + 1}..${headerEnd} are missing` },
    };
  }
  if (report.ok && contents.footer === null) {
    return { ...report, warnings: [...report.warnings, 'the export has no end line: it may have been cut off (its signed checkpoints still bound what is there)'] };
  }
  return report;
}

/** What the header's signature is checked against: the first and last rows, and each checkpoint's message format. */
function exportedRange(contents: ExportContents): ExportedRange {
  const first = contents.rows[0];
  const last = contents.rows[contents.rows.length - 1];
  const hex = (hash: Uint8Array | null): string | null => (hash === null ? null : Buffer.from(hash).toString('hex'));
  return {
    first: first === undefined ? null : { seq: first.seq, prevHash: hex(first.prevHash) },
    last: last === undefined ? null : { seq: last.seq, hash: hex(last.hash) },
    checkpointFormats: contents.checkpoints.map(checkpointFormat),
  };
}

/**
 * The break when an export's beginning is missing: no header line (verdict
 * writes it first), or a first row other than the one the header names. This
 * catches lines cut from the top, which the chain cannot show when the rest
 * starts at a checkpoint or between two (an export of a range may start
 * anywhere); a header rewritten to match fails its signature (headerBreak),
 * except under an unsigned header: the export then fails as unsigned-header,
 * or, accepted with allowUnsignedHeader, reads as an export of a shorter
 * range, which the report's start names.
 */
function missingBeginning(contents: ExportContents): VerifyBreak | null {
  const first = contents.rows[0];
  if (contents.header === null) {
    const before = first === undefined ? '' : `, so rows before seq ${first.seq} may be missing`;
    return { kind: 'truncated', seq: first?.seq ?? 1, message: `the export has no header line, which verdict audit export writes first: its beginning was cut off${before}` };
  }
  const from = contents.header.fromSeq;
  if (first === undefined || from === first.seq) return null;
  if (from === null) return { kind: 'inserted', seq: first.seq, message: `the export's header says it holds no rows, but it holds rows from seq ${first.seq}` };
  if (first.seq > from) {
    const missing = first.seq - 1 === from ? `row ${from} is missing` : `rows ${from}..${first.seq - 1} are missing`;
    return { kind: 'truncated', seq: from, message: `the export's header says it starts at seq ${from}, but its first row is seq ${first.seq}: ${missing} (its beginning was cut off)` };
  }
  return { kind: 'inserted', seq: first.seq, message: `the export's header says it starts at seq ${from}, but its first row is seq ${first.seq}, before it` };
}
