import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { VerdictError, messageOf } from '../errors.js';
import { CANONICAL_FORMAT, RAW_COLUMNS, type RawRow } from './chain.js';
import { CHECKPOINT_FORMAT, parseCheckpointJson, type Checkpoint } from './checkpoint.js';
import { keyIdOf, parsePublicKey, publicKeyPem } from './keys.js';
import { readSchemaVersion } from './schema.js';

/**
 * JSON lines export of the decision log, for a SIEM and for verification away
 * from the database (`verdict audit verify --export FILE`).
 *
 * Line types, in this order:
 * - `{"type":"header", "format":"verdict.export.v1", …, "publicKey": PEM}`
 * - the checkpoint or prune anchor at seq fromSeq-1, when there is one (the
 *   export's signed starting point)
 * - `{"type":"decision", "seq", "decisionId", "time", "timeMs", …, "ruleIds": [],
 *   "errors": [], "request": {}, "latencyUs", "prevHash", "hash"}` for every row
 *   of the range, each followed by the checkpoints signed at its seq
 * - `{"type":"end", "rows", "lastSeq", "lastHash"}`
 *
 * The JSON columns (rule ids, errors, request) are written as JSON values, so a
 * SIEM can index them. The chain covers their stored text, which is what
 * `JSON.stringify` of the value gives back; for the rare stored text that does
 * not round-trip that way, the line also carries `ruleIdsText` / `errorsText` /
 * `requestText` with the exact text, and verifiers use that.
 */

export const EXPORT_FORMAT = 'verdict.export.v1';

export interface ExportOptions {
  /** Export from the first row made at or after this time (ms); rows are contiguous from there. */
  readonly since?: number;
  /** ...up to the last row before the first one made at or after this time (ms). */
  readonly until?: number;
  /** Restrict to seq <= toSeq (prune uses this). */
  readonly toSeq?: number;
  /** Written into the header so a reader can find the key; verification should use its own copy. */
  readonly publicKey?: KeyObject | null;
}

export interface ExportSummary {
  readonly rows: number;
  readonly checkpoints: number;
  readonly fromSeq: number | null;
  readonly toSeq: number | null;
}

interface Header {
  readonly fromSeq: number | null;
  readonly toSeq: number | null;
}

export interface ExportContents {
  readonly header: Header | null;
  readonly footer: { readonly rows: number } | null;
  readonly rows: RawRow[];
  readonly checkpoints: Checkpoint[];
  readonly publicKey: KeyObject | null;
}

type JsonColumn = 'ruleIds' | 'errors' | 'request';

/**
 * Write the export of the log at `dbPath` through `write` (called with chunks of
 * about 1 MiB). Reads inside one read transaction, so the rows and checkpoints
 * are one consistent snapshot even while the server appends.
 * @throws VerdictError DECISION_LOG_UNAVAILABLE / DECISION_LOG_CORRUPT
 */
