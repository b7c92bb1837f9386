// API keys: their SQLite store (created, listed, revoked, rotated) and their check.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fchmodSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { AttributeValue, Attributes } from '../types.js';
import { VerdictError, messageOf } from '../errors.js';
import { hashApiKey, newApiKey, parseApiKey } from './api-key-format.js';
import { DEFAULT_API_KEY_HEADER, DEFAULT_KEYS_DB, DEFAULT_LAST_USED_FLUSH_MS, type ApiKeysConfig } from './config.js';
import { findCredential } from './credentials.js';
import type { AuthnFailure, AuthnResult, Authenticator, CredentialSource } from './types.js';

/** An API key as stored, without its secret (which is never stored). */
export interface ApiKeyInfo {
  readonly id: string;
  /** The principal id the key authenticates as. */
  readonly owner: string;
  /** A label for people: what the key is for. */
  readonly name: string | null;
  readonly roles: readonly string[];
  /** Principal attributes, e.g. org and tier. */
  readonly attributes: Attributes;
  /** Handed to policies as the principal attribute `scopes`. */
  readonly scopes: readonly string[];
  /** Milliseconds since the epoch, like the other times. */
  readonly createdAt: number;
  readonly expiresAt: number | null;
  /** Written in batches, so up to a few seconds behind. */
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
  /** The key that replaced this one by rotation. */
  readonly replacedBy: string | null;
}

export interface NewApiKey {
  readonly owner: string;
  readonly name?: string | null;
  readonly roles?: readonly string[];
  readonly attributes?: Attributes;
  readonly scopes?: readonly string[];
  readonly expiresAt?: number | null;
}

export type ApiKeyStatus = 'active' | 'expired' | 'revoked';

export function statusOf(info: Pick<ApiKeyInfo, 'revokedAt' | 'expiresAt'>, now: number = Date.now()): ApiKeyStatus {
  if (info.revokedAt !== null && info.revokedAt <= now) return 'revoked';
  if (info.expiresAt !== null && info.expiresAt <= now) return 'expired';
  return 'active';
}

