import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { Effect, Reason } from '../types.js';
import { VerdictError, messageOf } from '../errors.js';
import { COLUMNS, STORED_KIND, VALUE_FITS, describeStoredValue, selectList, type RowValue } from './columns.js';
import type { DecisionRecord } from './record.js';
import { recordFromRow, rowFromValues } from './row.js';
import { decisionColumns, openReadOnly } from './schema.js';

/**
 * A decision as the console's live tail shows it: where it is in the log, who asked
 * what and how it was decided, none of the request or details (the full record is
 * one GetDecision away).
 */
export interface TailDecision {
  readonly seq: number;
  readonly decisionId: string;
  readonly time: number;
  readonly principalId: string;
  readonly action: string;
  readonly resourceType: string;
  readonly resourceId: string;
  readonly effect: Effect;
  readonly reason: Reason;
  readonly ruleIds: readonly string[];
  readonly policyVersion: string;
}

/** A decision as read back from the log. */
export interface StoredDecision extends DecisionRecord {
  /** Position in the log (and in the hash chain). */
  readonly seq: number;
  /** The row's chain hash, hex; null for rows written before the chain existed. */
  readonly hash: string | null;
}

/**
 * Every filter is optional and they combine with AND. Times are milliseconds
 * since the epoch (the caller parses ISO or relative times); the window is
 * `since <= time < until`.
 */
export interface DecisionFilters {
  readonly principalId?: string;
  readonly resourceType?: string;
  readonly resourceId?: string;
  readonly action?: string;
  readonly effect?: Effect;
  readonly reason?: Reason;
  readonly since?: number;
  readonly until?: number;
  readonly decisionId?: string;
  readonly policyVersion?: string;
  /** Decisions this rule took part in: it is among the decision's rule ids. */
  readonly ruleId?: string;
  /** Only decisions the shadow policy set decided otherwise (`details.shadow`). */
  readonly shadowDiff?: boolean;
  /**
   * Equality on request attributes: each entry matches when the value at
   * `jsonPath` (an SQLite JSON path into the stored request, see
   * sensitive.ts requestJsonPath) is any of `values`. For a sensitive attribute
   * the caller includes the value's HMAC (attributeFilter does).
   */
  readonly attributes?: ReadonlyArray<{ readonly jsonPath: string; readonly values: ReadonlyArray<string | number> }>;
  /** Positive integer; default 100. */
  readonly limit?: number;
}

/** Rows of one resource type whose action starts with a prefix, left out of counts and tails. */
export interface RowExclusion {
  readonly resourceType: string;
  readonly actionPrefix: string;
}

/** How many matching decisions of one effect and reason fell in the bucket starting at `start` (ms). */
export interface DecisionCount {
  readonly start: number;
  readonly effect: Effect;
  readonly reason: Reason;
  readonly count: number;
}

export const DEFAULT_LIMIT = 100;
/** The most decisions one page holds (DecisionReader.page): a larger limit is treated as this. */
export const MAX_PAGE_ROWS = 1000;
/** A page ends early once its rows hold about this many bytes of stored data (at least one row is always returned). */
export const MAX_PAGE_BYTES = 4 * 1024 * 1024;

/** Where a page ended, in the log's order (newest first): the last row's time and seq. */
export interface PagePosition {
  readonly time: number;
  readonly seq: number;
}

/** One page of matching decisions, newest first, and where the next begins (null when this is the last). */
export interface DecisionPage {
  readonly decisions: StoredDecision[];
  readonly next: PagePosition | null;
}

export interface PageOptions {
  /** Rows in the page; clamped to 1..MAX_PAGE_ROWS. Default DEFAULT_LIMIT. */
  readonly limit?: number;
  /** Continue after this row (the previous page's `next`). */
  readonly after?: PagePosition | null;
  /** Bytes of stored data after which the page ends early. Default MAX_PAGE_BYTES. */
  readonly maxBytes?: number;
  /** Leave these rows out (the console's own calls). */
  readonly exclude?: RowExclusion | null;
}

