import type Database from 'better-sqlite3';

// What a log file holds, asked of SQLite where an older file may lack it: a table,
// a column a migration added, a value in `log_meta` (the log's own key-value table).

export function hasTable(db: Database.Database, table: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").get(table) !== undefined;
}

export function hasColumn(db: Database.Database, table: string, column: string): boolean {
  return (db.pragma(`table_info(${table})`) as { name: string }[]).some((c) => c.name === column);
}

/** The value `log_meta` holds under `key`; undefined when the file has no such key, or no `log_meta` (a file no server migrated). */
export function readLogMeta(db: Database.Database, key: string): unknown {
  if (!hasTable(db, 'log_meta')) return undefined;
  return db.prepare('SELECT value FROM log_meta WHERE key = ?').pluck().get(key);
}

/** Sets `key` in `log_meta`, replacing what it held. */
export function writeLogMeta(db: Database.Database, key: string, value: string): void {
  db.prepare('INSERT INTO log_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
}
