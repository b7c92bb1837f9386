import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../../src/authn/api-keys.js';
import { createAuthenticator, type ConfiguredAuthenticator } from '../../src/authn/authenticators.js';
import type { AuthnResult } from '../../src/authn/types.js';

function reasonOf(result: AuthnResult): string {
  return result.ok ? 'OK' : result.reason;
}

describe('createAuthenticator: one authenticator, the method chosen by the credential', () => {
  let dir: string;
  let authenticator: ConfiguredAuthenticator;
  let apiKey: string;
  let jwt: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verdict-authn-'));
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1' }] }));
    jwt = await new SignJWT({ sub: 'dana', roles: ['data_scientist'] })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('https://id.test/')
      .setAudience('verdict')
      .setExpirationTime('5m')
      .sign(privateKey);
    const store = ApiKeyStore.open(join(dir, 'keys.db'));
    apiKey = store.create({ owner: 'svc-batch', scopes: ['predict'] }).key;
    store.close();
    authenticator = createAuthenticator({
      jwt: { issuer: 'https://id.test/', audience: 'verdict', algorithms: ['ES256'], jwksFile: join(dir, 'jwks.json'), claims: { roles: 'roles' } },
      apiKeys: { db: join(dir, 'keys.db'), header: 'x-verdict-key' },
    });
  });
  afterAll(() => authenticator.close());

  it('sends a bearer JWT to JWT and a bearer vk_ key to API keys', async () => {
    expect(await authenticator.authenticate({ headers: { authorization: `Bearer ${jwt}` } })).toMatchObject({ ok: true, method: 'jwt', principal: { id: 'dana', roles: ['data_scientist'] } });
    expect(await authenticator.authenticate({ headers: { authorization: `bearer ${apiKey}` } })).toMatchObject({ ok: true, method: 'api-key', principal: { id: 'svc-batch' } });
  });

  it('reads a bare key from the configured header (and only that one)', async () => {
    expect(await authenticator.authenticate({ headers: { 'x-verdict-key': apiKey } })).toMatchObject({ ok: true, method: 'api-key' });
    expect(reasonOf(await authenticator.authenticate({ headers: { 'x-api-key': apiKey } }))).toBe('MISSING_CREDENTIAL');
  });

  it('says MISSING_CREDENTIAL when there is none, naming what is accepted', async () => {
    const result = await authenticator.authenticate({ headers: { 'user-agent': 'curl' } });
    expect(result).toEqual({ ok: false, reason: 'MISSING_CREDENTIAL', message: 'no credential; send authorization: Bearer <JWT>, or authorization: Bearer vk_... or x-verdict-key' });
  });

  it('refuses other schemes, unknown shapes and two credentials at once as malformed', async () => {
    expect(reasonOf(await authenticator.authenticate({ headers: { authorization: 'Basic YWxpY2U6c2VjcmV0' } }))).toBe('MALFORMED_CREDENTIAL');
    expect(reasonOf(await authenticator.authenticate({ headers: { authorization: 'Bearer opaque-token' } }))).toBe('MALFORMED_CREDENTIAL');
    expect(reasonOf(await authenticator.authenticate({ headers: { authorization: `Bearer ${jwt}`, 'x-verdict-key': apiKey } }))).toBe('MALFORMED_CREDENTIAL');
  });

  it('refuses a credential of a kind that is not configured', async () => {
    const onlyKeys = createAuthenticator({ apiKeys: { db: join(dir, 'keys.db') } });
    expect(await onlyKeys.authenticate({ headers: { authorization: `Bearer ${jwt}` } })).toEqual({ ok: false, reason: 'MALFORMED_CREDENTIAL', message: 'bearer tokens (JWT) are not accepted here' });
    onlyKeys.close();
    const onlyJwt = createAuthenticator({ jwt: { issuer: 'https://id.test/', audience: 'verdict', algorithms: ['ES256'], jwksFile: join(dir, 'jwks.json') } });
    expect(reasonOf(await onlyJwt.authenticate({ headers: { authorization: `Bearer ${apiKey}` } }))).toBe('MALFORMED_CREDENTIAL');
    // A key in the default header is refused as such, not ignored as if absent.
    expect(reasonOf(await onlyJwt.authenticate({ headers: { 'x-api-key': apiKey } }))).toBe('MALFORMED_CREDENTIAL');
  });

  it('with nothing configured, lets nobody in', async () => {
    const none = createAuthenticator({});
    expect(await none.authenticate({ headers: {} })).toEqual({ ok: false, reason: 'MISSING_CREDENTIAL', message: 'no credential, and no authentication method is configured' });
    expect(reasonOf(await none.authenticate({ headers: { authorization: `Bearer ${jwt}` } }))).toBe('MALFORMED_CREDENTIAL');
  });
});
