import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { CURRENT_FORMAT, formatName, storedRowFromRaw, storedRowProblem, type StoredRow } from '../decisions/chain.js';
import { CHECKPOINT_FORMAT } from '../decisions/checkpoint.js';
import { COLUMNS, storedRowList } from '../decisions/columns.js';
import { publicKeyPem, type CheckpointSigner } from '../decisions/keys.js';
import { recordedReplicaId } from '../decisions/replica.js';
import { VerdictError, messageOf } from '../errors.js';
import { checkpointJson } from './checkpoint-export.js';
import { signHeader, type HeaderBinding } from './export-header.js';
import { readCheckpoints, withLogFile, type LogFile } from './log-file.js';
import { utf8Check } from './stored-text.js';

/**
 * JSON lines export of the decision log, for a SIEM and for verification away
 * from the database (`verdict audit verify --export FILE`).
 *
 * Line types, in this order:
 * - `{"type":"header", "format":"verdict.export.v2", …, "fromSeq", "toSeq",
 *   "startHash", "endHash", "replicaId", "keyId", "publicKey": PEM, "signature"}`
 *   (replicaId: the log's replica id, null when it records none); the signature
 *   binds the range, the replica and the chain hashes around the range
 *   (export-header.ts). Format v1, of earlier releases, had no signature,
 *   startHash or endHash (nor replicaId before it existed).
 * - the checkpoint or prune anchor at seq fromSeq-1, when there is one (the
 *   export's signed starting point); checkpoint and anchor lines carry
 *   `previousSeq`, the seq they name as signed before them (format v2,
 *   checkpoint.ts), null for a v1 checkpoint, and `replicaId` for a checkpoint
 *   of format v3
 * - `{"type":"decision", "seq", "decisionId", "time", "timeMs", …, "ruleIds": [],
 *   "errors": [], "request": {}, "latencyUs", "details", "format", "prevHash",
 *   "hash"}` for every row of the range (one member per column of the table in
 *   columns.ts, plus `time` in ISO 8601), each followed by the checkpoints
 *   signed at its seq. A row of canonical format 1 (written before `details`
 *   existed) has neither `details` nor `format`.
 * - `{"type":"end", "rows", "lastSeq", "lastHash"}`
 *
 * The JSON columns (rule ids, errors, request, details) are written as JSON
 * values, so a SIEM can index them. The chain covers their stored text, which
 * is what `JSON.stringify` of the value gives back; for the rare stored text
 * that does not round-trip that way, the line also carries `ruleIdsText`,
 * `errorsText`, … with the exact text, and verifiers use that.
 */

/** The format this build writes: its header is signed (export-header.ts). */
export const EXPORT_FORMAT = 'verdict.export.v2';
/** The format of earlier releases, with an unsigned header; still read. */
export const EXPORT_FORMAT_V1 = 'verdict.export.v1';

export interface ExportOptions {
  /** Export from the first row made at or after this time (ms); rows are contiguous from there. */
  readonly since?: number;
  /** ...up to the last row before the first one made at or after this time (ms). */
  readonly until?: number;
  /** Restrict to seq <= toSeq (prune uses this). */
  readonly toSeq?: number;
  /** Written into the header so a reader can find the key; verification should use its own copy. */
  readonly publicKey?: KeyObject | null;
  /** Signs the header (export-header.ts): the log's checkpoint signing key. */
  readonly signer: CheckpointSigner;
}

export interface ExportSummary {
  readonly rows: number;
  readonly checkpoints: number;
  readonly fromSeq: number | null;
  readonly toSeq: number | null;
}

/**
 * Write the export of the log at `dbPath` through `write` (called with chunks of
 * about 1 MiB). Reads inside one read transaction, so the rows and checkpoints
 * are one consistent snapshot even while the server appends.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE / DECISION_LOG_CORRUPT
 */
export function exportLog(dbPath: string, write: (chunk: string) => void, options: ExportOptions): ExportSummary {
  return withLogFile(dbPath, 'export', (log) => log.db.transaction(() => exportSnapshot(log, write, options))());
}

