// JWT bearer tokens: keys from a JWKS file or URL or a PEM key, checked with jose.

import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  type LocalJWKSet,
} from 'jose';
import { VerdictError, messageOf } from '../errors.js';
import { principalFromClaims } from './claims.js';
import { DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_JWKS_RELOAD_MS, DEFAULT_MAX_TOKEN_AGE_SECONDS, type JwtAlgorithm, type JwtConfig } from './config.js';
import { bearerToken } from './credentials.js';
import type { AuthnFailure, AuthnResult, Authenticator, CredentialSource } from './types.js';

/** Tokens longer than this are refused unparsed: no honest bearer token is near it. */
const MAX_TOKEN_LENGTH = 16 * 1024;
/** How long a JWKS URL may take to answer before the check fails closed (UNAVAILABLE). */
const REMOTE_TIMEOUT_MS = 5000;

export interface JwtAuthenticatorOptions {
  /** Unexpected failures (an unreadable JWKS file on re-read, a JWKS URL that does not answer). */
  readonly onError?: (error: unknown) => void;
  /**
   * The clock, in ms since the epoch (default: the system's). A token's time window
   * (`exp`, `nbf`) and the JWKS file's re-read interval are measured by it.
   */
  readonly now?: () => number;
}

/** Where verification keys come from. */
interface KeySource {
  readonly key: KeyObject | JWTVerifyGetKey;
  /** Times the JWKS file was read (tests and metrics). */
  readonly reads: number;
}

/** Marks a key-source failure that is verdict's problem, not the token's. */
class KeysUnavailable extends Error {}

/**
 * A JWKS file, re-read at most once per `reloadMs`, when a token arrives after
 * that interval. So a key added to the file (a new `kid`) is accepted, and a key
 * removed from it is refused, within `reloadMs` — while a flood of tokens naming
 * bogus `kid`s still costs at most one small read per interval.
 */
class JwksFile implements KeySource {
  private text: string;
  private set: LocalJWKSet;
  private lastRead: number;
  private readCount = 1;

