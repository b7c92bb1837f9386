// The configured authentication methods (JWT, API keys) behind one Authenticator.

import { ApiKeyAuthenticator } from './api-keys.js';
import { DEFAULT_API_KEY_HEADER, type AuthnConfig } from './config.js';
import { findCredential } from './credentials.js';
import { JwtAuthenticator } from './jwt.js';
import type { AuthnResult, Authenticator, CredentialSource } from './types.js';

export interface AuthenticatorOptions {
  /**
   * Failures that are verdict's, not the caller's: a JWKS file that cannot be
   * re-read, a JWKS URL that does not answer, a last-used write that failed.
   * Pass a logger here; the request itself already failed closed (UNAVAILABLE).
   */
  readonly onError?: (error: unknown, method: 'jwt' | 'api-key') => void;
}

/**
 * The configured methods behind one Authenticator, chosen by the credential's
 * shape: `vk_...` (bearer or the API key header) goes to API keys, a three-part
 * bearer token to JWT. A credential of a kind that is not configured is
 * MALFORMED_CREDENTIAL; no credential is MISSING_CREDENTIAL.
 */
export class ConfiguredAuthenticator implements Authenticator {
  constructor(
    readonly jwt: JwtAuthenticator | null,
    readonly apiKeys: ApiKeyAuthenticator | null,
    private readonly apiKeyHeader: string = apiKeys?.header ?? DEFAULT_API_KEY_HEADER,
  ) {}

  authenticate(source: CredentialSource): Promise<AuthnResult> {
    const credential = findCredential(source.headers, this.apiKeyHeader);
    switch (credential.kind) {
      case 'none':
        return Promise.resolve({ ok: false, reason: 'MISSING_CREDENTIAL', message: this.missingMessage() });
      case 'malformed':
        return Promise.resolve({ ok: false, reason: 'MALFORMED_CREDENTIAL', message: credential.message });
      case 'api-key':
        if (this.apiKeys === null) return Promise.resolve({ ok: false, reason: 'MALFORMED_CREDENTIAL', message: 'API keys are not accepted here' });
        return this.apiKeys.verify(credential.value);
      case 'jwt':
        if (this.jwt === null) return Promise.resolve({ ok: false, reason: 'MALFORMED_CREDENTIAL', message: 'bearer tokens (JWT) are not accepted here' });
        return this.jwt.verify(credential.value);
    }
  }

  private missingMessage(): string {
    const accepted = [this.jwt ? 'authorization: Bearer <JWT>' : null, this.apiKeys ? `authorization: Bearer vk_... or ${this.apiKeyHeader}` : null].filter((m) => m !== null);
    return accepted.length ? `no credential; send ${accepted.join(', or ')}` : 'no credential, and no authentication method is configured';
  }

  close(): void {
    this.apiKeys?.close();
  }
}

/**
 * The Authenticator for the server's `authn` configuration. With neither `jwt` nor
 * `apiKeys` configured it refuses every request (MISSING_CREDENTIAL): failing
 * closed beats letting anonymous requests through by omission.
 *
 * @throws VerdictError CONFIG_INVALID (unreadable key file, key/algorithm mismatch),
 *   INPUT_UNREADABLE (the API key store cannot be opened)
 * @example
 * const authenticator = createAuthenticator(config.authn, { onError: (e, m) => logger.warn({ method: m, error: messageOf(e) }, 'authn') });
 * const result = await authenticator.authenticate({ headers: { 'x-api-key': 'vk_...' } });
 * if (!result.ok) await pipeline.check(new RefusedRequest(request, unauthenticated(result)), meta); // decide/refusals.ts
 */
export function createAuthenticator(config: AuthnConfig, options: AuthenticatorOptions = {}): ConfiguredAuthenticator {
  const report = options.onError;
  const jwt = config.jwt ? JwtAuthenticator.create(config.jwt, { onError: (e) => report?.(e, 'jwt') }) : null;
  const apiKeys = config.apiKeys ? ApiKeyAuthenticator.open(config.apiKeys, { onError: (e) => report?.(e, 'api-key') }) : null;
  return new ConfiguredAuthenticator(jwt, apiKeys);
}
