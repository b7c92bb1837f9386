import { VerdictError } from '../errors.js';
import { defaultKeyPaths, loadHmacKey, loadOrCreateSigningKey } from './keys.js';
import { SensitiveAttributes } from './sensitive.js';
import type { WriterSettings } from './writer-thread.js';

/**
 * The audit settings of a server configuration, as the decision log needs
 * them: keys loaded (or generated into the data directory on first start),
 * sensitive attribute paths checked. Kept here rather than in the server so
 * that the server only wires, and the rules for keys live with the log.
 */
export interface AuditSettings {
  readonly db: string;
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
  /** How the writer signs checkpoints (WriterSettings.checkpoints). */
  readonly checkpoints: NonNullable<WriterSettings['checkpoints']>;
  /** Applied by the deciding thread before a row leaves it; null when none are configured. */
  readonly sensitive: SensitiveAttributes | null;
  readonly keyId: string;
  /** One line each, for the server's log: generated keys, loose permissions. */
  readonly notes: readonly { readonly level: 'info' | 'warn'; readonly message: string }[];
}

/**
 * Load or create the keys the settings name.
 * @throws VerdictError CONFIG_INVALID naming the file or attribute path at fault
 */
export function loadAudit(settings: AuditSettings): AuditSetup {
  const defaults = defaultKeyPaths(settings.db);
  const notes: Array<{ level: 'info' | 'warn'; message: string }> = [];
  let sensitive: SensitiveAttributes | null = null;
  if (settings.sensitiveAttributes.length > 0) {
    const hmacPath = settings.hmacKey ?? defaults.hmacKey;
    // An explicitly configured key must exist: generating a new one would silently make old hashes unsearchable.
    const hmac = loadHmacKey(hmacPath, settings.hmacKey === null);
    notes.push(...hmac.notes.map((message) => ({ level: 'info' as const, message })));
    sensitive = new SensitiveAttributes(settings.sensitiveAttributes, hmac.key);
  }
  const signingKey = settings.signingKey ?? defaults.signingKey;
  const publicKey = settings.publicKey ?? (settings.signingKey === null ? defaults.publicKey : `${settings.signingKey}.pub`);
  if (settings.signingKey !== null && settings.publicKey === null && publicKey === settings.signingKey) {
    throw new VerdictError('CONFIG_INVALID', 'publicKey must be a different file from signingKey');
  }
  const key = loadOrCreateSigningKey({ signingKey, publicKey });
  notes.push(...key.notes.map((message) => ({ level: (message.includes('readable by others') ? 'warn' : 'info') as 'info' | 'warn', message })));
  return {
    checkpoints: { signingKey, publicKey, everyRows: settings.checkpointEveryRows, everySeconds: settings.checkpointEverySeconds },
    sensitive,
    keyId: key.keyId,
    notes,
  };
}
