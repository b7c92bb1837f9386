/**
 * Alerts as the `alerts` table stores them (decisions/alerts-table.ts), and
 * the AlertReader over that table: what `verdict alerts` and the console read.
 */
import type Database from 'better-sqlite3';
import { queryAlertRows, type AlertRow } from '../decisions/alerts-table.js';
import { openReadOnly } from '../decisions/schema.js';
import type { Alert, AlertQuery, AlertReader } from './alert.js';

/** The stored form of an alert. */
export function alertRow(alert: Alert): AlertRow {
  return {
    id: alert.id,
    type: alert.type,
    subjectKind: alert.subject.kind,
    subjectId: alert.subject.id,
    windowStart: Math.trunc(alert.windowStart),
    windowEnd: Math.trunc(alert.windowEnd),
    raisedAt: Math.trunc(alert.raisedAt),
    alert: JSON.stringify(alert),
  };
}

/** A stored alert back as the alert. */
export function alertFromRow(row: AlertRow): Alert {
  return JSON.parse(row.alert) as Alert;
}

/** Stored alerts matching `query`, newest first, from an open connection to a log. */
export function listAlerts(db: Database.Database, query: AlertQuery): Alert[] {
  return queryAlertRows(db, query).map(alertFromRow);
}

/** An AlertReader over a decision log's file that can be closed. */
export interface ClosableAlertReader extends AlertReader {
  close(): void;
}

/**
 * The AlertReader over the `alerts` table of the decision log at `path`,
 * through a read-only connection of its own (it never takes the writer's lock;
 * a query returns at most 10,000 alerts). Opened on first use, so a server can
 * hand it out before the first alert.
 *
 * @example
 * const reader = openAlertReader('data/decisions.db');
 * const lastHour = await reader.list({ since: Date.now() - 3_600_000, type: 'volume' });
 */
export function openAlertReader(path: string): ClosableAlertReader {
  let db: Database.Database | null = null;
  return {
    list: (query) => {
      try {
        db ??= openReadOnly(path);
        return Promise.resolve(listAlerts(db, query));
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
    },
    close: () => {
      db?.close();
      db = null;
    },
  };
}
