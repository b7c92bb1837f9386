/**
 * Authentication: turning a request's credential (a JWT bearer token, an API key)
 * into a principal, and a client certificate into the caller of a decision.
 */
export type { AuthnFailure, AuthnFailureReason, AuthnResult, Authenticator, CredentialSource } from './types.js';
export type { ApiKeysConfig, AuthnConfig, ClaimPath, JwtAlgorithm, JwtClaimMapping, JwtConfig, TlsConfig } from './config.js';
export { JWT_ALGORITHMS } from './config.js';
export { createAuthenticator, ChainAuthenticator, type AuthenticatorOptions } from './chain.js';
export { JwtAuthenticator, type JwtAuthenticatorOptions } from './jwt.js';
export { ApiKeyAuthenticator, ApiKeyStore, statusOf, type ApiKeyInfo, type ApiKeyStatus, type NewApiKey } from './api-keys.js';
export { API_KEY_PREFIX } from './api-key-format.js';
export { findCredential, bearerToken, type Credential } from './credentials.js';
export { AUTHN_RULE_ID, authnFailureDecision } from './decision.js';
export { certificateIdentity, grpcCallerOf, grpcServerCredentials, httpsServerOptions, loadTlsMaterial, tlsSocketIdentity, type TlsMaterial } from './mtls.js';
