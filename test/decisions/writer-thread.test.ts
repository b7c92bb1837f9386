import fs from 'node:fs';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { verifyLog } from '../../src/audit/verify.js';
import { MAX_CHARACTERS_AT_WRITER } from '../../src/decisions/fair-rows.js';
import { DecisionLogClient, EARLY_BATCH_ROWS, MAX_ACKNOWLEDGED_BEHIND } from '../../src/decisions/log-client.js';
import { DecisionReader } from '../../src/decisions/query.js';
import { ROW_WIDTH, checkBatch, encodeRecord, rowFromValues, toRow } from '../../src/decisions/row.js';
import type { RowValue } from '../../src/decisions/columns.js';
import { spawnWriterThread, startWriterThread, workerChannel, type WriterSettings } from '../../src/decisions/writer-thread.js';
import { VerdictError } from '../../src/errors.js';
import { connect, count, record, tempDb, tempDir } from './helpers.js';

const settings = (file: string, mode: 'durable' | 'async' = 'durable'): WriterSettings => ({ path: file, mode, checkpoints: null });

describe('the writer thread', () => {
  it('resolves a durable append only once its row is in the file, and the chain verifies', async () => {
    const file = tempDb();
    const client = await startWriterThread(settings(file), null);
    const first = record();
    await client.append(first);
    // A separate connection sees the row as soon as the append has resolved.
    const reader = DecisionReader.open(file);
    expect(reader.get(first.decisionId)?.principalId).toBe('dana');
    reader.close();
    await Promise.all(Array.from({ length: 300 }, () => client.append(record())));
    expect(count(file)).toBe(301);
    await client.close();
    expect(await verifyLog(file, { publicKeys: [], workers: 1 })).toMatchObject({ ok: true, rows: 301 });
  });

  it('hands a long turn\'s rows to the writer in the middle of the turn, so they are committed while the rest are decided', async () => {
    const file = tempDb();
    const client = await startWriterThread(settings(file), null);
    const reader = connect(file);
    const rows = reader.prepare<[], { n: number }>('SELECT count(*) AS n FROM decisions');
    const appended = Array.from({ length: EARLY_BATCH_ROWS + 5 }, () => client.append(record()));
    // Still the same turn: the thread does not yield, as when one socket read carries many checks.
    // Held to the end of the turn, no row would reach the writer before the deadline.
    const deadline = Date.now() + 10_000;
    let committed = 0;
    while (committed === 0 && Date.now() < deadline) committed = rows.get()!.n;
    expect(committed).toBe(EARLY_BATCH_ROWS);
    await Promise.all(appended);
    expect(rows.get()!.n).toBe(EARLY_BATCH_ROWS + 5);
    reader.close();
    await client.close();
    expect(await verifyLog(file, { publicKeys: [], workers: 1 })).toMatchObject({ ok: true, rows: EARLY_BATCH_ROWS + 5 });
  });

  it('refuses only the row the database refused, not the rest of its batch', async () => {
    const file = tempDb();
    const client = await startWriterThread(settings(file), null);
    const duplicate = record();
    await client.append(duplicate);
    const outcomes = await Promise.allSettled([client.append(record()), client.append({ ...duplicate }), client.append(record())]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const refusal = (outcomes[1] as PromiseRejectedResult).reason as VerdictError;
    expect(refusal).toBeInstanceOf(VerdictError);
    expect(refusal.code).toBe('INTERNAL');
    expect(refusal.message).toContain(duplicate.decisionId);
    await client.close();
    expect(count(file)).toBe(3);
  });

  it('commits another caller\'s row ahead of rows a flooding caller queued before it', async () => {
    const file = tempDb();
    const client = await startWriterThread(settings(file), null);
    let floodCommitted = 0;
    const flood = Array.from({ length: 3000 }, () => client.append(record({ caller: 'batcher' })).then(() => void floodCommitted++));
    // Queued a turn later than all 3,000: in one queue it would wait for every one of them.
    await new Promise((resolve) => setImmediate(resolve));
    const probe = record({ caller: 'gateway-1' });
    let floodCommittedBeforeProbe = -1;
    const probed = client.append(probe).then(() => (floodCommittedBeforeProbe = floodCommitted));
    await Promise.all([...flood, probed]);
    // The writer had at most MAX_ROWS_AT_WRITER (256) of them when the probe came.
    expect(floodCommittedBeforeProbe).toBeLessThan(1000);
    await client.close();
    const reader = DecisionReader.open(file);
    expect(reader.get(probe.decisionId)?.seq).toBeLessThan(1000);
    reader.close();
    expect(count(file)).toBe(3001);
    expect(await verifyLog(file, { publicKeys: [], workers: 1 })).toMatchObject({ ok: true, rows: 3001 });
  });

  it('commits another caller\'s small row after at most about MAX_CHARACTERS_AT_WRITER of a caller\'s large rows, not after all of them', async () => {
    const file = tempDb();
    const client = await startWriterThread(settings(file), null);
    // 40 rows of about 300,000 characters each: 12 MB, far fewer rows than MAX_ROWS_AT_WRITER.
    const note = 'x'.repeat(300_000);
    const large = () => record({ caller: 'large-checks', request: { principal: { roles: [], attributes: {} }, resource: { attributes: {} }, context: { attributes: { note } } } });
    let largeCommitted = 0;
    const flood = Array.from({ length: 40 }, () => client.append(large()).then(() => void largeCommitted++));
    await new Promise((resolve) => setImmediate(resolve));
    const probe = record({ caller: 'gateway-1' });
    let largeCommittedBeforeProbe = -1;
    const probed = client.append(probe).then(() => (largeCommittedBeforeProbe = largeCommitted));
    await Promise.all([...flood, probed]);
    // What the writer had when the probe came (at most MAX_CHARACTERS_AT_WRITER), and what shared its message.
    const rowsPerMessage = Math.floor(MAX_CHARACTERS_AT_WRITER / note.length);
    expect(largeCommittedBeforeProbe).toBeGreaterThanOrEqual(0);
    expect(largeCommittedBeforeProbe).toBeLessThanOrEqual(2 * rowsPerMessage);
    await client.close();
    expect(count(file)).toBe(41);
    expect(await verifyLog(file, { publicKeys: [], workers: 1 })).toMatchObject({ ok: true, rows: 41 });
  });

  it('in async mode answers at once only while the writer is less than MAX_ACKNOWLEDGED_BEHIND rows behind; the rest wait for their commit', async () => {
    const file = tempDb();
    const client = await startWriterThread(settings(file, 'async'), null);
    let answered = 0;
    const appends = Array.from({ length: 10_000 }, () => client.append(record()).then(() => void answered++));
    // Microtasks only: nothing the writer says can have arrived yet.
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(answered).toBe(MAX_ACKNOWLEDGED_BEHIND);
    await Promise.all(appends);
    // Behind no more, it answers at once again.
    let quick = false;
    const next = client.append(record()).then(() => (quick = true));
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(quick).toBe(true);
    await next;
    await client.close();
    expect(count(file)).toBe(10_001);
  });

  it('reports why it could not open the log, with the writer\'s own error code', async () => {
    const file = path.join(tempDir(), 'not-a-log.db');
    fs.writeFileSync(file, 'this is not a SQLite database, just some text long enough to have a header'.repeat(20));
    const failure = await startWriterThread(settings(file), null).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(VerdictError);
    expect((failure as VerdictError).code).toBe('DECISION_LOG_CORRUPT');
    expect((failure as VerdictError).message).toContain(file);
  });

  it('in async mode answers at once and has every row written by close()', async () => {
    const file = tempDb();
    const client = await startWriterThread(settings(file, 'async'), null);
    await Promise.all(Array.from({ length: 200 }, () => client.append(record())));
    await client.close();
    expect(count(file)).toBe(200);
  });

  it('reports the audit state of the log it writes', async () => {
    const file = tempDb();
    const client = await startWriterThread(settings(file), null);
    await client.append(record());
    expect(await client.auditStatus()).toEqual({ checkpoints: null, sensitiveAttributes: [] });
    expect(await client.probe()).toBe(true);
    await client.close();
    await expect(client.append(record())).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
  });

  it('stores, chains and reads back the details of a decision', async () => {
    const file = tempDb();
    const client = await startWriterThread(settings(file), null);
    const withDetails = record({ details: { http: { method: 'POST', path: '/v1/models/fraud-v3/predict' }, shadow: { effect: 'DENY' } } });
    const without = record();
    await Promise.all([client.append(withDetails), client.append(without)]);
    const notAnObject = await client.append(record({ details: ['not', 'an', 'object'] as never })).catch((error: unknown) => error);
    expect(notAnObject).toBeInstanceOf(VerdictError);
    expect((notAnObject as VerdictError).message).toMatch(/details must be a JSON object/);
    await client.close();
    const reader = DecisionReader.open(file);
    expect(reader.get(withDetails.decisionId)?.details).toEqual(withDetails.details);
    expect(reader.get(without.decisionId)).not.toHaveProperty('details');
    reader.close();
    expect(await verifyLog(file, { publicKeys: [], workers: 1 })).toMatchObject({ ok: true, rows: 2 });
  });
});

describe('a client whose writer thread goes away', () => {
  /** A client of a real writer thread that the test can end, reconnecting to a new thread (or failing to) on a probe. */
  async function served(file: string, reconnect?: () => Promise<ReturnType<typeof workerChannel>>) {
    const threads: Worker[] = [spawnWriterThread(settings(file))];
    const client = await DecisionLogClient.connect(workerChannel(threads[0]!), {
      path: file,
      mode: 'durable',
      ownsLog: true,
      reconnect:
        reconnect ??
        (async () => {
          const thread = spawnWriterThread(settings(file));
          threads.push(thread);
          return workerChannel(thread);
        }),
      release: async () => {
        await threads.at(-1)?.terminate();
      },
    });
    return { client, threads };
  }

  it('refuses decisions while it is gone, and serves again after a probe starts a new one', async () => {
    const file = tempDb();
    const { client, threads } = await served(file);
    await client.append(record());
    const health: boolean[] = [];
    client.onHealthChange(({ healthy }) => health.push(healthy));
    await threads[0]!.terminate();
    expect(client.healthy).toBe(false);
    expect(client.lastError).toContain('stopped');
    const refused = await client.append(record()).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(VerdictError);
    expect((refused as VerdictError).code).toBe('DECISION_LOG_UNAVAILABLE');

    expect(await client.probe()).toBe(true);
    expect(threads).toHaveLength(2);
    expect(client.healthy).toBe(true);
    expect(health).toEqual([false, true]);
    await client.append(record());
    await client.close();
    expect(count(file)).toBe(2);
  });

  it('refuses every append in flight when the channel to its thread is lost', async () => {
    const file = tempDb();
    const thread = spawnWriterThread(settings(file));
    // The thread's channel, with a way to lose it while a batch is in flight. (Terminating a
    // thread in the middle of a SQLite call can abort the whole process, so the thread itself is
    // stopped only once it is idle.)
    const real = workerChannel(thread);
    let lost = false;
    let gone: (reason: string) => void = () => undefined;
    let answered: () => void = () => undefined;
    const answer = new Promise<void>((resolve) => (answered = resolve));
    const client = await DecisionLogClient.connect(
      {
        post: (message) => real.post(message),
        listen: (handler) =>
          real.listen((message) => {
            if (!lost) handler(message);
            else if ((message as { t?: string }).t === 'rows') answered();
          }),
        onGone: (handler) => {
          gone = handler;
          real.onGone(handler);
        },
      },
      { path: file, mode: 'durable', ownsLog: true, release: async () => void (await thread.terminate()) },
    );
    await client.append(record());
    // From here on the writer's answers no longer reach the client, as when its thread dies
    // with a batch in hand (delivered, a fast writer's answer could land before the count below).
    lost = true;
    // More than the writer is handed at once: some rows are with it, the rest wait in the client.
    const inFlight = Array.from({ length: 600 }, () => client.append(record()));
    // The client sends this turn's rows in a setImmediate queued before this one.
    await new Promise((resolve) => setImmediate(resolve));
    expect(client.pendingRows).toBe(600);
    gone('writer thread exited with code 1');
    const outcomes = await Promise.allSettled(inFlight);
    expect(outcomes.map((o) => o.status)).toEqual(Array(600).fill('rejected'));
    for (const outcome of outcomes) {
      const reason = (outcome as PromiseRejectedResult).reason as VerdictError;
      expect(reason).toBeInstanceOf(VerdictError);
      expect(reason.code).toBe('DECISION_LOG_UNAVAILABLE');
      expect(reason.message).toContain('writer thread exited with code 1');
    }
    expect(client.healthy).toBe(false);
    await expect(client.append(record())).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
    // The writer answered the batch the client no longer waited for: it is idle now.
    await answer;
    await client.close();
  });

  it('says why a writer could not be restarted', async () => {
    const file = tempDb();
    const { client, threads } = await served(file, async () => {
      throw new VerdictError('DECISION_LOG_CORRUPT', `${file} is damaged or not a SQLite database`);
    });
    await threads[0]!.terminate();
    expect(await client.probe()).toBe(false);
    expect(client.healthy).toBe(false);
    expect(client.lastError).toContain('restarting it failed');
    expect(client.lastError).toContain('is damaged or not a SQLite database');
    await client.close();
  });
});

describe('rows on the wire', () => {
  it('arrive exactly as they were sent', () => {
    const records = [record(), record({ requestId: null, errors: [{ ruleId: 'r', message: 'boom "quoted"' }], details: { http: { method: 'GET', path: '/x' } } })];
    const values: RowValue[] = [];
    for (const r of records) encodeRecord(values, r);
    expect(values).toHaveLength(2 * ROW_WIDTH);
    const received = structuredClone(values);
    expect(checkBatch(received)).toBe(2);
    expect([rowFromValues(received, 0), rowFromValues(received, ROW_WIDTH)]).toEqual(records.map((r) => toRow(r)));
  });

  it('are refused, naming the row, when a value has the wrong type', () => {
    const values: RowValue[] = [];
    encodeRecord(values, record());
    encodeRecord(values, record());
    values[ROW_WIDTH + 1] = 'yesterday';
    expect(() => checkBatch(values)).toThrow(/row 1 .*wrong type in time_ms/);
    expect(() => checkBatch(values.slice(1))).toThrow(new RegExp(`${ROW_WIDTH} values per row`));
  });

  it('leave nothing behind of a record that cannot be encoded', () => {
    const values: RowValue[] = [];
    encodeRecord(values, record());
    expect(() => encodeRecord(values, record({ latencyUs: Number.NaN }))).toThrow(/latencyUs NaN is not a finite number/);
    expect(values).toHaveLength(ROW_WIDTH);
  });
});
