import type Database from 'better-sqlite3';
import type { Effect, Reason } from '../types.js';
import { VerdictError } from '../errors.js';
import { selectList, type RowValue } from './columns.js';
import type { DecisionRecord } from './record.js';
import { recordFromRow, rowFromValues } from './row.js';
import { decisionColumns, openReadOnly } from './schema.js';

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

export const DEFAULT_LIMIT = 100;

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
  /** seq, the columns of the table (columns.ts; NULL where an older log lacks one), hash. */
  private readonly columns: string;
  private readonly statements = new Map<string, Database.Statement<unknown[], unknown[]>>();

  private constructor(path: string, db: Database.Database, owned: boolean) {
    this.path = path;
    this.db = db;
    this.owned = owned;
    this.columns = `seq, ${selectList(decisionColumns(db))}, hash`;
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
    const where: string[] = [];
    const params: unknown[] = [];
    for (const [key, column] of EQUALITY) {
      const value = filters[key];
      if (value === undefined) continue;
      where.push(`${column} = ?`);
      params.push(value);
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
    params.push(limit);
    const sql = `SELECT ${this.columns} FROM decisions${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
      ORDER BY time_ms DESC, seq DESC LIMIT ?`;
    return this.statement(sql).all(...params).map(toDecision);
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

function toDecision(raw: unknown[]): StoredDecision {
  const hash = raw[raw.length - 1] as Buffer | null;
  return {
    seq: raw[0] as number,
    ...recordFromRow(rowFromValues(raw as RowValue[], 1)),
    hash: hash === null ? null : hash.toString('hex'),
  };
}
