import type { KeyObject } from 'node:crypto';
import { constants as bufferConstants, isUtf8 } from 'node:buffer';
import fs from 'node:fs';
import type { StoredRow } from '../decisions/chain.js';
import type { Checkpoint } from '../decisions/checkpoint.js';
import { COLUMNS, type Column, type RowValue } from '../decisions/columns.js';
import { parsePublicKey } from '../decisions/keys.js';
import { VerdictError, messageOf } from '../errors.js';
import { repeatedMember } from '../json-members.js';
import { parseCheckpointJson } from './checkpoint-export.js';
import { EXPORT_FORMAT, EXPORT_FORMAT_V1 } from './export.js';
import type { ReadHeader } from './export-header.js';
import { REPLICA_ID_PATTERN, REPLICA_ID_RULE } from '../decisions/replica.js';

/** What `verdict audit verify --export` reads back from an export (export.ts describes the lines). */
export interface ExportContents {
  /** The first line, where the export says its range; null when the first line is another (its beginning was cut off). */
  readonly header: ReadHeader | null;
  readonly footer: { readonly rows: number } | null;
  readonly rows: StoredRow[];
  readonly checkpoints: Checkpoint[];
  readonly publicKey: KeyObject | null;
}

/**
 * Read an export back for verification. Holds the rows in memory (about the
 * size of the file); split very large exports by time.
 * @throws VerdictError INPUT_UNREADABLE, or INPUT_INVALID naming the line and field
 */
export function readExportFile(path: string): ExportContents {
  let header: ExportContents['header'] = null;
  let footer: ExportContents['footer'] = null;
  let publicKey: KeyObject | null = null;
  const rows: StoredRow[] = [];
  const checkpoints: Checkpoint[] = [];
  let lineNo = 0;
  let sawLine = false;
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
    // A SIEM that keeps the first copy would read another line than the one verified.
    const repeated = repeatedMember(text);
    if (repeated !== null) throw new VerdictError('INPUT_INVALID', `${where}: ${repeated} is given twice; verdict writes each member once, so the line was altered`);
    const o = line as Record<string, unknown>;
    // The header comes first, once: after other lines it would not tell where the export began.
    if (o.type === 'header' && (sawLine || header !== null)) throw new VerdictError('INPUT_INVALID', `${where}: a header line after the export's first line; verdict writes one header, first`);
    sawLine = true;
    switch (o.type) {
      case 'header': {
        header = readHeader(o, where);
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

const JSON_COLUMN_KEYS = COLUMNS.filter((column) => column.type === 'json' || column.type === 'json?').map((column) => column.key);
/** Every member export.ts writes on a decision line. */
const DECISION_LINE_KEYS = new Set(['type', 'seq', 'time', 'format', 'prevHash', 'hash', ...COLUMNS.map((column) => column.key), ...JSON_COLUMN_KEYS.map((key) => `${key}Text`)]);

/**
 * A decision line back as the stored row it was written from, every value
 * type-checked. The chain covers `timeMs` and each JSON column's exact text; a
 * SIEM reads `time` and the parsed values, so those must say the same, or the line
 * was altered to show one thing and verify another.
 */
function rowFromLine(o: Record<string, unknown>, where: string): StoredRow {
  const bad = (field: string, want: string): VerdictError => new VerdictError('INPUT_INVALID', `${where}: ${field} must be ${want}`);
  for (const key of Object.keys(o)) {
    if (!DECISION_LINE_KEYS.has(key)) throw new VerdictError('INPUT_INVALID', `${where}: ${JSON.stringify(key)} is not a member verdict writes on a decision line, so the line was altered`);
  }
  const int = (field: string, value: unknown): number => {
    if (!Number.isSafeInteger(value)) throw bad(field, 'an integer');
    return value as number;
  };
  const hex = (field: string): Buffer | null => {
    const v = o[field];
    if (v === null) return null;
    if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v)) throw bad(field, '64 hex digits or null');
    return Buffer.from(v, 'hex');
  };
  // A lone surrogate (written as an escape) is hashed as U+FFFD: no value read from a log holds one.
  const wellFormed = (field: string, v: string): string => {
    if (LONE_SURROGATE.test(v)) throw bad(field, 'well-formed Unicode (it holds a lone surrogate, which no stored value holds)');
    return v;
  };
  const value = (column: Column): RowValue => {
    const v = o[column.key];
    switch (column.type) {
      case 'text':
        if (typeof v !== 'string') throw bad(column.key, 'a string');
        return wellFormed(column.key, v);
      case 'text?':
        if (v !== null && typeof v !== 'string') throw bad(column.key, 'a string or null');
        return v === null ? v : wellFormed(column.key, v);
      case 'integer':
        return int(column.key, v);
      case 'json':
      case 'json?': {
        const text = o[`${column.key}Text`];
        if (text !== undefined) {
          if (typeof text !== 'string') throw bad(`${column.key}Text`, 'a string');
          wellFormed(`${column.key}Text`, text);
          if (!sameJson(text, v)) throw new VerdictError('INPUT_INVALID', `${where}: ${column.key} does not hold what ${column.key}Text (the text the chain covers) says, so the line was altered`);
          return text;
        }
        if (!(column.key in o)) {
          // A column a row's format does not cover is absent from its line, and NULL in the log.
          if (column.type === 'json?') return null;
          throw new VerdictError('INPUT_INVALID', `${where}: ${column.key} is missing`);
        }
        if (v === null && column.type === 'json?') return null;
        return JSON.stringify(v) ?? 'null';
      }
    }
  };
  const seq = int('seq', o.seq);
  const timeMs = int('timeMs', o.timeMs);
  const date = new Date(timeMs);
  const iso = Number.isNaN(date.getTime()) ? null : date.toISOString();
  if (o.time !== iso) throw new VerdictError('INPUT_INVALID', `${where}: time ${JSON.stringify(o.time)} is not timeMs ${timeMs} (${JSON.stringify(iso)}), which the chain covers, so the line was altered`);
  return {
    seq,
    // Lines of rows written before formats were recorded per row are format 1.
    format: o.format === undefined ? 1 : int('format', o.format),
    values: COLUMNS.map(value),
    prevHash: hex('prevHash'),
    hash: hex('hash'),
  };
}
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Whether a JSON column's exact text and the parsed value beside it are the same JSON (the value is null where the text is not JSON). */
function sameJson(text: string, value: unknown): boolean {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return value === null;
  }
  return JSON.stringify(parsed) === JSON.stringify(value);
}

