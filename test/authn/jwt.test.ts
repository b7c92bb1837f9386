import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, base64url, exportJWK, exportPKCS8, exportSPKI, generateKeyPair, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JwtConfig } from '../../src/authn/config.js';
import { JwtAuthenticator } from '../../src/authn/jwt.js';
import type { AuthnResult } from '../../src/authn/types.js';

const ISSUER = 'https://id.verdict.test/';
const AUDIENCE = 'verdict';

interface SigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

async function signingKey(kid: string, alg: 'RS256' | 'ES256' = 'RS256'): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}

/** A token signed by `key`; claims default to a valid one for dana. */
async function token(key: SigningKey, claims: JWTPayload = {}, header: { alg?: string; kid?: string | null } = {}): Promise<string> {
  const payload: JWTPayload = { sub: 'dana', iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 300, ...claims };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  const kid = header.kid === null ? {} : { kid: header.kid ?? key.kid };
  return new SignJWT(payload).setProtectedHeader({ alg: header.alg ?? (key.publicJwk.alg as string), ...kid }).sign(key.privateKey);
}

function writeJwks(path: string, keys: readonly SigningKey[]): void {
  writeFileSync(path, JSON.stringify({ keys: keys.map((k) => k.publicJwk) }));
}

function failure(result: AuthnResult): { reason: string; message: string } {
  if (result.ok) throw new Error(`expected a failure, got principal ${result.principal.id}`);
  return { reason: result.reason, message: result.message };
}

let dir: string;
let keyA: SigningKey;
let keyB: SigningKey;
let impostor: SigningKey;
let jwksPath: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'verdict-jwt-'));
  keyA = await signingKey('key-a');
  keyB = await signingKey('key-b');
  // Same kid as A, different key: its signatures must not verify.
  impostor = await signingKey('key-a');
  jwksPath = join(dir, 'jwks.json');
  writeJwks(jwksPath, [keyA]);
});