export function exportLog(dbPath: string, write: (chunk: string) => void, options: ExportOptions = {}): ExportSummary {
  let db: Database.Database;
  try {
    db = new Database(dbPath, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new VerdictError('DECISION_LOG_UNAVAILABLE', `cannot open the decision log ${dbPath}: ${messageOf(error)}`, { cause: error });
  }
  try {
    if (readSchemaVersion(db) === 0) throw new VerdictError('DECISION_LOG_CORRUPT', `${dbPath} is not a verdict decision log (no schema version); check --db`);
    return db.transaction(() => exportSnapshot(db, dbPath, write, options))();
  } catch (error) {
    if (error instanceof VerdictError) throw error;
    throw new VerdictError('DECISION_LOG_CORRUPT', `cannot export ${dbPath}: ${messageOf(error)}`, { cause: error });
  } finally {
    db.close();
  }
}

function exportSnapshot(db: Database.Database, dbPath: string, write: (chunk: string) => void, options: ExportOptions): ExportSummary {
  const hasCheckpoints = readSchemaVersion(db) >= 2;
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
  emit({
    type: 'header',
    format: EXPORT_FORMAT,
    canonical: CANONICAL_FORMAT,
    checkpointFormat: CHECKPOINT_FORMAT,
    source: dbPath,
    exportedAt: new Date().toISOString(),
    fromSeq: empty ? null : fromSeq,
    toSeq: empty ? null : toSeq,
    keyId: options.publicKey ? keyIdOf(options.publicKey) : null,
    publicKey: options.publicKey ? publicKeyPem(options.publicKey) : null,
  });
  let rows = 0;
  let checkpoints = 0;
  let lastHash: string | null = null;
  if (!empty) {
    const cps = hasCheckpoints
      ? (db
          .prepare('SELECT kind, seq, hash, time_ms, key_id, signature FROM checkpoints WHERE seq BETWEEN ? AND ? ORDER BY seq, id')
          .all((fromSeq as number) - 1, toSeq) as Array<{ kind: string; seq: number; hash: Buffer; time_ms: number; key_id: string; signature: Buffer }>)
      : [];
    let c = 0;
    const emitCheckpointsThrough = (seq: number): void => {
      while (c < cps.length && (cps[c]?.seq ?? Infinity) <= seq) {
        const cp = cps[c++]!;
        emit({
          type: cp.kind === 'anchor' ? 'anchor' : 'checkpoint',
          kind: cp.kind,
          seq: cp.seq,
          hash: cp.hash.toString('hex'),
          timeMs: cp.time_ms,
          time: new Date(cp.time_ms).toISOString(),
          keyId: cp.key_id,
          signature: cp.signature.toString('base64'),
        });
        checkpoints++;
      }
    };
    emitCheckpointsThrough((fromSeq as number) - 1);
    const select = db
      .prepare(
`SELECT ${RAW_COLUMNS} FROM decisions WHERE seq BETWEEN ? AND ? ORDER BY seq`,
      )
      .raw(true);
    for (const r of select.iterate(fromSeq, toSeq) as IterableIterator<RawRow>) {
      const line: Record<string, unknown> = {
        type: 'decision',
        seq: r[0],
        decisionId: r[1],
        time: isoTime(r[2]),
        timeMs: r[2],
        caller: r[3],
        requestId: r[4],
        principalId: r[5],
        action: r[6],
        resourceType: r[7],
        resourceId: r[8],
        effect: r[9],
        reason: r[10],
        ruleIds: null,
        errors: null,
        policyVersion: r[13],
        request: null,
        latencyUs: r[15],
        prevHash: r[16]?.toString('hex') ?? null,
        hash: r[17]?.toString('hex') ?? null,
      };
      jsonColumn(line, 'ruleIds', r[11]);
      jsonColumn(line, 'errors', r[12]);
      jsonColumn(line, 'request', r[14]);
      emit(line);
      rows++;
      lastHash = (line.hash as string | null) ?? null;
      emitCheckpointsThrough(r[0]);
    }
  }
  emit({ type: 'end', rows, lastSeq: empty ? null : toSeq, lastHash });
  if (buffer !== '') write(buffer);
  return { rows, checkpoints, fromSeq: empty ? null : fromSeq, toSeq: empty ? null : toSeq };
}

/** The parsed value for a SIEM, plus the exact text when re-serialising would not give it back. */
function jsonColumn(line: Record<string, unknown>, name: JsonColumn, text: string): void {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    line[`${name}Text`] = text;
    return;
  }
  line[name] = value;
  if (JSON.stringify(value) !== text) line[`${name}Text`] = text;
}

