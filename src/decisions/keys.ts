import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { dirname, join } from 'node:path';
import { VerdictError, messageOf } from '../errors.js';

/**
 * Key material for the audit trail: the Ed25519 pair that signs checkpoints and
 * the HMAC key for sensitive attributes. Both are generated on first use into
 * the data directory (next to the decision log) with owner-only permissions, or
 * read from files the operator names.
 *
 * File formats: the private key is PKCS#8 PEM, the public key SPKI PEM (both
 * what `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write);
 * the HMAC key is 64 or more hex digits (32+ bytes), or any file of 32+ bytes.
 */

/** Default file names, in the directory of the decision log. */
export const SIGNING_KEY_FILE = 'audit-signing-key.pem';
export const PUBLIC_KEY_FILE = 'audit-signing-key.pub.pem';
export const HMAC_KEY_FILE = 'audit-hmac.key';

export interface KeyPaths {
  readonly signingKey: string;
  readonly publicKey: string;
  readonly hmacKey: string;
}

/** Where the keys of the log at `dbPath` live unless configured otherwise. */
export function defaultKeyPaths(dbPath: string): KeyPaths {
  const dir = dirname(dbPath);
  return { signingKey: join(dir, SIGNING_KEY_FILE), publicKey: join(dir, PUBLIC_KEY_FILE), hmacKey: join(dir, HMAC_KEY_FILE) };
}

/** Signs checkpoint messages. The log only ever needs this much of a key. */
export interface CheckpointSigner {
  /** Names the public key that verifies the signatures (see keyIdOf). */
  readonly keyId: string;
  sign(message: Buffer): Buffer;
}

export interface LoadedSigningKey {
  readonly signer: CheckpointSigner;
  readonly publicKey: KeyObject;
  readonly keyId: string;
  /** Things an operator should know (a generated key, loose permissions). */
  readonly notes: readonly string[];
}

/**
 * `ed25519:` and the first 16 hex digits of SHA-256 over the raw 32-byte public
 * key: short enough to read aloud, long enough that two keys never share one
 * by accident (it names a key; it is not what makes a signature valid).
 */
export function keyIdOf(publicKey: KeyObject): string {
  return `ed25519:${createHash('sha256').update(rawPublicKey(publicKey)).digest('hex').slice(0, 16)}`;
}

/** The 32 raw bytes of an Ed25519 public key (the tail of its SPKI encoding). */
export function rawPublicKey(publicKey: KeyObject): Buffer {
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - 32);
}

export function publicKeyPem(publicKey: KeyObject): string {
  return publicKey.export({ format: 'pem', type: 'spki' }).toString();
}

/**
 * Read the signing key at `paths.signingKey`, generating a pair there (and the
 * public half at `paths.publicKey`) when neither file exists. When the public
 * key file exists it must match the private key: a mismatch means checkpoints
 * would be verified against the wrong key, which is worth refusing to start for.
 * @throws VerdictError CONFIG_INVALID
 */
export function loadOrCreateSigningKey(paths: { readonly signingKey: string; readonly publicKey: string }): LoadedSigningKey {
  const notes: string[] = [];
  let privateKey: KeyObject;
  if (!fs.existsSync(paths.signingKey)) {
    if (fs.existsSync(paths.publicKey)) {
      throw new VerdictError(
        'CONFIG_INVALID',
        `the public key ${paths.publicKey} exists but its signing key ${paths.signingKey} does not; restore the signing key or move the public key aside (a new pair would not match checkpoints already exported)`,
      );
    }
    const pair = generateKeyPairSync('ed25519');
    const pem = pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const written = writeSecretFile(paths.signingKey, pem);
    if (written) {
      notes.push(`generated an Ed25519 checkpoint signing key at ${paths.signingKey} (mode 0600); keep a copy of ${paths.publicKey} somewhere else`);
    }
    // Another process may have won the race to create it: read whatever is there.
    privateKey = written ? pair.privateKey : readPrivateKey(paths.signingKey);
  } else {
    privateKey = readPrivateKey(paths.signingKey);
    const loose = looseMode(paths.signingKey);
    if (loose !== null) notes.push(`the signing key ${paths.signingKey} is readable by others (mode ${loose}); chmod 600 it`);
  }
  const publicKey = createPublicKey(privateKey);
  const keyId = keyIdOf(publicKey);
  if (fs.existsSync(paths.publicKey)) {
    const stored = readPublicKey(paths.publicKey);
    if (keyIdOf(stored) !== keyId) {
      throw new VerdictError(
        'CONFIG_INVALID',
        `the public key ${paths.publicKey} (${keyIdOf(stored)}) does not belong to the signing key ${paths.signingKey} (${keyId}); point publicKey at the matching file`,
      );
    }
  } else {
    writePublicFile(paths.publicKey, publicKeyPem(publicKey));
  }
  return {
    signer: { keyId, sign: (message) => sign(null, message, privateKey) },
    publicKey,
    keyId,
    notes,
  };
}