/**
 * The most UTF-16 code units one line of a genuine export holds: the exporter
 * writes each line as one JavaScript string, which V8 caps at this length (a
 * row's values are capped below it too: columns.ts LONGEST_STORED_VALUE). A
 * longer line was not written by verdict, and could not be parsed anyway.
 */
const LONGEST_LINE: number = bufferConstants.MAX_STRING_LENGTH;

/**
 * Lines of a file of any size, split on bytes so a multi-byte character never
 * straddles a chunk. The pieces of a line longer than a chunk are kept apart
 * and joined once, at its end; a line longer than LONGEST_LINE is refused as
 * soon as it is known to be, with its line number.
 * @throws VerdictError INPUT_UNREADABLE, or INPUT_INVALID for a line too long
 */
function* readLines(path: string): Generator<string> {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (error) {
    throw new VerdictError('INPUT_UNREADABLE', `cannot read the export ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
  }
  try {
    const chunk = Buffer.alloc(4 << 20);
    const line = new LongLine(path);
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(fd, chunk, 0, chunk.length, null);
      } catch (error) {
        throw new VerdictError('INPUT_UNREADABLE', `cannot read the export ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
      }
      if (n === 0) break;
      const data = chunk.subarray(0, n);
      let from = 0;
      for (let nl = data.indexOf(10, from); nl !== -1; nl = data.indexOf(10, from)) {
        yield line.end(data.subarray(from, nl));
        from = nl + 1;
      }
      // Copy: `data` is a view of `chunk`, which the next read overwrites.
      if (from < n) line.add(Buffer.from(data.subarray(from)));
    }
    if (!line.empty) yield line.end(Buffer.alloc(0));
  } finally {
    fs.closeSync(fd);
  }
}

/** The line being read, in the pieces it arrived in, and its number. */
class LongLine {
  private pieces: Buffer[] = [];
  private bytes = 0;
  /** Its UTF-16 length, counted once its bytes could exceed LONGEST_LINE (a line never has more code units than bytes). */
  private units = 0;
  private number = 1;

  constructor(private readonly path: string) {}

  get empty(): boolean {
    return this.bytes === 0;
  }

