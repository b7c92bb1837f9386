// Principals from the headers of an identity-aware proxy in front of verdict
// (`trustedPrincipal`), instead of credentials.

import { z } from 'zod';
import type { Authenticator, AuthnResult, CredentialSource } from '../authn/types.js';
import type { AttributeValue, Attributes } from '../types.js';

const headerName = z
  .string()
  .regex(/^[A-Za-z0-9-]+$/, { error: 'expected an HTTP header name, e.g. x-auth-request-user' })
  .transform((h) => h.toLowerCase());

/**
 * The `trustedPrincipal` key of the server configuration: take the principal from
 * headers that an identity-aware proxy in front of verdict has already established
 * (oauth2-proxy's `X-Auth-Request-User`, Authelia's `Remote-User`, ...).
 *
 * Only safe when the gateway overwrites or strips these headers on every client
 * request; otherwise any client can name itself.
 *
 * @example
 * trustedPrincipal:
 *   idHeader: x-auth-request-user
 *   rolesHeader: x-auth-request-groups     # comma-separated
 *   attributeHeaders: { org: x-auth-request-org }
 */
export const trustedPrincipalSchema = z.strictObject({
  idHeader: headerName,
  rolesHeader: headerName.optional(),
  attributeHeaders: z.record(z.string().min(1), headerName).optional(),
});
export type TrustedPrincipalConfig = z.infer<typeof trustedPrincipalSchema>;

const MAX_ID_LENGTH = 256;
// Control characters never belong in an identifier; a header that carries them was not written by a gateway.
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Principals from trusted headers; see trustedPrincipalSchema. */
export class TrustedHeaderAuthenticator implements Authenticator {
  private readonly attributeHeaders: readonly (readonly [string, string])[];

  constructor(private readonly config: TrustedPrincipalConfig) {
    this.attributeHeaders = Object.entries(config.attributeHeaders ?? {});
  }

  async authenticate(source: CredentialSource): Promise<AuthnResult> {
    return this.authenticateSync(source);
  }

  authenticateSync({ headers, repeatedHeaders }: CredentialSource): AuthnResult {
    // A proxy that appends its header rather than replacing the client's lets the client's copy through beside it:
    // joined, `x, leo` is nobody's id (leo's directory facts no longer apply), two orgs are one odd org.
    if (repeatedHeaders !== undefined) {
      const twice = [this.config.idHeader, ...this.attributeHeaders.map(([, header]) => header)].find((header) => repeatedHeaders.has(header));
      if (twice !== undefined) {
        return { ok: false, reason: 'MALFORMED_CREDENTIAL', message: `the ${twice} header came more than once (or with a comma, as Envoy joins repeats): the gateway must replace the client's copy, not add its own beside it` };
      }
    }
    const raw = headers[this.config.idHeader];
    const id = raw?.trim() ?? '';
    if (id === '') return { ok: false, reason: 'MISSING_CREDENTIAL', message: `no ${this.config.idHeader} header: the gateway did not say who is calling` };
    if (id.length > MAX_ID_LENGTH || CONTROL.test(id)) {
      return { ok: false, reason: 'MALFORMED_CREDENTIAL', message: `the ${this.config.idHeader} header is not a principal id (control characters, or longer than ${MAX_ID_LENGTH})` };
    }
    const rolesText = this.config.rolesHeader === undefined ? undefined : headers[this.config.rolesHeader];
    const roles = rolesText === undefined ? [] : rolesText.split(',').map((r) => r.trim()).filter((r) => r !== '');
    const attributes: Record<string, AttributeValue> = {};
    for (const [name, header] of this.attributeHeaders) {
      const value = headers[header];
      if (value !== undefined) attributes[name] = value;
    }
    return { ok: true, principal: { id, roles, attributes: attributes as Attributes }, method: 'trusted-header', credentialId: null };
  }
}

/** What the gateways use when no authentication is configured: every request is unauthenticated. */
export const UNCONFIGURED_AUTHENTICATOR: Authenticator = {
  authenticate: async () => ({
    ok: false,
    reason: 'MISSING_CREDENTIAL',
    message: 'verdict has no authentication configured for gateway requests (configure authn or trustedPrincipal)',
  }),
};