// Filter name -> column, in a fixed order so equal filter sets share one cached statement.
const EQUALITY: ReadonlyArray<readonly [keyof DecisionFilters, string]> = [
  ['decisionId', 'decision_id'],
  ['principalId', 'principal_id'],
  ['resourceType', 'resource_type'],
  ['resourceId', 'resource_id'],
  ['action', 'action'],
  ['effect', 'effect'],
  ['reason', 'reason'],
  ['policyVersion', 'policy_version'],
];

/**
 * A read-only connection to a decision log, for the CLI and the Admin service.
 * Read-only and separate from the writer: in WAL mode a reader sees the last
 * committed state and never takes the write lock.
 *
 * @example
 * const reader = DecisionReader.open('data/decisions.db');
 * const denied = reader.query({ principalId: 'alice', effect: 'DENY', since: Date.now() - 3_600_000 });
 * reader.close();
 */
export class DecisionReader {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly owned: boolean;
  /** seq, the columns of the table (columns.ts; NULL where an older log lacks one), hash (as bytes, whatever its storage class). */
  private readonly columns: string;
  private readonly statements = new Map<string, Database.Statement<unknown[], unknown[]>>();

  private constructor(path: string, db: Database.Database, owned: boolean) {
    this.path = path;
    this.db = db;
    this.owned = owned;
    this.columns = `seq, ${selectList(decisionColumns(db))}, CAST(hash AS BLOB)`;
  }

  /** Read through a connection the caller already has (and keeps: close() leaves it open). */
  static fromConnection(db: Database.Database): DecisionReader {
    return new DecisionReader(db.name, db, false);
  }

  /**
   * @throws VerdictError DECISION_LOG_UNAVAILABLE when there is no log at `path` or it
   *   cannot be opened; DECISION_LOG_CORRUPT when the file is not a decision log
   */
  static open(path: string): DecisionReader {
    return new DecisionReader(path, openReadOnly(path), true);
  }

