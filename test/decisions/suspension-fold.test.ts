import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FOLD_IDENTITY, foldedId } from '../../src/folded-id.js';
import { SCHEMA_VERSION, readSchemaVersion } from '../../src/decisions/schema.js';
import { SPELLINGS_SQL, SuspensionStore } from '../../src/decisions/suspension-store.js';
import type { SuspensionState } from '../../src/types.js';
import { asSchemaV8Log } from '../helpers/decision-log.js';
import { connect, openLog, tempDb } from './helpers.js';

// A lift takes off every row whose principal id folds to the lifted one. The fold
// is stored with each row (folded_id, migration 9) and indexed, so finding them is
// one index search whatever the table holds; these tests hold the column filled
// (new rows, rows of a log migrated from v8, rows folded by another fold) and the
// lift's statement on the index.

const FAR = Date.UTC(2099, 0, 1);

function suspension(principalId: string): SuspensionState {
  return { principalId, since: Date.now(), until: FAR, alertId: '', alertType: 'manual', note: '' };
}

async function newLog(): Promise<string> {
  const file = tempDb();
  await (await openLog(file)).close();
  return file;
}

function folded(file: string): Record<string, string | null> {
  const db = connect(file);
  try {
    const rows = db.prepare('SELECT principal_id, folded_id FROM suspensions ORDER BY principal_id').all() as { principal_id: string; folded_id: string | null }[];
    return Object.fromEntries(rows.map((row) => [row.principal_id, row.folded_id]));
  } finally {
    db.close();
  }
}

function inForce(file: string): string[] {
  const db = connect(file);
  try {
    return db.prepare('SELECT principal_id FROM suspensions WHERE lifted = 0 ORDER BY principal_id').pluck().all() as string[];
  } finally {
    db.close();
  }
}

function recordedFold(file: string): unknown {
  const db = connect(file);
  try {
    return db.prepare("SELECT value FROM log_meta WHERE key = 'suspensions_fold'").pluck().get();
  } finally {
    db.close();
  }
}

/** A row for each id: one flush each, since the store keeps one queued change per folded id (the last). */
function storeEach(store: SuspensionStore, ids: readonly string[]): void {
  for (const id of ids) {
    store.put(suspension(id));
    store.flush(2000);
  }
}

const SPELLINGS = ['Dana', 'da\u200Bna', '\uFF24\uFF21\uFF2E\uFF21', ' dana'];