function jwksConfig(overrides: Partial<JwtConfig> = {}): JwtConfig {
  return { issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'], jwksFile: jwksPath, ...overrides };
}

describe('JWT bearer tokens from a JWKS file', () => {
  let jwt: JwtAuthenticator;
  beforeAll(() => {
    jwt = JwtAuthenticator.create(jwksConfig());
  });

  it('accepts a valid token: sub becomes the principal, jti the credential id', async () => {
    const result = await jwt.authenticate({ headers: { authorization: `Bearer ${await token(keyA, { jti: 'tok-1' })}` } });
    expect(result).toEqual({ ok: true, principal: { id: 'dana', roles: [], attributes: {} }, method: 'jwt', credentialId: 'tok-1' });
  });

  it('refuses an expired token, and says when it expired', async () => {
    const exp = now() - 3600;
    const result = failure(await jwt.verify(await token(keyA, { exp })));
    expect(result.reason).toBe('EXPIRED');
    expect(result.message).toContain(new Date(exp * 1000).toISOString());
  });

  it('allows the configured clock skew on exp and nbf, and no more', async () => {
    expect((await jwt.verify(await token(keyA, { exp: now() - 10 }))).ok).toBe(true);
    expect((await jwt.verify(await token(keyA, { nbf: now() + 10 }))).ok).toBe(true);
    const strict = JwtAuthenticator.create(jwksConfig({ clockSkewSeconds: 0 }));
    expect(failure(await strict.verify(await token(keyA, { exp: now() - 10 }))).reason).toBe('EXPIRED');
  });

  it('measures the window by its clock: exp and nbf hold to the second, skew included', async () => {
    // A clock the test sets: the token is issued once and judged at chosen instants.
    let clockMs = Date.UTC(2030, 0, 1, 12, 0, 0);
    const at = JwtAuthenticator.create(jwksConfig({ clockSkewSeconds: 30 }), { now: () => clockMs });
    const t0 = clockMs / 1000;
    const bounded = await token(keyA, { iat: t0, nbf: t0 + 60, exp: t0 + 120 });
    const reasonAt = async (seconds: number): Promise<string> => {
      clockMs = (t0 + seconds) * 1000;
      const result = await at.verify(bounded);
      return result.ok ? 'OK' : result.reason;
    };
    expect(await reasonAt(29)).toBe('NOT_YET_VALID');
    expect(await reasonAt(30)).toBe('OK');
    expect(await reasonAt(149)).toBe('OK');
    expect(await reasonAt(150)).toBe('EXPIRED');
  });

  it('refuses a token that is not yet valid', async () => {
    expect(failure(await jwt.verify(await token(keyA, { nbf: now() + 3600 }))).reason).toBe('NOT_YET_VALID');
  });

  it('refuses another issuer, and a token without one', async () => {
    const wrong = failure(await jwt.verify(await token(keyA, { iss: 'https://evil.example/' })));
    expect(wrong).toEqual({ reason: 'WRONG_ISSUER', message: 'token issuer "https://evil.example/" is not accepted' });
    expect(failure(await jwt.verify(await token(keyA, { iss: undefined }))).reason).toBe('WRONG_ISSUER');
  });

  it('refuses a token for another audience', async () => {
    expect(failure(await jwt.verify(await token(keyA, { aud: 'billing' }))).reason).toBe('WRONG_AUDIENCE');
    expect((await jwt.verify(await token(keyA, { aud: ['billing', AUDIENCE] }))).ok).toBe(true);
  });

  it('refuses a token without exp: it would never expire', async () => {
    expect(failure(await jwt.verify(await token(keyA, { exp: undefined })))).toEqual({ reason: 'MALFORMED_CREDENTIAL', message: 'token has no exp claim' });
  });

  it('refuses a bad signature: another key under the same kid, or a changed payload', async () => {
    expect(failure(await jwt.verify(await token(impostor))).reason).toBe('BAD_SIGNATURE');
    const [h, , s] = (await token(keyA)).split('.');
    const forged = `${h}.${base64url.encode(JSON.stringify({ sub: 'admin', iss: ISSUER, aud: AUDIENCE, exp: now() + 300 }))}.${s}`;
    expect(failure(await jwt.verify(forged)).reason).toBe('BAD_SIGNATURE');
  });

  it('refuses alg: none', async () => {
    const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT', kid: 'key-a' }));
    const payload = base64url.encode(JSON.stringify({ sub: 'admin', iss: ISSUER, aud: AUDIENCE, exp: now() + 300 }));
    const result = failure(await jwt.authenticate({ headers: { authorization: `Bearer ${header}.${payload}.` } }));
    expect(result).toEqual({ reason: 'DISALLOWED_ALGORITHM', message: 'token algorithm "none" is not allowed (allowed: RS256)' });
  });

  it('refuses an algorithm that is not listed, even with a key that fits it', async () => {
    const es = await signingKey('key-es', 'ES256');
    const path = join(dir, 'mixed.json');
    writeJwks(path, [keyA, es]);
    const onlyRs = JwtAuthenticator.create(jwksConfig({ jwksFile: path }));
    expect(failure(await onlyRs.verify(await token(es))).reason).toBe('DISALLOWED_ALGORITHM');
    const both = JwtAuthenticator.create(jwksConfig({ jwksFile: path, algorithms: ['RS256', 'ES256'] }));
    expect((await both.verify(await token(es))).ok).toBe(true);
  });

  it('refuses a kid it does not know', async () => {
    expect(failure(await jwt.verify(await token(keyB)))).toEqual({ reason: 'UNKNOWN_KEY', message: 'no key with kid "key-b" fits the token' });
  });

  it('refuses what is not a JWT at all', async () => {
    expect(failure(await jwt.verify('abc.def.ghi')).reason).toBe('MALFORMED_CREDENTIAL');
    expect(failure(await jwt.verify(`${'a'.repeat(20_000)}.b.c`)).reason).toBe('MALFORMED_CREDENTIAL');
    expect(failure(await jwt.authenticate({ headers: {} })).reason).toBe('MISSING_CREDENTIAL');
  });

  it('never puts the token in the message', async () => {
    for (const t of [await token(keyA, { exp: now() - 3600 }), await token(impostor), await token(keyB), await token(keyA, { aud: 'x' })]) {
      const { message } = failure(await jwt.verify(t));
      expect(message).not.toContain(t.split('.')[2]);
      expect(message).not.toContain(t.split('.')[1]);
    }
  });
});

describe('algorithm confusion: an HS256 token "signed" with the RSA public key', () => {
  let pemPath: string;
  let pem: string;

  beforeAll(async () => {
    const { publicKey } = await generateKeyPair('RS256', { extractable: true });
    pem = await exportSPKI(publicKey);
    pemPath = join(dir, 'rsa-public.pem');
    writeFileSync(pemPath, pem);
  });

  /** What the attacker does: HMAC with the public key's PEM bytes as the secret. */
  function confused(key: string): string {
    const header = base64url.encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const payload = base64url.encode(JSON.stringify({ sub: 'admin', iss: ISSUER, aud: AUDIENCE, exp: now() + 300 }));
    const signature = base64url.encode(createHmac('sha256', key).update(`${header}.${payload}`).digest());
    return `${header}.${payload}.${signature}`;
  }

  it('is refused with a PEM key', async () => {
    const jwt = JwtAuthenticator.create({ issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'], publicKeyFile: pemPath });
    expect(failure(await jwt.verify(confused(pem))).reason).toBe('DISALLOWED_ALGORITHM');
  });

  it('is refused with a JWKS', async () => {
    const jwt = JwtAuthenticator.create(jwksConfig());
    expect(failure(await jwt.verify(confused(JSON.stringify(keyA.publicJwk)))).reason).toBe('DISALLOWED_ALGORITHM');
  });

  it('cannot even be configured: HS256 is not an accepted algorithm', async () => {
    const { authnSchema } = await import('../../src/authn/config.js');
    const parsed = authnSchema.safeParse({ jwt: { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'], publicKeyFile: pemPath } });
    expect(parsed.success).toBe(false);
    expect(authnSchema.safeParse({ jwt: { issuer: ISSUER, audience: AUDIENCE, algorithms: ['none'], publicKeyFile: pemPath } }).success).toBe(false);
  });
});

describe('a PEM public key', () => {
  it('verifies tokens signed by its private half', async () => {
    const key = await signingKey('pem');
    const path = join(dir, 'pem-ok.pem');
    const { publicKey } = { publicKey: await (await import('jose')).importJWK(key.publicJwk, 'RS256') };
    writeFileSync(path, await exportSPKI(publicKey as CryptoKey));
    const jwt = JwtAuthenticator.create({ issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256', 'PS256'], publicKeyFile: path });
    expect((await jwt.verify(await token(key, {}, { kid: null }))).ok).toBe(true);
    expect(failure(await jwt.verify(await token(impostor, {}, { kid: null }))).reason).toBe('BAD_SIGNATURE');
  });

  it('refuses algorithms the key cannot verify, a private key, and a missing file, at start', async () => {
    const path = join(dir, 'rsa.pem');
    const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
    writeFileSync(path, await exportSPKI(publicKey));
    expect(() => JwtAuthenticator.create({ issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256', 'ES256'], publicKeyFile: path })).toThrow(
      /ES256 cannot be verified with the rsa key/,
    );
    const privatePath = join(dir, 'private.pem');
    writeFileSync(privatePath, await exportPKCS8(privateKey));
    expect(() => JwtAuthenticator.create({ issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'], publicKeyFile: privatePath })).toThrow(/holds a private key/);
    expect(() => JwtAuthenticator.create({ issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'], publicKeyFile: join(dir, 'nope.pem') })).toThrow(/cannot read .*ENOENT/);
  });
});

describe('key rotation in the JWKS file', () => {
  it('accepts a key once it appears in the file, and refuses it once removed', async () => {
    const path = join(dir, 'rotating.json');
    writeJwks(path, [keyA]);
    const jwt = JwtAuthenticator.create(jwksConfig({ jwksFile: path, jwksReloadMs: 0 }));
    const tokenB = await token(keyB);
    expect(failure(await jwt.verify(tokenB)).reason).toBe('UNKNOWN_KEY');

    writeJwks(path, [keyA, keyB]);
    expect((await jwt.verify(tokenB)).ok).toBe(true);

    writeJwks(path, [keyB]);
    expect(failure(await jwt.verify(await token(keyA))).reason).toBe('UNKNOWN_KEY');
    expect((await jwt.verify(tokenB)).ok).toBe(true);
  });

  it('reads the file at most once per jwksReloadMs, however many unknown kids arrive', async () => {
    const path = join(dir, 'flood.json');
    writeJwks(path, [keyA]);
    let clockMs = Date.now();
    const jwt = JwtAuthenticator.create(jwksConfig({ jwksFile: path, jwksReloadMs: 400 }), { now: () => clockMs });
    const bogus = await Promise.all(Array.from({ length: 50 }, (_, i) => token(keyB, {}, { kid: `bogus-${i}` })));
    const reads = jwt.jwksReads;
    // The interval has passed: fifty unknown kids at once cost one read between them.
    clockMs += 400;
    const results = await Promise.all(bogus.map((t) => jwt.verify(t)));
    expect(results.every((r) => !r.ok && r.reason === 'UNKNOWN_KEY')).toBe(true);
    expect(jwt.jwksReads - reads).toBe(1);

    // A key added to the file is found by the first unknown kid once the next interval has passed, not before.
    writeJwks(path, [keyA, keyB]);
    clockMs += 399;
    expect(failure(await jwt.verify(await token(keyB))).reason).toBe('UNKNOWN_KEY');
    expect(jwt.jwksReads - reads).toBe(1);
    clockMs += 1;
    expect((await jwt.verify(await token(keyB))).ok).toBe(true);
    expect(jwt.jwksReads - reads).toBe(2);
  });

  it('keeps the keys it has when the file is briefly broken, and reports it', async () => {
    const path = join(dir, 'broken.json');
    writeJwks(path, [keyA]);
    const errors: unknown[] = [];
    const jwt = JwtAuthenticator.create(jwksConfig({ jwksFile: path, jwksReloadMs: 0 }), { onError: (e) => errors.push(e) });
    writeFileSync(path, '{"keys": [');
    expect((await jwt.verify(await token(keyA))).ok).toBe(true);
    expect(String(errors[0])).toMatch(/not a valid JSON Web Key Set now/);
  });

  it('refuses a JWKS file with private key material at start', () => {
    const path = join(dir, 'private-jwks.json');
    writeFileSync(path, JSON.stringify({ keys: [{ ...keyA.publicJwk, d: 'secret' }] }));
    expect(() => JwtAuthenticator.create(jwksConfig({ jwksFile: path }))).toThrow(/private or symmetric key material/);
  });
});

describe('claims to principal', () => {
  it('maps id, roles and attributes by configuration, nested and namespaced claims included', async () => {
    const jwt = JwtAuthenticator.create(
      jwksConfig({
        claims: {
          principalId: 'email',
          roles: 'realm_access.roles',
          attributes: { org: 'org_id', tier: 'plan.tier', tenant: ['https://verdict.test/claims', 'tenant'], groups: 'https://verdict.test/groups', missing: 'nope' },
        },
      }),
    );
    const result = await jwt.verify(
      await token(keyA, {
        email: 'dana@acme.test',
        realm_access: { roles: ['data_scientist', 'viewer'] },
        org_id: 'acme',
        plan: { tier: 'pro' },
        'https://verdict.test/claims': { tenant: 't-1' },
        'https://verdict.test/groups': ['ml'],
      }),
    );
    expect(result).toMatchObject({
      ok: true,
      principal: { id: 'dana@acme.test', roles: ['data_scientist', 'viewer'], attributes: { org: 'acme', tier: 'pro', tenant: 't-1', groups: ['ml'] } },
    });
  });

  it('takes a space-separated roles claim (like scope), and refuses one of the wrong type', async () => {
    const jwt = JwtAuthenticator.create(jwksConfig({ claims: { roles: 'scope' } }));
    expect(await jwt.verify(await token(keyA, { scope: 'read predict' }))).toMatchObject({ ok: true, principal: { roles: ['read', 'predict'] } });
    expect(failure(await jwt.verify(await token(keyA, { scope: { a: 1 } })))).toEqual({ reason: 'MALFORMED_CREDENTIAL', message: 'claim scope is not a list of role names' });
  });

  it('refuses a token without the principal id claim', async () => {
    const jwt = JwtAuthenticator.create(jwksConfig());
    expect(failure(await jwt.verify(await token(keyA, { sub: undefined }))).reason).toBe('MALFORMED_CREDENTIAL');
  });
});

describe('a JWKS URL', () => {
  let server: Server;
  let served: SigningKey[];
  let fetches = 0;
  let url: string;

  beforeAll(async () => {
    served = [keyA];
    server = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: served.map((k) => k.publicJwk) }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('fetches the keys once and caches them', async () => {
    const jwt = JwtAuthenticator.create(jwksConfig({ jwksFile: undefined, jwksUrl: url }));
    expect((await jwt.verify(await token(keyA))).ok).toBe(true);
    expect((await jwt.verify(await token(keyA))).ok).toBe(true);
    expect(fetches).toBe(1);
    expect(failure(await jwt.verify(await token(impostor))).reason).toBe('BAD_SIGNATURE');
  });

  it('refetches for an unknown kid and accepts the new key', async () => {
    served = [keyA];
    const before = fetches;
    const jwt = JwtAuthenticator.create(jwksConfig({ jwksFile: undefined, jwksUrl: url }));
    served = [keyA, keyB];
    expect((await jwt.verify(await token(keyB))).ok).toBe(true);
    expect(fetches - before).toBe(1);
  });

  it('fails closed with UNAVAILABLE when the URL does not answer, and reports it', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const errors: unknown[] = [];
    const jwt = JwtAuthenticator.create(jwksConfig({ jwksFile: undefined, jwksUrl: `http://127.0.0.1:${port}/jwks.json` }), { onError: (e) => errors.push(e) });
    expect(failure(await jwt.verify(await token(keyA)))).toEqual({ reason: 'UNAVAILABLE', message: 'the token signing keys are unavailable' });
    expect(errors).toHaveLength(1);
  });
});
