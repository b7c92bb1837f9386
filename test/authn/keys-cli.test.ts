import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyAuthenticator } from '../../src/authn/api-keys.js';
import { BIN, ROOT, ensureBuilt } from '../helpers/verdict-process.js';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function verdict(args: string[]): Run {
  const result = spawnSync(process.execPath, [BIN, 'keys', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

interface KeyJson {
  key?: string;
  id: string;
  owner: string;
  scopes: string[];
  attributes: Record<string, string>;
  expiresAt: string | null;
  lastUsedAt: string | null;
  status: string;
  replacedBy: string | null;
  previous?: KeyJson;
}

beforeAll(() => ensureBuilt(), 120_000);

describe('verdict keys, the real binary', () => {
  let dir: string;
  let db: string;
  /** The server side: opened once, before any change, as a running server would be. */
  let server: ApiKeyAuthenticator;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-keys-cli-'));
    db = join(dir, 'keys.db');
    server = ApiKeyAuthenticator.open({ db, lastUsedFlushMs: 60_000 });
  });
  afterAll(() => server.close());

  it('creates a key, prints it once, and the server accepts it', async () => {
    const run = verdict(['create', '--db', db, '--owner', 'svc-batch', '--name', 'nightly', '--scope', 'predict', '--scope', 'explain', '--attr', 'org=acme', '--attr', 'tier=pro', '--expires', '90d', '--json']);
    expect(run.status).toBe(0);
    const created = JSON.parse(run.stdout) as KeyJson;
    expect(created).toMatchObject({ owner: 'svc-batch', scopes: ['predict', 'explain'], attributes: { org: 'acme', tier: 'pro' }, status: 'active' });
    expect(created.key).toMatch(new RegExp(`^vk_${created.id}_[a-z2-7]{52}$`));
    expect(Date.parse(created.expiresAt!) - Date.now()).toBeGreaterThan(89 * 86_400_000);
    expect(await server.verify(created.key!)).toMatchObject({ ok: true, principal: { id: 'svc-batch', attributes: { org: 'acme', scopes: ['predict', 'explain'] } } });

    // Nowhere on disk. grep runs in its own process: reading the database file from this one would
    // drop this process's POSIX locks on it (SQLite's documented hazard) and leave the open connection stale.
    const secret = created.key!.split('_')[2]!;
    expect(readdirSync(dir).some((f) => f.startsWith('keys.db'))).toBe(true);
    expect(spawnSync('grep', ['-rqF', secret, dir]).status).toBe(1);
    expect(spawnSync('grep', ['-rqF', created.id, dir]).status).toBe(0);
  });

  it('prints only the key on stdout without --json, the rest on stderr', () => {
    const run = verdict(['create', '--db', db, '--owner', 'alice']);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^vk_[a-z2-7]{16}_[a-z2-7]{52}\n$/);
    expect(run.stderr).toMatch(/^created API key [a-z2-7]{16} for alice; store it now: it is not shown again\n$/);
  });

  it('lists ids, owners, scopes and status, never secrets', () => {
    const created = JSON.parse(verdict(['create', '--db', db, '--owner', 'bob', '--scope', 'predict', '--json']).stdout) as KeyJson;
    const run = verdict(['list', '--db', db]);
    expect(run.status).toBe(0);
    expect(run.stdout.split('\n')[0]).toBe('ID                OWNER      NAME     SCOPES           ROLES  CREATED           EXPIRES           LAST USED  STATUS');
    expect(run.stdout).toContain(created.id);
    expect(run.stdout).not.toContain(created.key!.split('_')[2]!);
    expect(run.stdout).not.toContain('vk_');
    const json = JSON.parse(verdict(['list', '--db', db, '--owner', 'bob', '--json']).stdout) as KeyJson[];
    expect(json.map((k) => k.id)).toEqual([created.id]);
    expect(JSON.stringify(json)).not.toContain('vk_');
  });

  it('revokes by id, and the running server refuses the key on its next request', async () => {
    const created = JSON.parse(verdict(['create', '--db', db, '--owner', 'carol', '--json']).stdout) as KeyJson;
    expect((await server.verify(created.key!)).ok).toBe(true);
    const run = verdict(['revoke', created.id, '--db', db]);
    expect(run).toMatchObject({ status: 0, stdout: `revoked API key ${created.id} of carol\n` });
    expect(await server.verify(created.key!)).toMatchObject({ ok: false, reason: 'REVOKED' });
    expect(verdict(['revoke', created.id, '--db', db]).stdout).toMatch(/was already revoked at/);
  });

  it('rotates with a grace period: both keys work, the old one until the grace ends', async () => {
    const old = JSON.parse(verdict(['create', '--db', db, '--owner', 'dave', '--attr', 'org=globex', '--json']).stdout) as KeyJson;
    const run = verdict(['rotate', old.id, '--grace', '24h', '--db', db, '--json']);
    expect(run.status).toBe(0);
    const rotated = JSON.parse(run.stdout) as KeyJson;
    expect(rotated).toMatchObject({ owner: 'dave', attributes: { org: 'globex' }, previous: { id: old.id, replacedBy: rotated.id, status: 'active' } });
    expect(Date.parse(rotated.previous!.expiresAt!) - Date.now()).toBeGreaterThan(23 * 3_600_000);
    expect((await server.verify(old.key!)).ok).toBe(true);
    expect(await server.verify(rotated.key!)).toMatchObject({ ok: true, principal: { id: 'dave' } });
    expect(verdict(['list', '--db', db, '--owner', 'dave']).stdout).toMatch(/rotated \(until \d{4}-/);
  });

  it('rotates without grace: the old key is revoked at once', async () => {
    const old = JSON.parse(verdict(['create', '--db', db, '--owner', 'erin', '--json']).stdout) as KeyJson;
    const run = verdict(['rotate', old.id, '--db', db]);
    expect(run.status).toBe(0);
    expect(run.stderr).toContain(`${old.id} is revoked`);
    expect(await server.verify(old.key!)).toMatchObject({ ok: false, reason: 'REVOKED' });
    expect((await server.verify(run.stdout.trim())).ok).toBe(true);
  });

  it('shows last use once the server has written it', async () => {
    const created = JSON.parse(verdict(['create', '--db', db, '--owner', 'frank', '--json']).stdout) as KeyJson;
    await server.verify(created.key!);
    server.flushLastUsed();
    const [listed] = JSON.parse(verdict(['list', '--db', db, '--owner', 'frank', '--json']).stdout) as KeyJson[];
    expect(listed?.lastUsedAt).not.toBeNull();
  });

  it('takes the key store from the server config file', () => {
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `authn:\n  apiKeys:\n    db: ${join(dir, 'from-config.db')}\n`);
    const created = JSON.parse(verdict(['create', '--config', config, '--owner', 'gina', '--json']).stdout) as KeyJson;
    expect(readdirSync(dir)).toContain('from-config.db');
    expect((JSON.parse(verdict(['list', '--config', config, '--json']).stdout) as KeyJson[]).map((k) => k.id)).toEqual([created.id]);
  });

  it('fails with one clear line and the right exit code', () => {
    const cases: [string[], number, RegExp][] = [
      [['create', '--db', db], 2, /^verdict keys: --owner is required/],
      [['create', '--db', db, '--owner', 'x', '--expires', 'tomorrow'], 2, /^verdict keys: --expires must be a duration \(90d\) or an ISO 8601 time/],
      [['create', '--db', db, '--owner', 'x', '--expires', '2099-02-30'], 2, /^verdict keys: --expires must be a duration \(90d\) or an ISO 8601 time/],
      [['create', '--db', db, '--owner', 'x', '--attr', 'novalue'], 2, /^verdict keys: --attr wants NAME=VALUE/],
      // Stored without it otherwise, while the command said it was created with it.
      [['create', '--db', db, '--owner', 'x', '--attr', '__proto__=admin'], 2, /^verdict keys: --attr __proto__=\.\.\. cannot be an attribute name/],
      [['create', '--db', db, '--owner', 'x', '--attr', 'constructor=admin'], 2, /^verdict keys: --attr constructor=\.\.\. cannot be an attribute name/],
      [['revoke', 'aaaaaaaaaaaaaaaa', '--db', db], 4, /^verdict keys: no API key with id "aaaaaaaaaaaaaaaa"/],
      [['revoke', 'not-an-id', '--db', db], 2, /is not a key id/],
      [['revoke', `vk_${'a'.repeat(16)}_${'b'.repeat(52)}`, '--db', db], 2, /pass the key id, not the key itself/],
      [['rotate', 'aaaaaaaaaaaaaaaa', '--grace', 'soon', '--db', db], 2, /--grace must be a duration/],
      // Past what a time can be: a usage error, not a failed write of the key store.
      [['create', '--db', db, '--owner', 'x', '--expires', '99999999999w'], 2, /^verdict keys: --expires 99999999999w is further ahead than a time can be written/],
      [['rotate', 'aaaaaaaaaaaaaaaa', '--grace', '99999999999w', '--db', db], 2, /^verdict keys: --grace 99999999999w is further ahead than a time can be written/],
      [['list', '--db', join(dir, 'missing.db')], 4, /no key store at .*missing\.db/],
      [['frobnicate'], 2, /unknown keys command "frobnicate"/],
      [['list', '--bogus'], 2, /Unknown option '--bogus'/],
    ];
    for (const [args, status, message] of cases) {
      const run = verdict(args);
      expect({ args, status: run.status }).toEqual({ args, status });
      expect(run.stderr).toMatch(message);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      // A pasted key never echoes back.
      expect(run.stderr).not.toContain('b'.repeat(52));
    }
  });

  it('has help', () => {
    const run = verdict(['--help']);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('verdict keys rotate ID [--grace DURATION]');
    expect(verdict([]).status).toBe(2);
  });
});
