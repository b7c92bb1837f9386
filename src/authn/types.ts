// What authentication gives the rest of verdict: a principal, or why not.

import type { Principal } from '../types.js';

/** Why a credential was not accepted; recorded with the decision and answered 401. */
export type AuthnFailureReason =
  | 'MISSING_CREDENTIAL'
  | 'MALFORMED_CREDENTIAL'
  | 'EXPIRED'
  | 'NOT_YET_VALID'
  | 'BAD_SIGNATURE'
  | 'WRONG_ISSUER'
  | 'WRONG_AUDIENCE'
  | 'DISALLOWED_ALGORITHM'
  | 'UNKNOWN_KEY'
  | 'REVOKED'
  | 'UNAVAILABLE';

/** What a gateway request carries that can prove who is calling. Header names are lower case. */
export interface CredentialSource {
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** Headers the request carried more than once (their values joined in `headers`), where the transport can tell. */
  readonly repeatedHeaders?: ReadonlySet<string>;
}

export type AuthnResult =
  | {
      readonly ok: true;
      readonly principal: Principal;
      /** How the principal was established: `jwt`, `api-key`. */
      readonly method: string;
      /** The credential's own id (JWT `jti`, API key id) for the decision log; never the secret. */
      readonly credentialId: string | null;
    }
  | {
      readonly ok: false;
      readonly reason: AuthnFailureReason;
      /** One line for the log and the 401 body; never includes the secret. */
      readonly message: string;
      /**
       * The `sub` claim of a bearer token that was refused, read without trusting
       * it (the signature may be forged): recorded with the decision
       * (`details.authn.tokenSubject`) and used only to count failures per token
       * subject for alerting, never to decide or to suspend anyone.
       */
      readonly tokenSubject?: string;
    };

/** Turns a credential into a principal. Implementations: JWT bearer tokens, API keys, and the configured set of both (authenticators.ts). */
export interface Authenticator {
  authenticate(source: CredentialSource): Promise<AuthnResult>;
  close?(): Promise<void> | void;
}

/** A refused credential: the failing half of AuthnResult. */
export type AuthnFailure = Extract<AuthnResult, { readonly ok: false }>;