function exportSnapshot(log: LogFile, write: (chunk: string) => void, options: ExportOptions): ExportSummary {
  const db = log.db;
  const tip = (db.prepare('SELECT max(seq) FROM decisions').pluck().get() as number | null) ?? null;
  const first = (db.prepare('SELECT min(seq) FROM decisions').pluck().get() as number | null) ?? null;
  // Time is not strictly monotonic in seq (clocks step), so the range is by seq:
  // from the first row at or after `since`, contiguous, which is what a chain needs.
  let fromSeq = first;
  if (options.since !== undefined && first !== null) {
    fromSeq = (db.prepare('SELECT min(seq) FROM decisions WHERE time_ms >= ?').pluck().get(Math.trunc(options.since)) as number | null) ?? null;
  }
  let toSeq = tip;
  if (options.until !== undefined && tip !== null) {
    const firstAfter = db.prepare('SELECT min(seq) FROM decisions WHERE time_ms >= ?').pluck().get(Math.trunc(options.until)) as number | null;
    if (firstAfter !== null) toSeq = firstAfter - 1;
  }
  if (options.toSeq !== undefined && toSeq !== null) toSeq = Math.min(toSeq, options.toSeq);
  const empty = fromSeq === null || toSeq === null || toSeq < fromSeq;

  let buffer = '';
  const emit = (line: unknown): void => {
    buffer += `${JSON.stringify(line)}\n`;
    if (buffer.length >= 1 << 20) {
      write(buffer);
      buffer = '';
    }
  };
  const hashAt = (column: 'prev_hash' | 'hash', seq: number | null): string | null => {
    if (empty || seq === null) return null;
    const value: unknown = db.prepare(`SELECT ${column} FROM decisions WHERE seq = ?`).pluck().get(seq);
    return Buffer.isBuffer(value) ? value.toString('hex') : null;
  };
  const binding: HeaderBinding = {
    // Where the central store files this export; null for a log no server has named yet.
    replicaId: recordedReplicaId(db, log.path),
    fromSeq: empty ? null : fromSeq,
    toSeq: empty ? null : toSeq,
    startHash: hashAt('prev_hash', fromSeq),
    endHash: hashAt('hash', toSeq),
    exportedAt: new Date().toISOString(),
  };
  const signed = signHeader(binding, options.signer);
  emit({
    type: 'header',
    format: EXPORT_FORMAT,
    canonical: formatName(CURRENT_FORMAT),
    checkpointFormat: CHECKPOINT_FORMAT,
    source: log.path,
    exportedAt: binding.exportedAt,
    fromSeq: binding.fromSeq,
    toSeq: binding.toSeq,
    startHash: binding.startHash,
    endHash: binding.endHash,
    replicaId: binding.replicaId,
    keyId: signed.keyId,
    publicKey: options.publicKey ? publicKeyPem(options.publicKey) : null,
    signature: signed.signature,
  });
  let rows = 0;
  let checkpoints = 0;
  let lastHash: string | null = null;
  if (!empty) {
    const cps = readCheckpoints(log, { from: (fromSeq as number) - 1, to: toSeq as number });
    let c = 0;
    const emitCheckpointsThrough = (seq: number): void => {
      for (let cp = cps[c]; cp !== undefined && cp.seq <= seq; cp = cps[++c]) {
        emit({ type: cp.kind, ...checkpointJson(cp) });
        checkpoints++;
      }
    };
    emitCheckpointsThrough((fromSeq as number) - 1);
    const select = db.prepare(`SELECT ${storedRowList(log.columns)} FROM decisions WHERE seq BETWEEN ? AND ? ORDER BY seq`).raw(true);
    const checked = utf8Check(db, log.columns);
    for (const raw of select.iterate(fromSeq, toSeq) as IterableIterator<unknown[]>) {
      const row = checked(storedRowFromRaw(raw));
      // A value verdict never writes would reach the SIEM as something else (a BLOB as {"type":"Buffer"}, JSONB as the text it replaced).
      const problem = storedRowProblem(row);
      if (problem !== null) {
        throw new VerdictError(
          'DECISION_LOG_CORRUPT',
          `${log.path}: the row at seq ${row.seq} cannot be exported: ${problem}, which verdict never writes, so the log was altered; run verdict audit verify --db ${log.path} to find every change`,
        );
      }
      const line = decisionLine(row);
      emit(line);
      rows++;
      lastHash = line.hash as string | null;
      emitCheckpointsThrough(row.seq);
    }
  }
  emit({ type: 'end', rows, lastSeq: empty ? null : toSeq, lastHash });
  if (buffer !== '') write(buffer);
  return { rows, checkpoints, fromSeq: empty ? null : fromSeq, toSeq: empty ? null : toSeq };
}

/** One `decision` line: a member per column its format covers, JSON columns as values. */
function decisionLine(row: StoredRow): Record<string, unknown> {
  const line: Record<string, unknown> = { type: 'decision', seq: row.seq };
  const v1 = row.format === 1;
  COLUMNS.forEach((column, k) => {
    if (v1 && column.since > 1) return;
    const value = row.values[k];
    if (column.key === 'timeMs') line.time = isoTime(value);
    if (column.type === 'json' || column.type === 'json?') jsonColumn(line, column.key, value);
    else line[column.key] = value;
  });
  if (!v1) line.format = row.format;
  line.prevHash = row.prevHash?.toString('hex') ?? null;
  line.hash = row.hash?.toString('hex') ?? null;
  return line;
}

/** The parsed value for a SIEM, plus the exact text when re-serialising would not give it back. */
function jsonColumn(line: Record<string, unknown>, name: string, text: unknown): void {
  if (text === null) {
    line[name] = null;
    return;
  }
  let value: unknown;
  try {
    value = JSON.parse(String(text));
  } catch {
    line[name] = null;
    line[`${name}Text`] = text;
    return;
  }
  line[name] = value;
  if (JSON.stringify(value) !== text) line[`${name}Text`] = text;
}

function isoTime(ms: unknown): string | null {
  const date = new Date(ms as number);
  return typeof ms !== 'number' || Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/**
 * Write an export to `path` (created or replaced), fsynced before returning.
 * @throws VerdictError INPUT_UNREADABLE when the file cannot be written
 */
export function exportLogToFile(dbPath: string, path: string, options: ExportOptions): ExportSummary {
  let fd: number;
  try {
    fd = fs.openSync(path, 'w', 0o640);
  } catch (error) {
    throw new VerdictError('INPUT_UNREADABLE', `cannot write the export ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
  }
  try {
    const summary = exportLog(dbPath, (chunk) => writeAll(fd, chunk, path), options);
    fs.fsyncSync(fd);
    return summary;
  } finally {
    fs.closeSync(fd);
  }
}

function writeAll(fd: number, chunk: string, path: string): void {
  try {
    fs.writeSync(fd, chunk);
  } catch (error) {
    throw new VerdictError('INPUT_UNREADABLE', `cannot write the export ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
  }
}