describe('the folded id of each suspension', () => {
  it('is written with every row, and the statement a lift runs searches suspensions_folded, not the table', async () => {
    const file = await newLog();
    const store = SuspensionStore.open(file);
    storeEach(store, [...SPELLINGS, 'mallory']);
    expect(folded(file)).toEqual({ ' dana': 'dana', Dana: 'dana', 'da\u200Bna': 'dana', mallory: 'mallory', '\uFF24\uFF21\uFF2E\uFF21': 'dana' });

    // A table of many made-up principals, with statistics, as the planner would see it after years.
    const db = new Database(file, { fileMustExist: true });
    try {
      const insert = db.prepare("INSERT INTO suspensions (principal_id, folded_id, since_ms, until_ms, alert_id, alert_type, note, change_seq, lifted) VALUES (?, ?, 1, ?, 'al', 'volume', '', ?, ?)");
      db.transaction(() => {
        for (let i = 0; i < 20_000; i++) insert.run(`made-up-${i}`, `made-up-${i}`, FAR, 100 + i, i % 3 === 0 ? 1 : 0);
      })();
      db.exec('ANALYZE');
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${SPELLINGS_SQL}`).all('dana') as { detail: string }[]).map((step) => step.detail);
      expect(plan).toHaveLength(1);
      expect(plan[0]).toMatch(/^SEARCH suspensions USING (COVERING )?INDEX suspensions_folded \(folded_id=\?\)/);
    } finally {
      db.close();
    }

    store.lift(suspension('DANA'));
    store.flush(2000);
    expect(inForce(file).filter((id) => !id.startsWith('made-up-'))).toEqual(['mallory']);
  });

  it('is filled by migration 9 for rows a v8 log held, so a lift by another spelling takes them all', async () => {
    const file = await newLog();
    asSchemaV8Log(file, [...SPELLINGS, 'mallory'], FAR);
    let db = connect(file);
    expect(readSchemaVersion(db)).toBe(8);
    expect((db.pragma('table_info(suspensions)') as { name: string }[]).map((column) => column.name)).not.toContain('folded_id');
    db.close();

    await (await openLog(file)).close();
    db = connect(file);
    expect(readSchemaVersion(db)).toBe(SCHEMA_VERSION);
    expect(db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'suspensions' AND name = 'suspensions_folded'").pluck().get()).toBe('suspensions_folded');
    db.close();
    expect(folded(file)).toEqual({ ' dana': 'dana', Dana: 'dana', 'da\u200Bna': 'dana', mallory: 'mallory', '\uFF24\uFF21\uFF2E\uFF21': 'dana' });
    expect(recordedFold(file)).toBe(FOLD_IDENTITY);

    const store = SuspensionStore.open(file);
    expect(store.readAtStart(Date.now()).suspensions.map((s) => s.principalId).sort()).toEqual([' dana', 'Dana', 'da\u200Bna', 'mallory', '\uFF24\uFF21\uFF2E\uFF21']);
    store.lift(suspension('dana'));
    store.flush(2000);
    expect(inForce(file)).toEqual(['mallory']);
  });

  it('is folded again when the store opens a log folded by another fold, or holding a row never folded', async () => {
    const file = await newLog();
    let store = SuspensionStore.open(file);
    storeEach(store, [...SPELLINGS, 'mallory']);
    // As a Node of another Unicode version (or a release folding otherwise) would have left it.
    let db = new Database(file, { fileMustExist: true });
    db.prepare("UPDATE log_meta SET value = 'fold 0, unicode 1.0' WHERE key = 'suspensions_fold'").run();
    db.prepare("UPDATE suspensions SET folded_id = 'da\u200Bna' WHERE principal_id = 'da\u200Bna'").run();
    db.close();
    store = SuspensionStore.open(file);
    expect(folded(file)['da\u200Bna']).toBe('dana');
    expect(recordedFold(file)).toBe(FOLD_IDENTITY);

    // The fold recorded is this one, but a row was written without its folded id.
    db = new Database(file, { fileMustExist: true });
    db.prepare("UPDATE suspensions SET folded_id = NULL WHERE principal_id = 'Dana'").run();
    db.close();
    store = SuspensionStore.open(file);
    expect(folded(file).Dana).toBe('dana');
    store.lift(suspension('DANA'));
    store.flush(2000);
    expect(inForce(file)).toEqual(['mallory']);
  });

  it('is made by the fold FOLD_IDENTITY names: ids whose fold changes must come with a new fold number', () => {
    // One spelling of each thing foldedId undoes. When this fails, what foldedId returns
    // changed: raise the number in FOLD_IDENTITY (stored ids are folded again at the next
    // start), then put the new folds here.
    const spellings: Record<string, string> = {
      'Dana': 'dana',
      '  dana\t': 'dana',
      '\uFF24\uFF21\uFF2E\uFF21': 'dana', // fullwidth
      'da\u200Bna': 'dana', // zero-width space
      'da\u00ADna': 'dana', // soft hyphen
      'da\u202Ena': 'dana', // bidi override
      'da\uFE0Fna': 'dana', // variation selector
      'da\u3164na': 'dana', // Hangul filler
      '\uFB01le': 'file', // the ligature fi
      'Cafe\u0301': 'caf\u00E9', // a combining accent composes
      '\u212Bngstr\u00F6m': '\u00E5ngstr\u00F6m', // the angstrom sign
      '\u2460': '1', // circled digit
    };
    expect(Object.fromEntries(Object.keys(spellings).map((id) => [id, foldedId(id)]))).toEqual(spellings);
    expect(FOLD_IDENTITY.replace(/, unicode .*/, '')).toBe('fold 1');
  });
});
