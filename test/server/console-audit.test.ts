import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditWatch } from '../../src/server/console-audit.js';
import { appendRows, tamperSql, tempDir, writeLog } from '../audit/helpers.js';

// The console's audit state: the code of `verdict audit verify`, in a thread,
// the first pass over the whole log, later ones over the new rows only.
describe('AuditWatch', () => {
  const watches: AuditWatch[] = [];
  afterEach(async () => {
    await Promise.all(watches.splice(0).map((w) => w.close()));
  });
  const watch = (db: string, options: { fullEveryMs?: number } = {}): AuditWatch => {
    const w = new AuditWatch(db, path.join(path.dirname(db), 'audit-signing-key.pub.pem'), { maxAgeMs: 0, ...options });
    watches.push(w);
    return w;
  };
  /** A log signing a checkpoint every 10 rows, 25 rows in, watched: `run` starts after the full pass verified it through the checkpoint at 20. */
  const afterFullPass = async (run: (db: string, log: Awaited<ReturnType<typeof writeLog>>, w: AuditWatch) => Promise<void>): Promise<void> => {
    const db = path.join(tempDir(), 'decisions.db');
    const log = await writeLog(db, { everyRows: 10 });
    try {
      await appendRows(log, 0, 25);
      const w = watch(db);
      expect(await w.current()).toMatchObject({ pass: 'full', ok: true, lastCheckpoint: { seq: 20 } });
      await run(db, log, w);
    } finally {
      await log.close();
    }
  };

  it('verifies the whole log first, then only the rows and checkpoints recorded since', async () => {
    const db = path.join(tempDir(), 'decisions.db');
    const log = await writeLog(db, { everyRows: 10 });
    try {
      await appendRows(log, 0, 25);
      const w = watch(db);
      const first = await w.current();
      expect(first).toMatchObject({ pass: 'full', ok: true, verifiedThrough: 25, rows: 25, lastCheckpoint: { seq: 20 }, checkpoints: { total: 2, verified: 2 }, unsignedRows: 5, error: null });
      await appendRows(log, 25, 12);
      const second = await w.current();
      expect(second).toMatchObject({ pass: 'incremental', ok: true, verifiedThrough: 37, rows: 37, lastCheckpoint: { seq: 30 }, checkpoints: { total: 3, verified: 3 }, unsignedRows: 7 });
      expect(second.lastFullAt).toBe(first.lastFullAt);
      // Nothing new: still incremental, nothing to do.
      expect(await w.current()).toMatchObject({ pass: 'incremental', verifiedThrough: 37 });
    } finally {
      await log.close();
    }
  });

  it('falls back to a full pass that names the break when a verified row changes', async () => {
    const db = path.join(tempDir(), 'decisions.db');
    const log = await writeLog(db, { everyRows: 10 });
    await appendRows(log, 0, 15);
    await log.close();
    const w = watch(db);
    expect(await w.current()).toMatchObject({ ok: true, verifiedThrough: 15 });
    tamperSql(db, "UPDATE decisions SET effect = 'ALLOW' WHERE seq = 15;");
    tamperSql(db, "UPDATE decisions SET hash = zeroblob(32) WHERE seq = 15;");
    const broken = await w.current();
    expect(broken).toMatchObject({ pass: 'full', ok: false, break: { seq: 15 } });
  });

  it('sees a change to older rows at the next full pass', async () => {
    const db = path.join(tempDir(), 'decisions.db');
    const log = await writeLog(db, { everyRows: 10 });
    await appendRows(log, 0, 15);
    await log.close();
    const w = watch(db, { fullEveryMs: 0 });
    expect(await w.current()).toMatchObject({ ok: true, verifiedThrough: 15 });
    tamperSql(db, "UPDATE decisions SET principal_id = 'mallory' WHERE seq = 3;");
    expect(await w.current()).toMatchObject({ pass: 'full', ok: false, break: { seq: 3, kind: 'changed' } });
  });

  it('names a checkpoint removed between two incremental passes, as a full verify does', async () => {
    await afterFullPass(async (db, log, w) => {
      // An old checkpoint, already verified: the one at 20 names it.
      tamperSql(db, 'DELETE FROM checkpoints WHERE seq = 10;');
      expect(await w.current()).toMatchObject({ pass: 'full', ok: false, break: { kind: 'checkpoint-removed', seq: 10 } });
    });
  });

  it('names the last verified checkpoint removed once a new checkpoint names it', async () => {
    await afterFullPass(async (db, log, w) => {
      tamperSql(db, 'DELETE FROM checkpoints WHERE seq = 20;');
      // The writer signs seq 30 next, naming 20 as the checkpoint before it.
      await appendRows(log, 25, 10);
      expect(await w.current()).toMatchObject({ pass: 'full', ok: false, break: { kind: 'checkpoint-removed', seq: 20 } });
    });
  });

  it('names a checkpoint removed after an incremental pass verified it, as a full verify does', async () => {
    await afterFullPass(async (db, log, w) => {
      await appendRows(log, 25, 20);
      expect(await w.current()).toMatchObject({ pass: 'incremental', ok: true, lastCheckpoint: { seq: 40 }, checkpoints: { total: 4, verified: 4 } });
      await appendRows(log, 45, 1);
      expect(await w.current()).toMatchObject({ pass: 'incremental', ok: true, verifiedThrough: 46 });
      // One the incremental pass verified, named by the one signed after it.
      tamperSql(db, 'DELETE FROM checkpoints WHERE seq = 30;');
      expect(await w.current()).toMatchObject({ pass: 'full', ok: false, break: { kind: 'checkpoint-removed', seq: 30 } });
    });
  });

  it('reports a log it cannot read instead of failing', async () => {
    const dir = tempDir();
    await (await writeLog(path.join(dir, 'decisions.db'))).close();
    const w = watch(path.join(dir, 'missing.db'));
    const state = await w.current();
    expect(state.ok).toBe(false);
    expect(state.error).toMatch(/missing\.db/);
  });
});