  /** Matching decisions, newest first. */
  query(filters: DecisionFilters = {}): StoredDecision[] {
    const limit = filters.limit ?? DEFAULT_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new VerdictError('USAGE', `limit must be a positive integer, not ${String(limit)}`);
    }
    const { sql, params } = this.select(filters, null);
    params.push(limit);
    return this.statement(`${sql} LIMIT ?`).all(...params).map((raw) => toDecision(raw, this.path));
  }

  /**
   * One page of matching decisions, newest first: at most `limit` rows (never more
   * than MAX_PAGE_ROWS) and, past the first row, no more than `maxBytes` of stored
   * data, read row by row so a page never holds more in memory than it returns.
   * Paging with `next` returns every matching row once: rows recorded after the
   * first page are newer than it, so they never show up in later pages.
   * `filters.limit` is ignored here.
   */
  page(filters: DecisionFilters, options: PageOptions = {}): DecisionPage {
    const requested = options.limit ?? DEFAULT_LIMIT;
    if (!Number.isSafeInteger(requested) || requested < 1) {
      throw new VerdictError('USAGE', `limit must be a positive integer, not ${String(requested)}`);
    }
    const limit = Math.min(requested, MAX_PAGE_ROWS);
    const maxBytes = options.maxBytes ?? MAX_PAGE_BYTES;
    const { sql, params } = this.select(filters, options.after ?? null, options.exclude ?? null);
    // One row more than the page, to know whether there is a next one.
    params.push(limit + 1);
    const decisions: StoredDecision[] = [];
    let bytes = 0;
    let more = false;
    for (const raw of this.statement(`${sql} LIMIT ?`).iterate(...params)) {
      const values = raw as unknown[];
      const size = rowBytes(values);
      if (decisions.length === limit || (decisions.length > 0 && bytes + size > maxBytes)) {
        more = true;
        break;
      }
      bytes += size;
      decisions.push(toDecision(values, this.path));
    }
    const last = decisions[decisions.length - 1];
    return { decisions, next: more && last ? { time: last.time, seq: last.seq } : null };
  }

  /**
   * Matching decisions counted per time bucket, effect and reason, in SQL: one
   * row per (bucket, effect, reason) that has any. `bucketMs` is at least 1;
   * buckets start at multiples of it since the epoch. `filters.limit` is ignored;
   * `exclude` leaves out rows of one resource type whose action starts with a prefix.
   */
  counts(filters: DecisionFilters, bucketMs: number, exclude: RowExclusion | null = null): DecisionCount[] {
    if (!Number.isSafeInteger(bucketMs) || bucketMs < 1) throw new VerdictError('USAGE', `bucket must be a positive whole number of milliseconds, not ${String(bucketMs)}`);
    const { where, params } = this.conditions(filters, null, exclude);
    const sql = `SELECT (time_ms / CAST(? AS INTEGER)) * CAST(? AS INTEGER) AS bucket, effect, reason, count(*) FROM decisions${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
      GROUP BY bucket, effect, reason ORDER BY bucket, effect, reason`;
    return this.statement(sql)
      .all(bucketMs, bucketMs, ...params)
      .map((raw) => {
        const [start, effect, reason, count] = raw as [number, Effect, Reason, number];
        return { start, effect, reason, count };
      });
  }

  /**
   * The rows recorded after `afterSeq`, oldest first, at most `limit`; with
   * `afterSeq` null, the newest `limit` rows (oldest first). `cursor` is where
   * the next call continues: past rows left out by `exclude` too, so they are
   * not scanned again. Only what the live tail shows is read (TAIL_COLUMNS): a
   * row's request and details may be 140 KB, and copying 200 of them to the
   * thread that answers checks, to be dropped there, stalled checks 600 ms.
   */
  tail(afterSeq: number | null, limit: number, exclude: RowExclusion | null = null): { decisions: TailDecision[]; cursor: number } {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new VerdictError('USAGE', `limit must be a positive integer, not ${String(limit)}`);
    const tip = (this.statement('SELECT max(seq) FROM decisions').get() as [number | null])[0] ?? 0;
    const { where, params } = this.conditions({}, null, exclude);
    if (afterSeq === null) {
      const sql = `SELECT ${TAIL_COLUMNS} FROM decisions WHERE seq <= ?${where.length > 0 ? ` AND ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
      const rows = this.statement(sql).all(tip, ...params, limit).map((raw) => toTailDecision(raw as unknown[], this.path));
      return { decisions: rows.reverse(), cursor: tip };
    }
    const sql = `SELECT ${TAIL_COLUMNS} FROM decisions WHERE seq > ? AND seq <= ?${where.length > 0 ? ` AND ${where.join(' AND ')}` : ''} ORDER BY seq LIMIT ?`;
    const decisions = this.statement(sql).all(afterSeq, tip, ...params, limit).map((raw) => toTailDecision(raw as unknown[], this.path));
    const cursor = decisions.length === limit ? decisions[decisions.length - 1]!.seq : Math.max(tip, afterSeq);
    return { decisions, cursor };
  }

  /** The SELECT (without LIMIT) for `filters`, continuing after `after` when given. */
  private select(filters: DecisionFilters, after: PagePosition | null, exclude: RowExclusion | null = null): { sql: string; params: unknown[] } {
    const { where, params } = this.conditions(filters, after, exclude);
    const sql = `SELECT ${this.columns} FROM decisions${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
      ORDER BY time_ms DESC, seq DESC`;
    return { sql, params };
  }

  /** The WHERE conditions (joined with AND) and their parameters for `filters`. */
  private conditions(filters: DecisionFilters, after: PagePosition | null, exclude: RowExclusion | null): { where: string[]; params: unknown[] } {
    const where: string[] = [];
    const params: unknown[] = [];
    for (const [key, column] of EQUALITY) {
      const value = filters[key];
      if (value === undefined) continue;
      where.push(`${column} = ?`);
      params.push(value);
    }
    if (filters.shadowDiff === true) where.push("json_extract(details, '$.shadow') IS NOT NULL");
    if (filters.ruleId !== undefined) {
      where.push('EXISTS (SELECT 1 FROM json_each(rule_ids) WHERE value = ?)');
      params.push(filters.ruleId);
    }
    for (const attribute of filters.attributes ?? []) {
      if (attribute.values.length === 0) continue;
      where.push(`json_extract(request, ?) IN (${attribute.values.map(() => '?').join(', ')})`);
      params.push(attribute.jsonPath, ...attribute.values);
    }
    if (filters.since !== undefined) {
      where.push('time_ms >= ?');
      params.push(timeParam('since', filters.since));
    }
    if (filters.until !== undefined) {
      where.push('time_ms < ?');
      params.push(timeParam('until', filters.until));
    }
    if (after !== null) {
      where.push('(time_ms < ? OR (time_ms = ? AND seq < ?))');
      params.push(after.time, after.time, after.seq);
    }
    if (exclude !== null) {
      where.push('NOT (resource_type = ? AND substr(action, 1, ?) = ?)');
      params.push(exclude.resourceType, exclude.actionPrefix.length, exclude.actionPrefix);
    }
    return { where, params };
  }

  /**
   * The decisions with `since <= time < until`, in the log's order (by seq),
   * read one row at a time: for analyses that replay a range as the stream it
   * was (the detectors of `verdict analyze`).
   */
  *inLogOrder(range: { readonly since?: number; readonly until?: number } = {}): IterableIterator<StoredDecision> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (range.since !== undefined) {
      where.push('time_ms >= ?');
      params.push(timeParam('since', range.since));
    }
    if (range.until !== undefined) {
      where.push('time_ms < ?');
      params.push(timeParam('until', range.until));
    }
    const sql = `SELECT ${this.columns} FROM decisions${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY seq`;
    for (const raw of this.statement(sql).iterate(...params)) yield toDecision(raw as unknown[], this.path);
  }

  /** One decision by id, or null. */
  get(decisionId: string): StoredDecision | null {
    return this.query({ decisionId, limit: 1 })[0] ?? null;
  }

  close(): void {
    if (this.owned) this.db.close();
  }

  private statement(sql: string): Database.Statement<unknown[], unknown[]> {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare<unknown[], unknown[]>(sql).raw(true);
      this.statements.set(sql, statement);
    }
    return statement;
  }
}

