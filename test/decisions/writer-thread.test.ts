import fs from 'node:fs';
import path from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { DecisionLog } from '../../src/decisions/log.js';
import { DecisionLogClient } from '../../src/decisions/log-client.js';
import { serveDecisionLog } from '../../src/decisions/log-host.js';
import { ROW_FIELDS, pushRow, readRows } from '../../src/decisions/log-protocol.js';
import { DecisionReader } from '../../src/decisions/query.js';
import { toRow } from '../../src/decisions/row.js';
import { verifyLog } from '../../src/decisions/verify.js';
import type * as WriterThreadModule from '../../src/decisions/writer-thread.js';
import { portChannel } from '../../src/decisions/writer-thread.js';
import { VerdictError } from '../../src/errors.js';
import { count, record, tempDb, tempDir } from './helpers.js';

// The compiled module (built by the global setup), so the writer really runs in a worker thread.
const compiled = (await import(path.resolve('dist/decisions/writer-thread.js'))) as typeof WriterThreadModule;

const settings = (file: string, mode: 'durable' | 'async' = 'durable') => ({ path: file, mode, chain: true, checkpoints: null });

describe('the writer thread', () => {
  it('resolves a durable append only once its row is in the file, and the chain verifies', async () => {
    const file = tempDb();
    const client = await compiled.startWriterThread(settings(file), null);
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

  it('refuses only the row the database refused, not the rest of its batch', async () => {
    const file = tempDb();
    const client = await compiled.startWriterThread(settings(file), null);
    const duplicate = record();
    await client.append(duplicate);
    const outcomes = await Promise.allSettled([client.append(record()), client.append({ ...duplicate }), client.append(record())]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // The compiled module has its own VerdictError class, so the error is matched by name and code.
    const refusal = (outcomes[1] as PromiseRejectedResult).reason as VerdictError;
    expect(refusal).toMatchObject({ name: 'VerdictError', code: 'INTERNAL' });
    expect(refusal.message).toContain(duplicate.decisionId);
    await client.close();
    expect(count(file)).toBe(3);
  });

  it('reports why it could not open the log, with the writer\'s own error code', async () => {
    const file = path.join(tempDir(), 'not-a-log.db');
    fs.writeFileSync(file, 'this is not a SQLite database, just some text long enough to have a header'.repeat(20));
    const failure = await compiled.startWriterThread(settings(file), null).catch((error: unknown) => error);
    expect(failure).toMatchObject({ name: 'VerdictError', code: 'DECISION_LOG_CORRUPT' });
    expect((failure as VerdictError).message).toContain(file);
  });

  it('in async mode answers at once and has every row written by close()', async () => {
    const file = tempDb();
    const client = await compiled.startWriterThread(settings(file, 'async'), null);
    await Promise.all(Array.from({ length: 200 }, () => client.append(record())));
    await client.close();
    expect(count(file)).toBe(200);
  });

  it('reports the audit state of the log it writes', async () => {
    const file = tempDb();
    const client = await compiled.startWriterThread(settings(file), null);
    await client.append(record());
    expect(await client.auditStatus()).toMatchObject({ chain: true, checkpoints: null, sensitiveAttributes: [] });
    expect(await client.probe()).toBe(true);
    await client.close();
    await expect(client.append(record())).rejects.toMatchObject({ code: 'DECISION_LOG_UNAVAILABLE' });
  });
});

describe('a client whose writer goes away', () => {
  /** A log served over a real MessageChannel whose host side the test can cut. */
  async function served(file: string) {
    const log = DecisionLog.open(file);
    let ports = new MessageChannel();
    serveDecisionLog(log, portChannel(ports.port2), { forwardCommits: true, closable: true });
    const client = await DecisionLogClient.connect(portChannel(ports.port1), {
      path: file,
      mode: 'durable',
      ownsLog: true,
      reconnect: async () => {
        ports = new MessageChannel();
        serveDecisionLog(log, portChannel(ports.port2), { forwardCommits: true, closable: true });
        return portChannel(ports.port1);
      },
      release: async () => {
        ports.port1.close();
      },
    });
    return { log, client, cut: () => ports.port2.close() };
  }

  it('refuses decisions while it is gone, and serves again after a probe reconnects', async () => {
    const file = tempDb();
    const { log, client, cut } = await served(file);
    await client.append(record());
    const health: boolean[] = [];
    client.onHealthChange(({ healthy }) => health.push(healthy));
    cut();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(client.healthy).toBe(false);
    expect(client.lastError).toContain('stopped');
    const refused = await client.append(record()).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(VerdictError);
    expect((refused as VerdictError).code).toBe('DECISION_LOG_UNAVAILABLE');

    expect(await client.probe()).toBe(true);
    expect(client.healthy).toBe(true);
    expect(health).toEqual([false, true]);
    await client.append(record());
    await client.close();
    expect(count(file)).toBe(2);
    await log.close();
  });

  it('says why a writer could not be restarted', async () => {
    const file = tempDb();
    const log = DecisionLog.open(file);
    const ports = new MessageChannel();
    serveDecisionLog(log, portChannel(ports.port2), { forwardCommits: true, closable: true });
    const client = await DecisionLogClient.connect(portChannel(ports.port1), {
      path: file,
      mode: 'durable',
      ownsLog: true,
      reconnect: async () => {
        throw new VerdictError('DECISION_LOG_CORRUPT', `${file} is damaged or not a SQLite database`);
      },
    });
    ports.port2.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await client.probe()).toBe(false);
    expect(client.healthy).toBe(false);
    expect(client.lastError).toContain('restarting it failed');
    expect(client.lastError).toContain('is damaged or not a SQLite database');
    await client.close();
    await log.close();
  });
});

describe('rows on the wire', () => {
  it('arrive exactly as they were sent', () => {
    const rows = [toRow(record()), toRow(record({ requestId: null, errors: [{ ruleId: 'r', message: 'boom "quoted"' }] }))];
    const values: unknown[] = [];
    for (const row of rows) pushRow(values, row);
    expect(values).toHaveLength(2 * ROW_FIELDS);
    expect(readRows(structuredClone(values))).toEqual(rows);
  });

  it('are refused, naming the row, when a value has the wrong type', () => {
    const values: unknown[] = [];
    pushRow(values, toRow(record()));
    pushRow(values, toRow(record()));
    values[ROW_FIELDS + 1] = 'yesterday';
    expect(() => readRows(values)).toThrow(/row 1 .*wrong type/);
    expect(() => readRows(values.slice(1))).toThrow(/15 values per row/);
  });
});
