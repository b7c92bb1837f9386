import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient } from '../helpers/verdict-process.js';
import { tempDir } from './helpers.js';

/**
 * A log written by an earlier release (test/fixtures/legacy-log-v1) must still
 * open, verify, query and take new decisions. Everything runs through the real
 * binary, the way an operator upgrading verdict meets it.
 */
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'legacy-log-v1');

function verdict(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

let dir: string;
let db: string;

beforeAll(() => {
  ensureBuilt();
  dir = tempDir();
  for (const name of fs.readdirSync(FIXTURE)) {
    if (name !== 'README.md') fs.copyFileSync(path.join(FIXTURE, name), path.join(dir, name));
  }
  db = path.join(dir, 'decisions.db');
});

describe('a decision log written by verdict 0.1.0', () => {
  it('verifies: chain from the prune anchor, every checkpoint signed', () => {
    const result = verdict('audit', 'verify', '--db', db);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('38 rows, seq 8..45 from the prune anchor at seq 7: intact');
    expect(result.stdout).toMatch(/checkpoints\s+5 of 5 verified/);
  });

  it('is unnamed, and verify (read-only) leaves it so', () => {
    const before = fs.readFileSync(db);
    const json = verdict('audit', 'verify', '--db', db, '--json');
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, replicaId: null });
    expect(verdict('audit', 'verify', '--db', db).stdout).toMatch(/^ {2}replica +unnamed/m);
    expect(fs.readFileSync(db).equals(before)).toBe(true);
  });

  it('answers queries, by id and by an attribute stored as HMAC', () => {
    const byId = verdict('decisions', '--db', db, '--id', '0190f5c2-7a3e-7c1d-9b2f-000000000042', '--json');
    expect(byId.status).toBe(0);
    const row = JSON.parse(byId.stdout) as Record<string, unknown>;
    expect(row).toMatchObject({ principalId: 'zoë', action: 'predict', effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', seq: 43, requestId: 'req-42' });
    const byEmail = verdict('decisions', '--db', db, '--attr', 'principal.attributes.email=user30@example.com', '--json');
    expect(byEmail.status).toBe(0);
    expect(byEmail.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { decisionId: string }).decisionId)).toEqual(['0190f5c2-7a3e-7c1d-9b2f-000000000030']);
    const denied = verdict('decisions', '--db', db, '--reason', 'denied_invalid_request', '--json');
    expect(denied.stdout.trim().split('\n')).toHaveLength(6);
  });

  it('takes new decisions from a server, and the whole log still verifies', async () => {
    const server = await startVerdict({ policies: path.join(ROOT, 'policies'), db, args: ['--sensitive-attributes', 'principal.attributes.email'] });
    const client = verdictClient(server.grpcPort);
    try {
      const response = await client.call<{ effect: string }>(
        'Authorization',
        'Check',
        checkRequest({ principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme' } }, action: 'predict', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme' } } }),
      );
      expect(response.effect).toBe('EFFECT_ALLOW');
    } finally {
      client.close();
      expect(await server.stop()).toBe(0);
    }
    const result = verdict('audit', 'verify', '--db', db);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('39 rows, seq 8..46 from the prune anchor at seq 7: intact');
    // Its first server named it after itself (the host name, by default).
    expect(JSON.parse(verdict('audit', 'verify', '--db', db, '--json').stdout)).toMatchObject({ ok: true, replicaId: os.hostname() });
  });
});