/** A log to read: a path (opened read-only for this call), an open reader, or a better-sqlite3 connection. */
export type DecisionSource = string | DecisionReader | Database.Database;

/**
 * Query a decision log, newest first. The function the CLI and the gRPC Admin
 * service share.
 *
 * @example
 * queryDecisions('data/decisions.db', { resourceType: 'model', resourceId: 'gpt-x', limit: 20 });
 */
export function queryDecisions(source: DecisionSource, filters: DecisionFilters = {}): StoredDecision[] {
  return withReader(source, (reader) => reader.query(filters));
}

/** One decision by id, or null. */
export function getDecision(source: DecisionSource, decisionId: string): StoredDecision | null {
  return withReader(source, (reader) => reader.get(decisionId));
}

function withReader<T>(source: DecisionSource, use: (reader: DecisionReader) => T): T {
  if (source instanceof DecisionReader) return use(source);
  if (typeof source !== 'string') return use(DecisionReader.fromConnection(source));
  const reader = DecisionReader.open(source);
  try {
    return use(reader);
  } finally {
    reader.close();
  }
}

function timeParam(name: string, value: number): number {
  if (!Number.isFinite(value)) {
    throw new VerdictError('USAGE', `${name} must be a time in milliseconds, not ${String(value)}`);
  }
  return Math.trunc(value);
}

/** About how many bytes a stored row holds (its text and JSON columns as stored). */
function rowBytes(raw: readonly unknown[]): number {
  let bytes = 0;
  for (const value of raw) bytes += typeof value === 'string' ? value.length : 8;
  return bytes;
}

const PAGE_TOKEN_VERSION = 'p1';

/** What a page token is bound to: the filters (limit aside), so a token is not reused with others. */
function filtersDigest(filters: DecisionFilters): string {
  const { limit: _limit, ...rest } = filters;
  const ordered = Object.keys(rest).sort().map((key) => [key, rest[key as keyof typeof rest]]);
  return createHash('sha256').update(JSON.stringify(ordered)).digest('base64url').slice(0, 12);
}