  constructor(
    private readonly path: string,
    private readonly reloadMs: number,
    private readonly onError: (error: unknown) => void,
    private readonly now: () => number,
  ) {
    try {
      this.text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new VerdictError('CONFIG_INVALID', `authn.jwt.jwksFile: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
    }
    try {
      this.set = parseJwks(this.text);
    } catch (error) {
      throw new VerdictError('CONFIG_INVALID', `authn.jwt.jwksFile: ${path} is not a JSON Web Key Set: ${messageOf(error)}`, { cause: error });
    }
    this.lastRead = now();
  }

  get reads(): number {
    return this.readCount;
  }

  readonly key: JWTVerifyGetKey = (header, token) => {
    this.refreshIfDue();
    return this.set(header, token);
  };

  private refreshIfDue(): void {
    const now = this.now();
    if (now - this.lastRead < this.reloadMs) return;
    this.lastRead = now;
    this.readCount++;
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (error) {
      // Keep serving the keys we have: a moment without the file (a deploy replacing it)
      // must not turn into refusing every token.
      this.onError(new VerdictError('CONFIG_INVALID', `cannot re-read the JWKS file ${this.path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}; keeping the keys read before`));
      return;
    }
    if (text === this.text) return;
    try {
      this.set = parseJwks(text);
      this.text = text;
    } catch (error) {
      // Most likely caught half-written; the next read after reloadMs tries again.
      this.onError(new VerdictError('CONFIG_INVALID', `the JWKS file ${this.path} is not a valid JSON Web Key Set now (${messageOf(error)}); keeping the keys read before`));
    }
  }
}

function parseJwks(text: string): LocalJWKSet {
  const data = JSON.parse(text) as JSONWebKeySet;
  // Private members in a served file would mean someone published a signing key.
  if (Array.isArray(data?.keys) && data.keys.some((k) => typeof k === 'object' && k !== null && ('d' in k || k.kty === 'oct'))) {
    throw new Error('it holds private or symmetric key material; verdict needs only public keys');
  }
  return createLocalJWKSet(data);
}

/** A JWKS URL via jose: cached, re-fetched on an unknown `kid` (at most every 30 s) and after 10 minutes. */
function remoteKeys(url: string): KeySource {
  const set = createRemoteJWKSet(new URL(url), { timeoutDuration: REMOTE_TIMEOUT_MS });
  const key: JWTVerifyGetKey = async (header, token) => {
    try {
      return await set(header, token);
    } catch (error) {
      if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) throw error;
      throw new KeysUnavailable(`the JWKS at ${url} could not be fetched: ${messageOf(error)}`, { cause: error });
    }
  };
  return { key, reads: 0 };
}

/** Which algorithms a public key can verify; used to refuse a configuration that could never work. */
function algorithmsFor(key: KeyObject): readonly JwtAlgorithm[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return ['ES256'];
      if (curve === 'secp384r1') return ['ES384'];
      if (curve === 'secp521r1') return ['ES512'];
      return [];
    }
    case 'ed25519':
      return ['EdDSA', 'Ed25519'];
    default:
      return [];
  }
}

function pemKey(path: string, algorithms: readonly JwtAlgorithm[]): KeySource {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `authn.jwt.publicKeyFile: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`, { cause: error });
  }
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    // createPublicKey would happily derive the public half; a signing key has no business here.
    throw new VerdictError('CONFIG_INVALID', `authn.jwt.publicKeyFile: ${path} holds a private key; give verdict only the public key (openssl pkey -pubout)`);
  }
  let key: KeyObject;
  try {
    key = pem.includes('-----BEGIN CERTIFICATE-----') ? new X509Certificate(pem).publicKey : createPublicKey(pem);
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `authn.jwt.publicKeyFile: ${path} is not a PEM public key or certificate: ${messageOf(error)}`, { cause: error });
  }
  const usable = algorithmsFor(key);
  const unusable = algorithms.filter((a) => !usable.includes(a));
  if (unusable.length > 0) {
    throw new VerdictError(
      'CONFIG_INVALID',
      `authn.jwt.algorithms: ${unusable.join(', ')} cannot be verified with the ${key.asymmetricKeyType ?? 'unknown'} key in ${path}${usable.length ? ` (it suits ${usable.join(', ')})` : ''}`,
    );
  }
  return { key, reads: 0 };
}

/** A claim value for a log line: attacker-chosen, so quoted, escaped and cut short. */
function quoted(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Latest instant a Date can hold, in seconds (ECMAScript: 8.64e15 ms). */
const MAX_DATE_SECONDS = 8.64e12;

function isoOf(seconds: unknown): string {
  // `exp: 1e20` is a number a Date cannot hold; show it as sent rather than throw.
  return typeof seconds === 'number' && Math.abs(seconds) <= MAX_DATE_SECONDS ? new Date(seconds * 1000).toISOString() : quoted(seconds);
}

function fail(reason: AuthnFailure['reason'], message: string): AuthnFailure {
  return { ok: false, reason, message };
}

/**
 * Maps what jose throws to the reason recorded with the decision. The order
 * matters: JWTExpired is also a claim failure in spirit, and is told apart first.
 */
export function jwtFailureOf(error: unknown, token: string, algorithms: readonly string[]): AuthnFailure {
  if (error instanceof errors.JWTExpired) return fail('EXPIRED', `token expired at ${isoOf(error.payload.exp)}`);
  if (error instanceof errors.JWTClaimValidationFailed) {
    const payload = error.payload;
    if (error.claim === 'nbf' && error.reason === 'check_failed') return fail('NOT_YET_VALID', `token not valid before ${isoOf(payload.nbf)}`);
    if (error.claim === 'iss') return fail('WRONG_ISSUER', payload.iss === undefined ? 'token has no issuer (iss)' : `token issuer ${quoted(payload.iss)} is not accepted`);
    if (error.claim === 'aud') return fail('WRONG_AUDIENCE', payload.aud === undefined ? 'token has no audience (aud)' : `token audience ${quoted(payload.aud)} does not name this service`);
    if (error.reason === 'missing') return fail('MALFORMED_CREDENTIAL', `token has no ${error.claim} claim`);
    return fail('MALFORMED_CREDENTIAL', `token claim ${error.claim} is invalid`);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return fail('DISALLOWED_ALGORITHM', `token algorithm ${quoted(headerOf(token)?.alg)} is not allowed (allowed: ${algorithms.join(', ')})`);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return fail('BAD_SIGNATURE', 'token signature does not verify');
  if (error instanceof errors.JWKSNoMatchingKey) {
    const kid = headerOf(token)?.kid;
    return fail('UNKNOWN_KEY', kid === undefined ? 'token names no key (kid) and no key fits it' : `no key with kid ${quoted(kid)} fits the token`);
  }
  if (error instanceof errors.JWKSMultipleMatchingKeys) return fail('UNKNOWN_KEY', 'several keys fit the token; give each key a distinct kid');
  if (error instanceof KeysUnavailable || error instanceof errors.JWKSTimeout) return fail('UNAVAILABLE', 'the token signing keys are unavailable');
  if (error instanceof errors.JWTInvalid || error instanceof errors.JWSInvalid || error instanceof errors.JOSENotSupported) {
    return fail('MALFORMED_CREDENTIAL', 'token is not a well-formed JWT');
  }
  // A TypeError from jose (e.g. a JWKS key unusable with the token's algorithm) says the token
  // cannot be verified; it never verifies by accident.
  return fail('MALFORMED_CREDENTIAL', 'token could not be verified');
}

/** The longest token subject kept with a refused token; a longer `sub` is cut to it. */
export const MAX_TOKEN_SUBJECT_LENGTH = 256;

/** A payload's `sub`, when it is a non-empty string, cut to MAX_TOKEN_SUBJECT_LENGTH. */
function subjectOf(payload: JWTPayload): string | null {
  const sub = payload.sub;
  return typeof sub === 'string' && sub !== '' ? sub.slice(0, MAX_TOKEN_SUBJECT_LENGTH) : null;
}

/**
 * The `sub` of a token that did not verify, read without trusting it (anyone can
 * write any `sub` into a token with a bad signature): for counting failures per
 * token subject, never for deciding. Null when the payload cannot be read. The
 * token is at most MAX_TOKEN_LENGTH characters here, so the work is bounded.
 */
export function unverifiedSubject(token: string): string | null {
  try {
    return subjectOf(decodeJwt(token));
  } catch {
    return null;
  }
}

function withSubject(failure: AuthnFailure, subject: string | null): AuthnFailure {
  return subject === null ? failure : { ...failure, tokenSubject: subject };
}

function headerOf(token: string): { alg?: unknown; kid?: unknown } | null {
  try {
    return decodeProtectedHeader(token);
  } catch {
    return null;
  }
}

/**
 * JWT bearer tokens, checked with jose: signature with an explicitly allowed
 * algorithm, `iss`, `aud`, `exp` (required) and `nbf` with a clock skew; then a
 * bound on the token's lifetime (`exp` at most `maxTokenAgeSeconds` ahead, `iat`
 * neither in the future nor older than that). The
 * claims become the principal as configured.
 *
 * @example
 * const jwt = JwtAuthenticator.create({ issuer: 'https://id.example.com/', audience: 'verdict', algorithms: ['RS256'], jwksUrl: 'https://id.example.com/jwks.json' });
 * const result = await jwt.authenticate({ headers: { authorization: 'Bearer eyJ...' } });
 */
export class JwtAuthenticator implements Authenticator {
  /** The same for every token, so built once. */
  private readonly options: JWTVerifyOptions;
  private readonly skewSeconds: number;
  private readonly maxAgeSeconds: number;

  private constructor(
    private readonly config: JwtConfig,
    private readonly keys: KeySource,
    private readonly onError: (error: unknown) => void,
    /** Null: the system clock, which jose reads itself. */
    private readonly now: (() => number) | null,
  ) {
    this.skewSeconds = config.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
    this.maxAgeSeconds = config.maxTokenAgeSeconds ?? DEFAULT_MAX_TOKEN_AGE_SECONDS;
    this.options = Object.freeze({
      issuer: config.issuer as string | string[],
      audience: config.audience as string | string[],
      algorithms: [...config.algorithms],
      clockTolerance: this.skewSeconds,
      // A token without an expiry would be valid for ever once leaked.
      requiredClaims: ['exp'],
    });
  }

  /** @throws VerdictError CONFIG_INVALID when the key source cannot be read or does not fit the algorithms */
  static create(config: JwtConfig, options: JwtAuthenticatorOptions = {}): JwtAuthenticator {
    const onError = options.onError ?? (() => undefined);
    let keys: KeySource;
    if (config.jwksFile !== undefined) keys = new JwksFile(config.jwksFile, config.jwksReloadMs ?? DEFAULT_JWKS_RELOAD_MS, onError, options.now ?? Date.now);
    else if (config.jwksUrl !== undefined) keys = remoteKeys(config.jwksUrl);
    else if (config.publicKeyFile !== undefined) keys = pemKey(config.publicKeyFile, config.algorithms);
    else throw new VerdictError('CONFIG_INVALID', 'authn.jwt: give exactly one of jwksFile, jwksUrl, publicKeyFile');
    return new JwtAuthenticator(config, keys, onError, options.now ?? null);
  }

  /** How many times the JWKS file has been read (1 after start). */
  get jwksReads(): number {
    return this.keys.reads;
  }

  authenticate(source: CredentialSource): Promise<AuthnResult> {
    const token = bearerToken(source.headers.authorization);
    if (token === null) return Promise.resolve(fail('MISSING_CREDENTIAL', 'no bearer token in the authorization header'));
    return this.verify(token);
  }

  /**
   * A verified token that lives too long, or claims to be issued in the future: jose has
   * checked `exp` and `nbf` are numbers in the window; `iat` is checked here, when present.
   */
  private lifetimeFailure(payload: JWTPayload): AuthnFailure | null {
    const now = (this.now === null ? Date.now() : this.now()) / 1000;
    const { exp, iat } = payload;
    const bound = `authn.jwt.maxTokenAgeSeconds is ${this.maxAgeSeconds}`;
    // exp is required, so a number here; 1e20 would be a token valid for ever once leaked.
    if (typeof exp === 'number' && exp - now > this.maxAgeSeconds + this.skewSeconds) {
      return fail('MALFORMED_CREDENTIAL', `token expires at ${isoOf(exp)}, more than ${this.maxAgeSeconds} s from now (${bound}); ask the issuer for shorter-lived tokens`);
    }
    if (iat === undefined) return null;
    if (typeof iat !== 'number' || !Number.isFinite(iat)) return fail('MALFORMED_CREDENTIAL', 'token claim iat is not a number');
    if (iat - now > this.skewSeconds) return fail('NOT_YET_VALID', `token issued at ${isoOf(iat)}, in the future (beyond the clock skew of ${this.skewSeconds} s)`);
    if (now - iat > this.maxAgeSeconds + this.skewSeconds) return fail('EXPIRED', `token issued at ${isoOf(iat)}, more than ${this.maxAgeSeconds} s ago (${bound})`);
    return null;
  }

  /** Verifies one compact JWT (without the `Bearer ` prefix). Never rejects. */
  async verify(token: string): Promise<AuthnResult> {
    if (token.length > MAX_TOKEN_LENGTH) return fail('MALFORMED_CREDENTIAL', `token is longer than ${MAX_TOKEN_LENGTH} characters`);
    let payload: JWTPayload;
    const options = this.now === null ? this.options : { ...this.options, currentDate: new Date(this.now()) };
    const key = this.keys.key;
    try {
      ({ payload } = typeof key === 'function' ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options));
    } catch (error) {
      const failure = jwtFailureOf(error, token, this.config.algorithms);
      if (failure.reason === 'UNAVAILABLE') this.onError(error);
      return withSubject(failure, unverifiedSubject(token));
    }
    const lifetime = this.lifetimeFailure(payload);
    if (lifetime !== null) return withSubject(lifetime, subjectOf(payload));
    const mapped = principalFromClaims(payload, this.config.claims);
    if (!mapped.ok) return withSubject(fail('MALFORMED_CREDENTIAL', mapped.message), subjectOf(payload));
    return { ok: true, principal: mapped.principal, method: 'jwt', credentialId: typeof payload.jti === 'string' ? payload.jti : null };
  }
}
