import { VerdictError } from '../errors.js';
import { defaultKeyPaths, loadHmacKey, loadOrCreateSigningKey } from './keys.js';
import type { DecisionLogOptions } from './log.js';
import { SensitiveAttributes } from './sensitive.js';

/**
 * The audit settings of a server configuration, as the decision log needs
 * them: keys loaded (or generated into the data directory on first start),
 * sensitive attribute paths checked. Kept here rather than in the server so
 * that the server only wires, and the rules for keys live with the log.
 */
export interface AuditSettings {
  readonly db: string;
  /** BENCHMARKING ONLY when false: no hash chain, no checkpoints. */
  readonly auditChain: boolean;
  readonly checkpointEveryRows: number;
  readonly checkpointEverySeconds: number;
  /** Ed25519 private key (PKCS#8 PEM); null: `audit-signing-key.pem` next to the database. */
  readonly signingKey: string | null;
  /** Its public key (SPKI PEM); null: `audit-signing-key.pub.pem` next to the database. */
  readonly publicKey: string | null;
  readonly sensitiveAttributes: readonly string[];
  /** HMAC key file; null: `audit-hmac.key` next to the database. */
  readonly hmacKey: string | null;
}

export interface AuditSetup {
  readonly options: Pick<DecisionLogOptions, 'chain' | 'checkpoints' | 'sensitive'>;
  readonly keyId: string | null;
  readonly signingKeyPath: string | null;
  readonly publicKeyPath: string | null;
  /** One line each, for the server's log: generated keys, loose permissions, the chain being off. */
  readonly notes: readonly { readonly level: 'info' | 'warn'; readonly message: string }[];
}

/**
 * Load or create the keys the settings name.
 * @throws VerdictError CONFIG_INVALID naming the file or attribute path at fault
 */
export function loadAudit(settings: AuditSettings): AuditSetup {
  const defaults = defaultKeyPaths(settings.db);
  const notes: Array<{ level: 'info' | 'warn'; message: string }> = [];
  let sensitive: SensitiveAttributes | undefined;
  if (settings.sensitiveAttributes.length > 0) {
    const hmacPath = settings.hmacKey ?? defaults.hmacKey;
    // An explicitly configured key must exist: generating a new one would silently make old hashes unsearchable.
    const hmac = loadHmacKey(hmacPath, settings.hmacKey === null);
    notes.push(...hmac.notes.map((message) => ({ level: 'info' as const, message })));
    sensitive = new SensitiveAttributes(settings.sensitiveAttributes, hmac.key);
  }
  if (!settings.auditChain) {
    notes.push({ level: 'warn', message: 'auditChain is false: decisions are NOT hash-chained or signed and this log will never verify (for benchmarking only)' });
    return { options: { chain: false, sensitive }, keyId: null, signingKeyPath: null, publicKeyPath: null, notes };
  }
  const signingKeyPath = settings.signingKey ?? defaults.signingKey;
  const publicKeyPath = settings.publicKey ?? (settings.signingKey === null ? defaults.publicKey : `${settings.signingKey}.pub`);
  if (settings.signingKey !== null && settings.publicKey === null && publicKeyPath === settings.signingKey) {
    throw new VerdictError('CONFIG_INVALID', 'publicKey must be a different file from signingKey');
  }
  const key = loadOrCreateSigningKey({ signingKey: signingKeyPath, publicKey: publicKeyPath });
  notes.push(...key.notes.map((message) => ({ level: (message.includes('readable by others') ? 'warn' : 'info') as 'info' | 'warn', message })));
  return {
    options: {
      chain: true,
      sensitive,
      checkpoints: { signer: key.signer, everyRows: settings.checkpointEveryRows, everySeconds: settings.checkpointEverySeconds },
    },
    keyId: key.keyId,
    signingKeyPath,
    publicKeyPath,
    notes,
  };
}
