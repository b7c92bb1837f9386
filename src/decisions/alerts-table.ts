/**
 * The `alerts` table (schema.ts, version 4): anomaly alerts stored beside the
 * decisions, outside their hash chain. The decision log knows an alert only as
 * a few indexed columns and its JSON; src/analysis/alert.ts gives it a shape.
 * Alerts are written by the decision log's writer (writer.ts), never on a
 * deciding thread, and an alert id is stored once (a restart that raises the
 * same alert again leaves one row).
 */
import type Database from 'better-sqlite3';
import { VerdictError } from '../errors.js';

/** One stored alert. */
export interface AlertRow {
  readonly id: string;
  readonly type: string;
  readonly subjectKind: string;
  readonly subjectId: string;
  readonly windowStart: number;
  readonly windowEnd: number;
  readonly raisedAt: number;
  /** The whole alert, as JSON text. */
  readonly alert: string;
}

/** Filters over stored alerts, combined with AND; newest first. */
export interface AlertRowQuery {
  readonly since?: number;
  readonly until?: number;
  readonly type?: string;
  readonly subjectId?: string;
  readonly limit?: number;
}

export const INSERT_ALERT_SQL =
  'INSERT OR IGNORE INTO alerts (id, type, subject_kind, subject_id, window_start, window_end, raised_at, alert) VALUES (?, ?, ?, ?, ?, ?, ?, ?)';

/** The most alerts one query returns. */
export const MAX_ALERT_ROWS = 10_000;

const TEXT_LIMIT = 64 * 1024;

/**
 * A batch of alert rows from another thread, checked before it is written.
 * @throws VerdictError INTERNAL naming the row
 */
export function checkAlertRows(rows: unknown): AlertRow[] {
  if (!Array.isArray(rows)) throw new VerdictError('INTERNAL', 'a batch of alerts must be an array');
  rows.forEach((row: unknown, i) => {
    const r = row as Record<string, unknown> | null;
    const ok =
      r !== null &&
      typeof r === 'object' &&
      ['id', 'type', 'subjectKind', 'subjectId', 'alert'].every((k) => typeof r[k] === 'string' && (r[k] as string).length <= TEXT_LIMIT) &&
      ['windowStart', 'windowEnd', 'raisedAt'].every((k) => Number.isSafeInteger(r[k]));
    if (!ok) throw new VerdictError('INTERNAL', `alert ${i} of a batch has a missing or malformed field`);
  });
  return rows as AlertRow[];
}

/** Writes `rows` (ids already stored are left as they are) in the caller's transaction. */
export function insertAlerts(statement: Database.Statement, rows: readonly AlertRow[]): void {
  for (const r of rows) statement.run(r.id, r.type, r.subjectKind, r.subjectId, r.windowStart, r.windowEnd, r.raisedAt, r.alert);
}

/** Whether this log has the alerts table (a log last opened by an older verdict has not). */
export function hasAlertsTable(db: Database.Database): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alerts'").get() !== undefined;
}

/**
 * Stored alerts matching `query`, newest first (by the time of the decision that raised them).
 * @throws VerdictError USAGE for a limit that is not a positive integer
 */
export function queryAlertRows(db: Database.Database, query: AlertRowQuery): AlertRow[] {
  const limit = query.limit ?? 100;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new VerdictError('USAGE', `limit must be a positive integer, not ${String(limit)}`);
  if (!hasAlertsTable(db)) return [];
  const where: string[] = [];
  const params: unknown[] = [];
  if (query.since !== undefined) {
    where.push('raised_at >= ?');
    params.push(query.since);
  }
  if (query.until !== undefined) {
    where.push('raised_at < ?');
    params.push(query.until);
  }
  if (query.type !== undefined) {
    where.push('type = ?');
    params.push(query.type);
  }
  if (query.subjectId !== undefined) {
    where.push('subject_id = ?');
    params.push(query.subjectId);
  }
  params.push(Math.min(limit, MAX_ALERT_ROWS));
  const sql = `SELECT id, type, subject_kind AS subjectKind, subject_id AS subjectId, window_start AS windowStart, window_end AS windowEnd, raised_at AS raisedAt, alert
    FROM alerts${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY raised_at DESC, id DESC LIMIT ?`;
  return db.prepare(sql).all(...params) as AlertRow[];
}