  add(piece: Buffer): void {
    const before = this.bytes;
    this.pieces.push(piece);
    this.bytes += piece.length;
    if (this.bytes <= LONGEST_LINE) return;
    // Past the cap in bytes for the first time: count what came before, then each piece as it comes.
    if (before <= LONGEST_LINE) for (const earlier of this.pieces.slice(0, -1)) this.units += utf16Length(earlier);
    this.units += utf16Length(piece);
    if (this.units > LONGEST_LINE) throw this.tooLong();
  }

  /** The whole line, its last piece `tail`; the next line starts empty. */
  end(tail: Buffer): string {
    this.add(tail);
    const bytes = this.pieces.length === 1 ? (this.pieces[0] as Buffer) : Buffer.concat(this.pieces, this.bytes);
    // Decoding would read bytes that are not UTF-8 as U+FFFD, the character a value held under the same hash.
    if (!isUtf8(bytes)) {
      throw new VerdictError('INPUT_INVALID', `${this.path}:${this.number}: the line is not valid UTF-8, which verdict audit export never writes, so it was altered`);
    }
    let text: string;
    try {
      text = bytes.toString('utf8');
    } catch (error) {
      // Invalid UTF-8 decodes to more code units than utf16Length counts.
      throw this.tooLong(error);
    }
    this.pieces = [];
    this.bytes = 0;
    this.units = 0;
    this.number++;
    return text;
  }

  private tooLong(cause?: unknown): VerdictError {
    return new VerdictError(
      'INPUT_INVALID',
      `${this.path}:${this.number}: the line is longer than any line of an export (${LONGEST_LINE.toLocaleString('en-US')} characters, what one JavaScript string holds), so it was not written by verdict audit export`,
      { cause },
    );
  }
}

/** How many UTF-16 code units the UTF-8 in `bytes` decodes to: one per character, two for one past U+FFFF. */
function utf16Length(bytes: Buffer): number {
  let units = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if ((b & 0xc0) !== 0x80) units += b >= 0xf0 ? 2 : 1;
  }
  return units;
}

/**
 * The header line: format v2 (this release) carries the signed members
 * (export-header.ts), format v1 (earlier releases) none. A v2 header without
 * its signature is refused; one whose values were changed fails its signature.
 */
function readHeader(o: Record<string, unknown>, where: string): ReadHeader {
  if (o.format !== EXPORT_FORMAT && o.format !== EXPORT_FORMAT_V1) {
    throw new VerdictError('INPUT_INVALID', `${where}: format ${JSON.stringify(o.format)} is not ${EXPORT_FORMAT} or ${EXPORT_FORMAT_V1}`);
  }
  const seqOf = (value: unknown): number | null => (typeof value === 'number' ? value : null);
  const base = { fromSeq: seqOf(o.fromSeq), toSeq: seqOf(o.toSeq), replicaId: headerReplicaId(o.replicaId, where) };
  if (o.format === EXPORT_FORMAT_V1) return { ...base, startHash: null, endHash: null, exportedAt: String(o.exportedAt), signed: null };
  const bad = (member: string, want: string): VerdictError =>
    new VerdictError('INPUT_INVALID', `${where}: header ${member} must be ${want} in a ${EXPORT_FORMAT} header; verdict writes no other, so the line was altered`);
  const hash = (member: 'startHash' | 'endHash'): string | null => {
    const value = o[member];
    if (value === null) return null;
    if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) throw bad(member, 'null or 64 lower-case hex digits');
    return value;
  };
  if (typeof o.exportedAt !== 'string') throw bad('exportedAt', 'a string');
  if (typeof o.keyId !== 'string') throw bad('keyId', 'a string');
  if (typeof o.signature !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(o.signature)) throw bad('signature', 'base64');
  return { ...base, startHash: hash('startHash'), endHash: hash('endHash'), exportedAt: o.exportedAt, signed: { keyId: o.keyId, signature: Buffer.from(o.signature, 'base64') } };
}

/** The header's replicaId: absent (an export of an earlier release) and null (an unnamed log) both read as null. */
function headerReplicaId(value: unknown, where: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || !REPLICA_ID_PATTERN.test(value)) {
    throw new VerdictError('INPUT_INVALID', `${where}: header replicaId: expected null or ${REPLICA_ID_RULE}; verdict writes no other, so the line was altered`);
  }
  return value;
}
