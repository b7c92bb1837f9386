import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { afterAll } from 'vitest';
import type { Clock } from '../../src/decisions/clock.js';
import type { DecisionLogClient } from '../../src/decisions/log-client.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { startWriterThread, type WriterSettings } from '../../src/decisions/writer-thread.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp directory, removed after the file's tests. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-decisions-'));
  dirs.push(dir);
  return dir;
}

export function tempDb(): string {
  return path.join(tempDir(), 'nested', 'decisions.db');
}

export function record(overrides: Partial<DecisionRecord> = {}): DecisionRecord {
  return {
    decisionId: randomUUID(),
    time: Date.UTC(2025, 5, 1, 12, 0, 0),
    caller: 'gateway-1',
    requestId: 'req-1',
    principalId: 'dana',
    action: 'predict',
    resourceType: 'model',
    resourceId: 'fraud-v3',
    effect: 'ALLOW',
    reason: 'ALLOWED_BY_RULE',
    ruleIds: ['allow-data-scientists'],
    errors: [],
    policyVersion: 'sha256:abc',
    request: {
      principal: { roles: ['data_scientist'], attributes: { org: 'acme' } },
      resource: { attributes: { org: 'acme', tier: 2 } },
      context: { attributes: { ip: '10.0.0.1' } },
    },
    latencyUs: 42,
    ...overrides,
  };
}

/** SQL that removes the append-only triggers, as someone tampering with the file would first. */
export const DROP_TRIGGERS = `
  DROP TRIGGER IF EXISTS decisions_append_only_update; DROP TRIGGER IF EXISTS decisions_append_only_delete;
  DROP TRIGGER IF EXISTS checkpoints_append_only_update; DROP TRIGGER IF EXISTS checkpoints_append_only_delete;`;

/** A writable connection with the append-only triggers dropped. */
export function tamper(file: string): Database.Database {
  const db = new Database(file, { fileMustExist: true });
  db.exec(DROP_TRIGGERS);
  return db;
}

/** A plain second connection, as another process would have. */
export function connect(file: string, readonly = true): Database.Database {
  return new Database(file, { readonly, fileMustExist: true });
}

export function count(file: string): number {
  const db = connect(file);
  try {
    return (db.prepare('SELECT count(*) AS n FROM decisions').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

export function ids(file: string): string[] {
  const db = connect(file);
  try {
    return db.prepare('SELECT decision_id FROM decisions ORDER BY seq').pluck().all() as string[];
  } finally {
    db.close();
  }
}


/** Resolves with the first value `subscribe` delivers. */
export function next<T>(subscribe: (cb: (value: T) => void) => () => void): Promise<T> {
  return new Promise((resolve) => {
    const off = subscribe((value) => {
      off();
      resolve(value);
    });
  });
}

/** Settle every promise, returning which rejected with what. */
export async function settle(promises: Promise<void>[]): Promise<{ ok: number; errors: unknown[] }> {
  const results = await Promise.allSettled(promises);
  return {
    ok: results.filter((r) => r.status === 'fulfilled').length,
    errors: results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason),
  };
}

/** A decision log served by a real writer thread: the way the server opens it. */
export function openLog(file: string, overrides: Partial<WriterSettings> = {}): Promise<DecisionLogClient> {
  return startWriterThread({ path: file, mode: 'durable', checkpoints: null, ...overrides }, null);
}

/** A clock that moves only when the test says so; its timers fire as it passes them. */
export class ManualClock implements Clock {
  private time: number;
  private readonly timers = new Set<{ at: number; every: number | null; fn: () => void }>();

  constructor(start = Date.UTC(2025, 5, 1, 12, 0, 0)) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  every(ms: number, fn: () => void): () => void {
    return this.add({ at: this.time + ms, every: ms, fn });
  }

  after(ms: number, fn: () => void): () => void {
    return this.add({ at: this.time + ms, every: null, fn });
  }

  /** Move time forward by `ms`, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    const target = this.time + ms;
    for (;;) {
      const due = [...this.timers].filter((t) => t.at <= target).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.time = due.at;
      if (due.every === null) this.timers.delete(due);
      else due.at += due.every;
      due.fn();
    }
    this.time = target;
  }

  private add(timer: { at: number; every: number | null; fn: () => void }): () => void {
    this.timers.add(timer);
    return () => this.timers.delete(timer);
  }
}