interface Row {
  id: string;
  hash: Buffer;
  owner: string;
  name: string | null;
  roles: string;
  attributes: string;
  scopes: string;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
  replaced_by: string | null;
}

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE api_keys (
  id           TEXT PRIMARY KEY,
  hash         BLOB NOT NULL,
  owner        TEXT NOT NULL,
  name         TEXT,
  roles        TEXT NOT NULL,
  attributes   TEXT NOT NULL,
  scopes       TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER,
  last_used_at INTEGER,
  revoked_at   INTEGER,
  replaced_by  TEXT
) STRICT;
CREATE INDEX api_keys_owner ON api_keys (owner);
`;

const COLUMNS = 'id, hash, owner, name, roles, attributes, scopes, created_at, expires_at, last_used_at, revoked_at, replaced_by';

/** Compared against when the store is empty (no decoy row to read). */
const DUMMY_HASH = randomBytes(32);

export interface ApiKeyStoreOptions {
  /** Create the file (and its directory) when missing. Default true. */
  readonly create?: boolean;
  /** How long a write waits for another process's lock, in ms. Default 1000. */
  readonly busyTimeoutMs?: number;
}

/**
 * The API key store: one SQLite file holding, per key, its id, SHA-256 hash and
 * metadata — never the key. The server reads it on every request (an indexed
 * lookup by primary key), so `verdict keys revoke` takes effect on the next
 * request, with no cache to invalidate.
 *
 * @example
 * const store = ApiKeyStore.open('data/keys.db');
 * const { key, info } = store.create({ owner: 'svc-batch', scopes: ['predict'], attributes: { org: 'acme' } });
 * store.revoke(info.id);
 */
export class ApiKeyStore {
  private readonly byId: Database.Statement<[string], Row>;
  private readonly byIdOrDecoy: Database.Statement<[string], Row>;

  private constructor(
    readonly path: string,
    private readonly db: Database.Database,
  ) {
    this.byId = db.prepare<[string], Row>(`SELECT ${COLUMNS} FROM api_keys WHERE id = ?`);
    // An unknown id reads a real row instead (the first by id), so it costs what a known id does:
    // the same index probes, one row of real size materialised, one hash comparison.
    this.byIdOrDecoy = db.prepare<[string], Row>(
      `SELECT ${COLUMNS} FROM api_keys WHERE id = coalesce((SELECT id FROM api_keys WHERE id = ?), (SELECT id FROM api_keys ORDER BY id LIMIT 1))`,
    );
  }

  /**
   * @throws VerdictError NOT_FOUND when the file is missing and `create` is false,
   *   INPUT_UNREADABLE when it cannot be opened or is not a key store
   */
  static open(path: string, options: ApiKeyStoreOptions = {}): ApiKeyStore {
    const create = options.create ?? true;
    let db: Database.Database;
    try {
      if (create) {
        mkdirSync(dirname(path), { recursive: true });
        createPrivately(path);
      }
      db = new Database(path, { fileMustExist: !create });
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CANTOPEN' && !create) {
        throw new VerdictError('NOT_FOUND', `no key store at ${path}; "verdict keys create" makes one (or pass --db)`, { cause: error });
      }
      throw new VerdictError('INPUT_UNREADABLE', `cannot open the key store ${path}: ${messageOf(error)}`, { cause: error });
    }
    try {
      db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 1000}`);
      db.pragma('journal_mode = WAL');
      // A revocation must survive a power cut; writes are rare, so the fsync costs nothing that matters.
      db.pragma('synchronous = FULL');
      migrate(db, path);
    } catch (error) {
      db.close();
      throw error instanceof VerdictError ? error : new VerdictError('INPUT_UNREADABLE', `cannot use the key store ${path}: ${messageOf(error)}`, { cause: error });
    }
    return new ApiKeyStore(path, db);
  }

  /** Creates a key. The returned `key` is the only time the secret exists outside the caller. */
  create(input: NewApiKey, now: number = Date.now()): { key: string; info: ApiKeyInfo } {
    const { id, key } = newApiKey();
    this.insert(id, key, input, now);
    return { key, info: this.get(id)! };
  }

  private insert(id: string, key: string, input: NewApiKey, now: number): void {
    if (input.owner === '') throw new VerdictError('USAGE', 'an API key needs an owner (the principal id it authenticates as)');
    this.db
      .prepare(`INSERT INTO api_keys (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)`)
      .run(
        id,
        hashApiKey(key),
        input.owner,
        input.name ?? null,
        JSON.stringify(input.roles ?? []),
        JSON.stringify(input.attributes ?? {}),
        JSON.stringify(input.scopes ?? []),
        now,
        input.expiresAt ?? null,
      );
  }

  get(id: string): ApiKeyInfo | null {
    const row = this.byId.get(id);
    return row ? infoOf(row) : null;
  }

  /** All keys (or one owner's), newest first. */
  list(filter: { owner?: string } = {}): ApiKeyInfo[] {
    const rows =
      filter.owner === undefined
        ? this.db.prepare<[], Row>(`SELECT ${COLUMNS} FROM api_keys ORDER BY created_at DESC, id`).all()
        : this.db.prepare<[string], Row>(`SELECT ${COLUMNS} FROM api_keys WHERE owner = ? ORDER BY created_at DESC, id`).all(filter.owner);
    return rows.map(infoOf);
  }

  /**
   * Revokes a key from now on; revoking a revoked key changes nothing.
   * @throws VerdictError NOT_FOUND
   */
  revoke(id: string, now: number = Date.now()): ApiKeyInfo {
    const info = this.require(id);
    if (info.revokedAt !== null && info.revokedAt <= now) return info;
    this.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').run(now, id);
    return this.get(id)!;
  }

  /**
   * A new key with the old one's owner, name, roles, attributes and scopes. The old
   * key is revoked now, or with `graceMs` expires after that grace period so clients
   * can switch over. The new key lives as long as the old one was meant to
   * (its original lifetime) unless `expiresAt` is given.
   * @throws VerdictError NOT_FOUND, or INPUT_INVALID for a revoked or already rotated key
   */
  rotate(id: string, options: { graceMs?: number; expiresAt?: number | null } = {}, now: number = Date.now()): { key: string; info: ApiKeyInfo; previous: ApiKeyInfo } {
    const old = this.require(id);
    if (statusOf(old, now) === 'revoked') throw new VerdictError('INPUT_INVALID', `API key ${id} is revoked; create a new key instead of rotating it`);
    if (old.replacedBy !== null) throw new VerdictError('INPUT_INVALID', `API key ${id} was already rotated to ${old.replacedBy}; rotate that one`);
    const lifetime = old.expiresAt === null ? null : old.expiresAt - old.createdAt;
    const expiresAt = options.expiresAt !== undefined ? options.expiresAt : lifetime === null ? null : now + lifetime;
    const { id: newId, key } = newApiKey();
    this.db.transaction(() => {
      this.insert(newId, key, { owner: old.owner, name: old.name, roles: old.roles, attributes: old.attributes, scopes: old.scopes, expiresAt }, now);
      if (options.graceMs === undefined || options.graceMs <= 0) {
        this.db.prepare('UPDATE api_keys SET revoked_at = ?, replaced_by = ? WHERE id = ?').run(now, newId, id);
      } else {
        const end = now + options.graceMs;
        const until = old.expiresAt === null ? end : Math.min(old.expiresAt, end);
        this.db.prepare('UPDATE api_keys SET expires_at = ?, replaced_by = ? WHERE id = ?').run(until, newId, id);
      }
    })();
    return { key, info: this.get(newId)!, previous: this.get(id)! };
  }

  /**
   * Checks a presented key. The hash comparison is constant-time, and an unknown
   * id does the work of a known one (it reads and compares against a decoy row:
   * another key's, which can never match), so timing tells nothing about the
   * secret nor whether the id exists. Revocation and expiry are told only to a
   * holder of the right secret.
   */
  verify(key: string, now: number = Date.now()): { ok: true; info: ApiKeyInfo } | AuthnFailure {
    const parsed = parseApiKey(key);
    if (parsed === null) return { ok: false, reason: 'MALFORMED_CREDENTIAL', message: 'the API key is not of the form vk_<id>_<secret>' };
    // The row of this id, or (unknown id) a decoy: another key's row, whose hash cannot match since it covers its own id.
    const found = this.byIdOrDecoy.get(parsed.id);
    const matches = timingSafeEqual(hashApiKey(key), found?.hash.length === 32 ? found.hash : DUMMY_HASH);
    const row = found !== undefined && found.id === parsed.id ? found : undefined;
    if (!row || !matches) return { ok: false, reason: 'UNKNOWN_KEY', message: `API key ${parsed.id} is not recognised` };
    if (row.revoked_at !== null && row.revoked_at <= now) {
      return { ok: false, reason: 'REVOKED', message: `API key ${row.id} was revoked at ${new Date(row.revoked_at).toISOString()}` };
    }
    if (row.expires_at !== null && row.expires_at <= now) {
      return { ok: false, reason: 'EXPIRED', message: `API key ${row.id} expired at ${new Date(row.expires_at).toISOString()}` };
    }
    return { ok: true, info: infoOf(row) };
  }

  /** Writes last-used times in one transaction; a time never moves backwards. */
  recordUse(uses: ReadonlyMap<string, number>): void {
    if (uses.size === 0) return;
    const update = this.db.prepare('UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?');
    this.db.transaction(() => {
      for (const [id, time] of uses) update.run(time, id);
    })();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private require(id: string): ApiKeyInfo {
    const info = this.get(id);
    if (!info) throw new VerdictError('NOT_FOUND', `no API key with id ${JSON.stringify(id)} in ${this.path}; "verdict keys list" shows the ids`);
    return info;
  }
}

