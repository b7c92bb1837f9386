import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashApiKey, newApiKey, parseApiKey } from '../../src/authn/api-key-format.js';
import { ApiKeyAuthenticator, ApiKeyStore } from '../../src/authn/api-keys.js';
import type { AuthnResult } from '../../src/authn/types.js';
import { VerdictError } from '../../src/errors.js';

function failure(result: AuthnResult): { reason: string; message: string } {
  if (result.ok) throw new Error(`expected a failure, got principal ${result.principal.id}`);
  return { reason: result.reason, message: result.message };
}

/**
 * Whether `text` occurs in any file of the store, write-ahead log included. grep runs in its own
 * process: opening the database file from this one would drop this process's POSIX locks on it
 * (SQLite's documented hazard) and leave the open connections stale.
 */
function inStore(dir: string, text: string): boolean {
  const status = spawnSync('grep', ['-rqF', text, dir]).status;
  if (status !== 0 && status !== 1) throw new Error(`grep failed with ${status}`);
  return status === 0;
}

describe('the key format', () => {
  it('is vk_<16 base32 id>_<52 base32 secret>, parsed back to its id', () => {
    const { id, key } = newApiKey();
    expect(key).toMatch(/^vk_[a-z2-7]{16}_[a-z2-7]{52}$/);
    expect(parseApiKey(key)).toEqual({ id });
    expect(parseApiKey(`${key}x`)).toBeNull();
    expect(parseApiKey(key.toUpperCase())).toBeNull();
    expect(newApiKey().key).not.toBe(newApiKey().key);
  });
});

