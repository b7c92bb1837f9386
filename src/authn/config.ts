// The `authn` and `tls` configuration: schemas, defaults and environment variables.

import { z } from 'zod';
import { VerdictError } from '../errors.js';

/**
 * Signature algorithms a JWT may be verified with. Only asymmetric ones: verdict
 * holds public keys, and accepting an HMAC algorithm next to them is how the
 * classic "HS256 signed with the public key" confusion attack gets in. `none`
 * is not an algorithm.
 */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

/** A claim: `sub`, a dotted path `realm_access.roles`, or segments for names with dots (`["https://example.com/roles"]`). */
export type ClaimPath = string | readonly string[];

export interface JwtClaimMapping {
  /** The principal id. Default `sub`. */
  readonly principalId?: ClaimPath;
  /** A list of strings (or one space-separated string). Default: no roles. */
  readonly roles?: ClaimPath;
  /** Principal attribute name → claim. Absent claims leave the attribute out. */
  readonly attributes?: Readonly<Record<string, ClaimPath>>;
}

export interface JwtConfig {
  /** Accepted `iss` values. Required: a token from another issuer is never accepted. */
  readonly issuer: string | readonly string[];
  /** Accepted `aud` values; the token must name one. Required for the same reason. */
  readonly audience: string | readonly string[];
  readonly algorithms: readonly JwtAlgorithm[];
  /** Exactly one of jwksFile, jwksUrl, publicKeyFile. */
  readonly jwksFile?: string;
  readonly jwksUrl?: string;
  /** A PEM public key (SPKI) or certificate. */
  readonly publicKeyFile?: string;
  /** Least time between two reads of jwksFile (on an unknown `kid`, or to notice removed keys). Default 1000. */
  readonly jwksReloadMs?: number;
  /** Leeway for `exp`, `nbf` and `iat`, in seconds. Default 30. */
  readonly clockSkewSeconds?: number;
  /**
   * The longest a token may live, in seconds: one whose `exp` is further than this
   * from now, or whose `iat` is longer ago, is refused. Default 86400 (24 h).
   */
  readonly maxTokenAgeSeconds?: number;
  readonly claims?: JwtClaimMapping;
}

export interface ApiKeysConfig {
  /** The key store (SQLite). Default `data/keys.db`. */
  readonly db?: string;
  /** A header that carries a bare API key, besides `authorization: Bearer vk_...`. Default `x-api-key`. */
  readonly header?: string;
  /** How often last-used times are written, in ms. Default 5000. */
  readonly lastUsedFlushMs?: number;
}

/** Which credentials the gateway endpoints accept. Neither configured: every request is unauthenticated. */
export interface AuthnConfig {
  readonly jwt?: JwtConfig;
  readonly apiKeys?: ApiKeysConfig;
}

/** TLS for verdict's own ports. */
export interface TlsConfig {
  /** PEM certificate chain of the server. */
  readonly cert: string;
  /** PEM private key of the server. */
  readonly key: string;
  /** PEM bundle of the CAs client certificates must chain to. */
  readonly clientCa?: string;
  /** Refuse a connection without a valid client certificate. Default: true when clientCa is set. */
  readonly requireClientCert?: boolean;
  /** Serve the operator HTTP port over TLS too (same certificate and client checks). Default false. */
  readonly http?: boolean;
}

export const DEFAULT_JWKS_RELOAD_MS = 1000;
export const DEFAULT_CLOCK_SKEW_SECONDS = 30;
export const DEFAULT_MAX_TOKEN_AGE_SECONDS = 86_400;
export const DEFAULT_KEYS_DB = 'data/keys.db';
export const DEFAULT_API_KEY_HEADER = 'x-api-key';
export const DEFAULT_LAST_USED_FLUSH_MS = 5000;

const nonEmpty = z.string().min(1);
const oneOrMany = z.union([nonEmpty, z.array(nonEmpty).min(1)]);
const claimPath = z.union([nonEmpty, z.array(nonEmpty).min(1)]);

const jwtSchema = z
  .strictObject({
    issuer: oneOrMany,
    audience: oneOrMany,
    algorithms: z.array(z.enum(JWT_ALGORITHMS, { error: `expected one of ${JWT_ALGORITHMS.join(', ')} (HMAC algorithms and "none" are refused)` })).min(1),
    jwksFile: nonEmpty.optional(),
    jwksUrl: z.url({ protocol: /^https?$/ }).optional(),
    publicKeyFile: nonEmpty.optional(),
    jwksReloadMs: z.number().int().min(0).max(3_600_000).optional(),
    clockSkewSeconds: z.number().int().min(0).max(3600).optional(),
    maxTokenAgeSeconds: z.number().int().min(60).max(31_536_000).optional(),
    claims: z
      .strictObject({
        principalId: claimPath.optional(),
        roles: claimPath.optional(),
        attributes: z.record(nonEmpty, claimPath).optional(),
      })
      .optional(),
  })
  .refine((jwt) => [jwt.jwksFile, jwt.jwksUrl, jwt.publicKeyFile].filter((v) => v !== undefined).length === 1, {
    error: 'give exactly one of jwksFile, jwksUrl, publicKeyFile',
  });