function migrate(db: Database.Database, path: string): void {
  const version = Number(db.pragma('user_version', { simple: true }));
  if (version === SCHEMA_VERSION) return;
  if (version > SCHEMA_VERSION) throw new VerdictError('INPUT_UNREADABLE', `the key store ${path} was written by a newer verdict (schema ${version}); upgrade verdict`);
  const tables = db.prepare<[], { n: number }>("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'").get()!.n;
  if (tables > 0) throw new VerdictError('INPUT_UNREADABLE', `${path} is not a verdict key store (it has other tables); check --db`);
  db.transaction(() => {
    db.exec(SCHEMA);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

function infoOf(row: Row): ApiKeyInfo {
  return {
    id: row.id,
    owner: row.owner,
    name: row.name,
    roles: JSON.parse(row.roles) as string[],
    attributes: JSON.parse(row.attributes) as Attributes,
    scopes: JSON.parse(row.scopes) as string[],
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
    replacedBy: row.replaced_by,
  };
}

export interface ApiKeyAuthenticatorOptions {
  /** A failed last-used write or an unreadable store; the request itself fails closed. */
  readonly onError?: (error: unknown) => void;
}

/**
 * API keys from `authorization: Bearer vk_...` or the configured header (default
 * `x-api-key`). The principal is the key's owner with its roles, and its
 * attributes plus `scopes`. Last-used times are collected in memory and written
 * every `lastUsedFlushMs`, so no request waits for a disk write.
 */
export class ApiKeyAuthenticator implements Authenticator {
  private pendingUses = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  readonly header: string;

  private constructor(
    readonly store: ApiKeyStore,
    header: string,
    flushMs: number,
    private readonly onError: (error: unknown) => void,
  ) {
    this.header = header;
    this.timer = setInterval(() => this.flushLastUsed(), flushMs);
    this.timer.unref();
  }

  /** Opens (creating if missing) the store named by the config. @throws VerdictError INPUT_UNREADABLE */
  static open(config: ApiKeysConfig, options: ApiKeyAuthenticatorOptions = {}): ApiKeyAuthenticator {
    // A short busy timeout: the last-used write runs on the event loop and must not stall it
    // behind a CLI transaction; a write that loses the race is retried at the next flush.
    const store = ApiKeyStore.open(config.db ?? DEFAULT_KEYS_DB, { busyTimeoutMs: 50 });
    return new ApiKeyAuthenticator(store, (config.header ?? DEFAULT_API_KEY_HEADER).toLowerCase(), config.lastUsedFlushMs ?? DEFAULT_LAST_USED_FLUSH_MS, options.onError ?? (() => undefined));
  }

  authenticate(source: CredentialSource): Promise<AuthnResult> {
    const credential = findCredential(source.headers, this.header);
    if (credential.kind === 'none') return Promise.resolve({ ok: false, reason: 'MISSING_CREDENTIAL', message: `no API key (authorization: Bearer vk_... or ${this.header})` });
    if (credential.kind === 'malformed') return Promise.resolve({ ok: false, reason: 'MALFORMED_CREDENTIAL', message: credential.message });
    if (credential.kind === 'jwt') return Promise.resolve({ ok: false, reason: 'MALFORMED_CREDENTIAL', message: 'a bearer token was sent, but only API keys are accepted' });
    return this.verify(credential.value);
  }

  /** Checks one key. Never rejects: a store that cannot be read answers UNAVAILABLE. */
  verify(key: string): Promise<AuthnResult> {
    if (this.closed) return Promise.resolve({ ok: false, reason: 'UNAVAILABLE', message: 'the API key store is closed' });
    const now = Date.now();
    let result: ReturnType<ApiKeyStore['verify']>;
    try {
      result = this.store.verify(key, now);
    } catch (error) {
      this.onError(error);
      return Promise.resolve({ ok: false, reason: 'UNAVAILABLE', message: 'the API key store cannot be read' });
    }
    if (!result.ok) return Promise.resolve(result);
    const { info } = result;
    this.pendingUses.set(info.id, now);
    const attributes: Record<string, AttributeValue> = { ...info.attributes, scopes: [...info.scopes] };
    return Promise.resolve({ ok: true, principal: { id: info.owner, roles: info.roles, attributes }, method: 'api-key', credentialId: info.id });
  }

  /** Writes the collected last-used times now. */
  flushLastUsed(): void {
    if (this.pendingUses.size === 0) return;
    const uses = this.pendingUses;
    this.pendingUses = new Map();
    try {
      this.store.recordUse(uses);
    } catch (error) {
      // Put them back (newer uses win) for the next flush; losing a last-used time is not worth failing a request for.
      for (const [id, time] of uses) if (!this.pendingUses.has(id)) this.pendingUses.set(id, time);
      this.onError(new VerdictError('INPUT_UNREADABLE', `could not record API key last-used times in ${this.store.path}: ${messageOf(error)}`, { cause: error }));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.flushLastUsed();
    this.store.close();
  }
}

/**
 * Creates `path` empty with mode 0600 when it does not exist yet: the key store
 * holds key hashes and who each key stands for, for its owner only (SQLite gives
 * the `-wal` and `-shm` files the same mode). An existing file keeps its mode.
 */
function createPrivately(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw error;
  }
  try {
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
}