describe('API keys', () => {
  let dir: string;
  let path: string;
  /** The CLI's connection: a separate one, as a separate process would have. */
  let admin: ApiKeyStore;
  let authn: ApiKeyAuthenticator;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-keys-'));
    path = join(dir, 'keys.db');
    admin = ApiKeyStore.open(path);
    authn = ApiKeyAuthenticator.open({ db: path, lastUsedFlushMs: 60_000 });
  });
  afterEach(() => {
    authn.close();
    admin.close();
  });

  it('authenticates a key as its owner, with roles, attributes and scopes', async () => {
    const { key, info } = admin.create({ owner: 'svc-batch', name: 'nightly scoring', roles: ['scorer'], scopes: ['predict'], attributes: { org: 'acme', tier: 'pro' } });
    expect(await authn.authenticate({ headers: { authorization: `Bearer ${key}` } })).toEqual({
      ok: true,
      principal: { id: 'svc-batch', roles: ['scorer'], attributes: { org: 'acme', tier: 'pro', scopes: ['predict'] } },
      method: 'api-key',
      credentialId: info.id,
    });
    expect((await authn.authenticate({ headers: { 'x-api-key': key } })).ok).toBe(true);
  });

  it('stores only the hash: neither the key nor its secret is anywhere in the file', async () => {
    const { key, info } = admin.create({ owner: 'alice' });
    await authn.verify(key);
    authn.flushLastUsed();
    const secret = key.slice(`vk_${info.id}_`.length);
    expect(inStore(dir, info.id)).toBe(true);
    expect(inStore(dir, secret)).toBe(false);
    expect(inStore(dir, key)).toBe(false);
    const row = new Database(path, { readonly: true }).prepare<[string], { hash: Buffer }>('SELECT hash FROM api_keys WHERE id = ?').get(info.id)!;
    expect(row.hash.equals(hashApiKey(key))).toBe(true);
  });

  it('refuses a revoked key from the next request on', async () => {
    const { key, info } = admin.create({ owner: 'alice' });
    expect((await authn.verify(key)).ok).toBe(true);
    admin.revoke(info.id);
    const result = failure(await authn.verify(key));
    expect(result.reason).toBe('REVOKED');
    expect(result.message).toMatch(new RegExp(`^API key ${info.id} was revoked at \\d{4}-`));
  });

  it('refuses an expired key', async () => {
    const { key } = admin.create({ owner: 'alice', expiresAt: Date.now() - 1000 });
    expect(failure(await authn.verify(key)).reason).toBe('EXPIRED');
  });

  it('refuses an unknown id and a wrong secret alike, and tells a revoked key only to its holder', async () => {
    const { key, info } = admin.create({ owner: 'alice' });
    const unknown = failure(await authn.verify(newApiKey().key));
    expect(unknown.reason).toBe('UNKNOWN_KEY');
    const wrongSecret = failure(await authn.verify(newApiKey(info.id).key));
    expect(wrongSecret).toEqual({ reason: 'UNKNOWN_KEY', message: `API key ${info.id} is not recognised` });
    admin.revoke(info.id);
    expect(failure(await authn.verify(newApiKey(info.id).key)).reason).toBe('UNKNOWN_KEY');
    expect(failure(await authn.verify(key)).reason).toBe('REVOKED');
  });

  it('an unknown id reads a decoy row (another key), which never authenticates, and answers as a wrong secret does', async () => {
    // The decoy is the first key by id: present its own secret under ids it does not have.
    const made = [admin.create({ owner: 'alice' }), admin.create({ owner: 'bob' }), admin.create({ owner: 'carol' })];
    const decoy = made.reduce((a, b) => (a.info.id < b.info.id ? a : b));
    const secretOf = (key: string) => key.slice(key.lastIndexOf('_') + 1);
    // Random, and before and after every id, so the decoy is read whatever the order.
    for (const id of [newApiKey().id, '2222222222222222', 'zzzzzzzzzzzzzzzz']) {
      const forged = `vk_${id}_${secretOf(decoy.key)}`;
      expect(failure(await authn.verify(forged))).toEqual({ reason: 'UNKNOWN_KEY', message: `API key ${id} is not recognised` });
    }
    // The same shape for a known id with a wrong secret, and the decoy itself still works.
    expect(failure(await authn.verify(newApiKey(decoy.info.id).key))).toEqual({ reason: 'UNKNOWN_KEY', message: `API key ${decoy.info.id} is not recognised` });
    const ok = await authn.verify(decoy.key);
    expect(ok.ok && ok.principal.id).toBe(decoy.info.owner);
  });

  it('refuses an unknown id on an empty store', async () => {
    expect(failure(await authn.verify(newApiKey().key)).reason).toBe('UNKNOWN_KEY');
  });

  it('refuses a malformed key without looking it up', async () => {
    for (const bad of ['vk_', 'vk_short_secret', `vk_${'A'.repeat(16)}_${'a'.repeat(52)}`]) {
      expect(failure(await authn.verify(bad)).reason).toBe('MALFORMED_CREDENTIAL');
    }
  });

  it('rotates: a new key with the same owner and attributes, the old one revoked', async () => {
    const old = admin.create({ owner: 'alice', roles: ['r'], scopes: ['predict'], attributes: { org: 'acme' } });
    const { key, info, previous } = admin.rotate(old.info.id);
    expect(info).toMatchObject({ owner: 'alice', roles: ['r'], scopes: ['predict'], attributes: { org: 'acme' } });
    expect(previous.replacedBy).toBe(info.id);
    expect(failure(await authn.verify(old.key)).reason).toBe('REVOKED');
    expect(await authn.verify(key)).toMatchObject({ ok: true, principal: { id: 'alice' }, credentialId: info.id });
    expect(() => admin.rotate(old.info.id)).toThrow(/is revoked/);
  });

  it('rotates with a grace period: the old key works until it ends', async () => {
    const t0 = Date.now();
    const old = admin.create({ owner: 'alice', expiresAt: t0 + 90 * 86_400_000 }, t0);
    const hour = 3_600_000;
    const { info } = admin.rotate(old.info.id, { graceMs: 24 * hour }, t0);
    expect(admin.verify(old.key, t0 + 23 * hour).ok).toBe(true);
    expect(admin.verify(old.key, t0 + 25 * hour)).toMatchObject({ ok: false, reason: 'EXPIRED' });
    // The new key lives as long as the old one was meant to.
    expect(info.expiresAt).toBe(t0 + 90 * 86_400_000);
    expect(() => admin.rotate(old.info.id, {}, t0 + hour)).toThrow(/already rotated/);
  });

  it('records last use in batches, not on the request', async () => {
    const { key, info } = admin.create({ owner: 'alice' });
    await authn.verify(key);
    expect(admin.get(info.id)?.lastUsedAt).toBeNull();
    authn.flushLastUsed();
    const used = admin.get(info.id)?.lastUsedAt;
    expect(used).toBeGreaterThan(Date.now() - 5000);
  });

  it('writes pending last-use times when closed', async () => {
    const { key, info } = admin.create({ owner: 'alice' });
    await authn.verify(key);
    authn.close();
    expect(admin.get(info.id)?.lastUsedAt).not.toBeNull();
    expect(failure(await authn.verify(key)).reason).toBe('UNAVAILABLE');
  });

  it('lists and revokes by id; an unknown id is NOT_FOUND', () => {
    const a = admin.create({ owner: 'alice' }, 1000);
    const b = admin.create({ owner: 'bob' }, 2000);
    expect(admin.list().map((k) => k.id)).toEqual([b.info.id, a.info.id]);
    expect(admin.list({ owner: 'alice' }).map((k) => k.id)).toEqual([a.info.id]);
    expect(() => admin.revoke('aaaaaaaaaaaaaaaa')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }) as VerdictError);
  });
});

describe('the key store file', () => {
  it('refuses a file that is not a key store', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'verdict-keys-')), 'other.db');
    const db = new Database(path);
    db.exec('CREATE TABLE decisions (x)');
    db.close();
    expect(() => ApiKeyStore.open(path)).toThrow(/is not a verdict key store/);
  });

  it('is NOT_FOUND when missing and not to be created', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'verdict-keys-')), 'missing.db');
    expect(() => ApiKeyStore.open(path, { create: false })).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }) as VerdictError);
  });
});