/**
 * An opaque token for the page after `position`, bound to `filters`: what
 * ListDecisions answers as next_page_token. Not secret (it names a time and a
 * sequence number), only opaque.
 */
export function encodePageToken(position: PagePosition, filters: DecisionFilters): string {
  return Buffer.from(`${PAGE_TOKEN_VERSION}.${position.time}.${position.seq}.${filtersDigest(filters)}`, 'utf8').toString('base64url');
}

/**
 * The position a page token names.
 * @throws VerdictError USAGE when the token is not one encodePageToken made, or was made for other filters
 */
export function decodePageToken(token: string, filters: DecisionFilters): PagePosition {
  const text = token.length <= 128 && /^[A-Za-z0-9_-]+$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : '';
  const match = /^p1\.(\d{1,16})\.(\d{1,16})\.([A-Za-z0-9_-]{12})$/.exec(text);
  const time = match ? Number(match[1]) : NaN;
  const seq = match ? Number(match[2]) : NaN;
  if (!match || !Number.isSafeInteger(time) || !Number.isSafeInteger(seq)) {
    throw new VerdictError('USAGE', 'page_token is not a token this server gave; pass the next_page_token of the previous page as it was, or none for the first page');
  }
  if (match[3] !== filtersDigest(filters)) {
    throw new VerdictError('USAGE', 'page_token was given for other filters; page with the same filters as the first page, or start again without a token');
  }
  return { time, seq };
}

/** What the live tail reads of a row, in TailDecision's order. */
const TAIL_COLUMNS = 'seq, decision_id, time_ms, principal_id, action, resource_type, resource_id, effect, reason, rule_ids, policy_version';

/** @throws VerdictError DECISION_LOG_CORRUPT naming the seq, for a value verdict never writes (as toDecision) */
function toTailDecision(raw: unknown[], path: string): TailDecision {
  const [seq, decisionId, time, principalId, action, resourceType, resourceId, effect, reason, ruleIds, policyVersion] = raw as [number, string, number, string, string, string, string, Effect, Reason, string, string];
  for (let k = 1; k < raw.length; k++) {
    const expected = k === 2 ? 'number' : 'string';
    if (typeof raw[k] !== expected) throw alteredRow(path, seq, `${TAIL_COLUMNS.split(', ')[k]} holds ${describeStoredValue(raw[k])} where verdict stores ${expected === 'number' ? 'an integer' : 'text'}`);
  }
  let rules: string[];
  try {
    rules = JSON.parse(ruleIds) as string[];
  } catch (error) {
    throw alteredRow(path, seq, `rule_ids does not hold JSON (${messageOf(error)})`);
  }
  return { seq, decisionId, time, principalId, action, resourceType, resourceId, effect, reason, ruleIds: rules, policyVersion };
}

/**
 * A row of `SELECT seq, <columns>, CAST(hash AS BLOB)` as a decision.
 * @throws VerdictError DECISION_LOG_CORRUPT naming the seq, for a value verdict never
 *   writes (a BLOB where text belongs, JSON columns that are not JSON): showing it
 *   would fail, or show another decision than the one recorded
 */
function toDecision(raw: unknown[], path: string): StoredDecision {
  const seq = raw[0] as number;
  COLUMNS.forEach((column, k) => {
    const value = raw[1 + k];
    if (!VALUE_FITS[column.type](value)) throw alteredRow(path, seq, `${column.sql} holds ${describeStoredValue(value)} where verdict stores ${STORED_KIND[column.type]}`);
  });
  let record: DecisionRecord;
  try {
    record = recordFromRow(rowFromValues(raw as RowValue[], 1));
  } catch (error) {
    throw alteredRow(path, seq, `a JSON column does not hold JSON (${messageOf(error)})`);
  }
  const hash = raw[raw.length - 1];
  return { seq, ...record, hash: Buffer.isBuffer(hash) ? hash.toString('hex') : null };
}

function alteredRow(path: string, seq: number, problem: string): VerdictError {
  return new VerdictError('DECISION_LOG_CORRUPT', `${path}: the row at seq ${seq} cannot be shown: ${problem}, which verdict never writes, so the log was altered; run verdict audit verify --db ${path} to find every change`);
}