/**
 * Read an Ed25519 private key (PKCS#8 PEM).
 * @throws VerdictError CONFIG_INVALID naming the file and the problem
 */
export function readPrivateKey(path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(fs.readFileSync(path));
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `cannot read the signing key ${path}: ${describeKeyError(error)}`, { cause: error });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new VerdictError('CONFIG_INVALID', `the signing key ${path} is a ${key.asymmetricKeyType ?? 'unknown'} key; checkpoints need an Ed25519 key (openssl genpkey -algorithm ed25519)`);
  }
  return key;
}

/**
 * Read an Ed25519 public key: SPKI PEM, or a private key PEM (its public half).
 * @throws VerdictError CONFIG_INVALID naming the file and the problem
 */
export function readPublicKey(path: string): KeyObject {
  let text: Buffer;
  try {
    text = fs.readFileSync(path);
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `cannot read the public key ${path}: ${describeKeyError(error)}`, { cause: error });
  }
  return parsePublicKey(text, path);
}

/** Parse an Ed25519 public key from PEM text; `origin` names it in errors. */
export function parsePublicKey(pem: string | Buffer, origin: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `${origin} does not hold a PEM public key: ${describeKeyError(error)}`, { cause: error });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new VerdictError('CONFIG_INVALID', `${origin} holds a ${key.asymmetricKeyType ?? 'unknown'} key; checkpoints are signed with Ed25519`);
  }
  return key;
}

/**
 * The HMAC key at `path`, generated there (32 random bytes as hex, mode 0600)
 * when the file does not exist and `create` is set.
 * @throws VerdictError CONFIG_INVALID
 */
export function loadHmacKey(path: string, create: boolean): { key: Buffer; notes: string[] } {
  const notes: string[] = [];
  if (!fs.existsSync(path)) {
    if (!create) throw new VerdictError('CONFIG_INVALID', `no HMAC key at ${path}`);
    if (writeSecretFile(path, `${randomBytes(32).toString('hex')}\n`)) {
      notes.push(`generated the HMAC key for sensitive attributes at ${path} (mode 0600); without it, hashed attributes cannot be searched`);
    }
  } else {
    const loose = looseMode(path);
    if (loose !== null) notes.push(`the HMAC key ${path} is readable by others (mode ${loose}); chmod 600 it`);
  }
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(path);
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `cannot read the HMAC key ${path}: ${describeKeyError(error)}`, { cause: error });
  }
  const text = bytes.toString('latin1').trim();
  const key = /^[0-9a-fA-F]{64,}$/.test(text) && text.length % 2 === 0 ? Buffer.from(text, 'hex') : bytes;
  if (key.length < 32) {
    throw new VerdictError('CONFIG_INVALID', `the HMAC key ${path} is ${key.length} bytes; it needs at least 32 (e.g. openssl rand -hex 32 > ${path})`);
  }
  return { key, notes };
}

/**
 * Create `path` with `content` and mode 0600, atomically and only if it does not
 * exist yet: written to a temporary file, fsynced, then hard-linked into place
 * (link fails if the name is taken, unlike rename). Returns false when another
 * process created it first.
 */
function writeSecretFile(path: string, content: string): boolean {
  try {
    fs.mkdirSync(dirname(path), { recursive: true });
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `cannot create the directory for ${path}: ${describeKeyError(error)}`, { cause: error });
  }
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fd = fs.openSync(tmp, 'wx', 0o600);
    try {
      // The umask may have narrowed the mode, never widened it; make it exact anyway.
      fs.fchmodSync(fd, 0o600);
      fs.writeSync(fd, content);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
    return true;
  } catch (error) {
    throw new VerdictError('CONFIG_INVALID', `cannot write ${path}: ${describeKeyError(error)}`, { cause: error });
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function writePublicFile(path: string, content: string): void {
  try {
    fs.writeFileSync(path, content, { mode: 0o644, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw new VerdictError('CONFIG_INVALID', `cannot write the public key ${path}: ${describeKeyError(error)}`, { cause: error });
  }
}

/** The octal mode when group or others may read the file, else null. */
function looseMode(path: string): string | null {
  try {
    const mode = fs.statSync(path).mode & 0o777;
    return (mode & 0o077) === 0 ? null : `0${mode.toString(8)}`;
  } catch {
    return null;
  }
}

function describeKeyError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  if (code === 'ERR_OSSL_UNSUPPORTED' || code?.startsWith('ERR_OSSL')) return 'not a PEM key verdict can read';
  return messageOf(error).split('\n')[0] ?? 'unreadable';
}