const apiKeysSchema = z.strictObject({
  db: nonEmpty.optional(),
  header: z
    .string()
    .regex(/^[A-Za-z0-9-]+$/, { error: 'expected an HTTP header name' })
    .transform((h) => h.toLowerCase())
    .optional(),
  lastUsedFlushMs: z.number().int().min(10).max(3_600_000).optional(),
});

/** The `authn` key of the server configuration. */
export const authnSchema = z.strictObject({
  jwt: jwtSchema.optional(),
  apiKeys: apiKeysSchema.optional(),
});

/**
 * One layer's view of `tls` (file, environment or flags): every key optional, since
 * e.g. the certificate may come from the file and its key from the environment.
 * resolveTls checks the merged result.
 */
export const tlsLayerSchema = z.strictObject({
  cert: nonEmpty.optional(),
  key: nonEmpty.optional(),
  clientCa: nonEmpty.optional(),
  requireClientCert: z.boolean().optional(),
  http: z.boolean().optional(),
});
export type TlsLayer = z.infer<typeof tlsLayerSchema>;

/** Environment variables for the `tls` keys. */
export const TLS_ENVIRONMENT_KEYS: Readonly<Record<keyof TlsConfig, string>> = {
  cert: 'VERDICT_TLS_CERT',
  key: 'VERDICT_TLS_KEY',
  clientCa: 'VERDICT_TLS_CLIENT_CA',
  requireClientCert: 'VERDICT_TLS_REQUIRE_CLIENT_CERT',
  http: 'VERDICT_TLS_HTTP',
};

/** The `tls` layer from environment variables, or undefined when none is set. Booleans: true/false/1/0. */
export function tlsFromEnvironment(env: NodeJS.ProcessEnv): Record<string, unknown> | undefined {
  const raw: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(TLS_ENVIRONMENT_KEYS)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    if (key === 'requireClientCert' || key === 'http') raw[key] = value === 'true' || value === '1' ? true : value === 'false' || value === '0' ? false : value;
    else raw[key] = value;
  }
  return Object.keys(raw).length > 0 ? raw : undefined;
}

/** The `tls` layer from `verdict serve` flags, or undefined when none is given. */
export function tlsFromFlags(values: {
  cert?: string | undefined;
  key?: string | undefined;
  clientCa?: string | undefined;
  requireClientCert?: boolean | undefined;
  http?: boolean | undefined;
}): TlsLayer | undefined {
  const layer: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) if (value !== undefined) layer[key] = value;
  return Object.keys(layer).length > 0 ? (layer as TlsLayer) : undefined;
}

/**
 * The merged `tls` layers as a TlsConfig, or null for plaintext.
 * @throws VerdictError CONFIG_INVALID for an incomplete or contradictory combination
 */
export function resolveTls(layer: TlsLayer | null | undefined): TlsConfig | null {
  if (layer === null || layer === undefined) return null;
  const { cert, key, clientCa, requireClientCert, http } = layer;
  if (cert === undefined && key === undefined) {
    if (clientCa !== undefined || requireClientCert === true || http === true) {
      throw new VerdictError('CONFIG_INVALID', 'configuration: tls needs cert and key (the server certificate) before clientCa, requireClientCert or http mean anything');
    }
    return null;
  }
  if (cert === undefined || key === undefined) {
    throw new VerdictError('CONFIG_INVALID', `configuration: tls.${cert === undefined ? 'cert' : 'key'} is missing; give both the server certificate and its private key`);
  }
  const require = requireClientCert ?? clientCa !== undefined;
  if (require && clientCa === undefined) {
    // grpc-js would otherwise trust the public web PKI roots for client certificates.
    throw new VerdictError('CONFIG_INVALID', 'configuration: tls.requireClientCert needs tls.clientCa, the CA bundle client certificates must chain to');
  }
  if (!require && clientCa !== undefined) {
    // ServerCredentials.createSsl either requests and requires a client certificate or does not
    // ask for one at all; a CA that is never consulted would only look like protection.
    throw new VerdictError('CONFIG_INVALID', 'configuration: tls.clientCa with requireClientCert: false is not supported (grpc-js cannot ask for an optional client certificate); remove clientCa or require client certificates');
  }
  return { cert, key, ...(clientCa !== undefined ? { clientCa } : {}), requireClientCert: require, http: http ?? false };
}