function isoTime(ms: number): string | null {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/**
 * Write an export to `path` (created or replaced), fsynced before returning.
 * @throws VerdictError INPUT_UNREADABLE when the file cannot be written
 */
export function exportLogToFile(dbPath: string, path: string, options: ExportOptions = {}): ExportSummary {
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

// ---------------------------------------------------------------- reading

/**
 * Read an export back for verification. Holds the rows in memory (about the
 * size of the file); split very large exports by time.
 * @throws VerdictError INPUT_UNREADABLE, or INPUT_INVALID naming the line and field
 */
export function readExportFile(path: string): ExportContents {
  let header: Header | null = null;
  let footer: { rows: number } | null = null;
  let publicKey: KeyObject | null = null;
  const rows: RawRow[] = [];
  const checkpoints: Checkpoint[] = [];
  let lineNo = 0;
  for (const text of readLines(path)) {
    lineNo++;
    if (text.trim() === '') continue;
    const where = `${path}:${lineNo}`;
    let line: unknown;
    try {
      line = JSON.parse(text);
    } catch (error) {
      throw new VerdictError('INPUT_INVALID', `${where}: not JSON (${messageOf(error)})`, { cause: error });
    }
    if (typeof line !== 'object' || line === null || Array.isArray(line)) throw new VerdictError('INPUT_INVALID', `${where}: expected a JSON object`);
    const o = line as Record<string, unknown>;
    switch (o.type) {
      case 'header': {
        if (o.format !== EXPORT_FORMAT) throw new VerdictError('INPUT_INVALID', `${where}: format ${JSON.stringify(o.format)} is not ${EXPORT_FORMAT}`);
        header = { fromSeq: typeof o.fromSeq === 'number' ? o.fromSeq : null, toSeq: typeof o.toSeq === 'number' ? o.toSeq : null };
        if (typeof o.publicKey === 'string') publicKey = parsePublicKey(o.publicKey, `${where}: publicKey`);
        break;
      }
      case 'decision':
        rows.push(rowFromLine(o, where));
        break;
      case 'checkpoint':
      case 'anchor':
        checkpoints.push(parseCheckpointJson(o, where).checkpoint);
        break;
      case 'end':
        footer = { rows: typeof o.rows === 'number' ? o.rows : -1 };
        break;
      default:
        throw new VerdictError('INPUT_INVALID', `${where}: unknown line type ${JSON.stringify(o.type)} (expected header, decision, checkpoint, anchor or end)`);
    }
  }
  if (lineNo === 0) throw new VerdictError('INPUT_INVALID', `${path} is empty; expected a verdict JSONL export`);
  return { header, footer, rows, checkpoints, publicKey };
}

function rowFromLine(o: Record<string, unknown>, where: string): RawRow {
  const str = (field: string): string => {
    const v = o[field];
    if (typeof v !== 'string') throw new VerdictError('INPUT_INVALID', `${where}: ${field} must be a string`);
    return v;
  };
  const int = (field: string): number => {
    const v = o[field];
    if (!Number.isSafeInteger(v)) throw new VerdictError('INPUT_INVALID', `${where}: ${field} must be an integer`);
    return v as number;
  };
  const hex = (field: string): Buffer | null => {
    const v = o[field];
    if (v === null) return null;
    if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v)) throw new VerdictError('INPUT_INVALID', `${where}: ${field} must be 64 hex digits or null`);
    return Buffer.from(v, 'hex');
  };
  const json = (field: JsonColumn): string => {
    const text = o[`${field}Text`];
    if (typeof text === 'string') return text;
    if (!(field in o)) throw new VerdictError('INPUT_INVALID', `${where}: ${field} is missing`);
    return JSON.stringify(o[field]) ?? 'null';
  };
  const requestId = o.requestId;
  if (requestId !== null && typeof requestId !== 'string') throw new VerdictError('INPUT_INVALID', `${where}: requestId must be a string or null`);
  return [
    int('seq'), str('decisionId'), int('timeMs'), str('caller'), requestId, str('principalId'), str('action'),
    str('resourceType'), str('resourceId'), str('effect'), str('reason'), json('ruleIds'), json('errors'),
    str('policyVersion'), json('request'), int('latencyUs'), hex('prevHash'), hex('hash'),
  ];
}

/** Lines of a file of any size, split on bytes so a multi-byte character never straddles a chunk. */
function* readLines(path: string): Generator<string> {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (error) {
    throw new VerdictError('INPUT_UNREADABLE', `cannot read the export ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
  }
  try {
    const chunk = Buffer.alloc(4 << 20);
    let rest: Buffer = Buffer.alloc(0);
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(fd, chunk, 0, chunk.length, null);
      } catch (error) {
        throw new VerdictError('INPUT_UNREADABLE', `cannot read the export ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
      }
      if (n === 0) break;
      const data: Buffer = rest.length > 0 ? Buffer.concat([rest, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      let from = 0;
      for (let nl = data.indexOf(10, from); nl !== -1; nl = data.indexOf(10, from)) {
        yield data.toString('utf8', from, nl);
        from = nl + 1;
      }
      // Copy: `data` may be a view of `chunk`, which the next read overwrites.
      rest = Buffer.from(data.subarray(from));
    }
    if (rest.length > 0) yield rest.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}
