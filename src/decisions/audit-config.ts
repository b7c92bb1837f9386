import { z } from 'zod';
import { VerdictError } from '../errors.js';

/**
 * The server configuration keys of the audit trail: their schema, defaults,
 * environment variables and flags. The server's config module spreads these in,
 * so the keys sit at the top level of the config file beside `db`.
 *
 * ```yaml
 * checkpointEveryRows: 10000        # sign the chain at least every N rows ...
 * checkpointEverySeconds: 60        # ... and at least every T seconds while rows are unsigned
 * signingKey: /etc/verdict/audit-signing-key.pem      # default: next to the db, created on first start
 * publicKey: /etc/verdict/audit-signing-key.pub.pem
 * sensitiveAttributes: [principal.attributes.email, context.attributes.ip]
 * hmacKey: /etc/verdict/audit-hmac.key                # default: next to the db, created on first start
 * ```
 */
export interface AuditConfig {
  readonly checkpointEveryRows: number;
  readonly checkpointEverySeconds: number;
  /** null: `audit-signing-key.pem` in the directory of the database. */
  readonly signingKey: string | null;
  /** null: `<signingKey>.pub` when signingKey is set, else `audit-signing-key.pub.pem` in the directory of the database. */
  readonly publicKey: string | null;
  /** Attribute paths stored as keyed HMAC-SHA256, never raw. */
  readonly sensitiveAttributes: readonly string[];
  /** null: `audit-hmac.key` in the directory of the database. */
  readonly hmacKey: string | null;
}

export const AUDIT_DEFAULTS: AuditConfig = {
  checkpointEveryRows: 10_000,
  checkpointEverySeconds: 60,
  signingKey: null,
  publicKey: null,
  sensitiveAttributes: [],
  hmacKey: null,
};

const attributePath = z
  .string()
  .regex(/^(principal|resource|context)\.attributes(\.[^".]+)+$/, {
    error: 'expected principal.attributes.NAME, resource.attributes.NAME or context.attributes.NAME (ids, roles and actions cannot be hashed: queries need them)',
  });

/** Zod fields, all optional, for the server's strict config schema. */
export const auditConfigShape = {
  checkpointEveryRows: z.number().int().min(1).max(100_000_000).optional(),
  checkpointEverySeconds: z.number().min(0.05).max(86_400).optional(),
  signingKey: z.string().min(1).nullable().optional(),
  publicKey: z.string().min(1).nullable().optional(),
  sensitiveAttributes: z.array(attributePath).optional(),
  hmacKey: z.string().min(1).nullable().optional(),
};

export const AUDIT_ENVIRONMENT_KEYS: Record<keyof AuditConfig, string> = {
  checkpointEveryRows: 'VERDICT_CHECKPOINT_EVERY_ROWS',
  checkpointEverySeconds: 'VERDICT_CHECKPOINT_EVERY_SECONDS',
  signingKey: 'VERDICT_SIGNING_KEY',
  publicKey: 'VERDICT_PUBLIC_KEY',
  sensitiveAttributes: 'VERDICT_SENSITIVE_ATTRIBUTES',
  hmacKey: 'VERDICT_HMAC_KEY',
};

/**
 * The audit keys from environment variables, typed for the schema (which then
 * reports anything malformed): numbers as numbers, and
 * `VERDICT_SENSITIVE_ATTRIBUTES` as a comma-separated list.
 */
export function auditFromEnvironment(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(AUDIT_ENVIRONMENT_KEYS)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    raw[key] = typed(key as keyof AuditConfig, value);
  }
  return raw;
}

const layerSchema = z.strictObject(auditConfigShape);
export type AuditLayer = z.infer<typeof layerSchema>;

/**
 * The audit keys from `verdict serve` flags (`--checkpoint-every-rows`, …), checked.
 * @throws VerdictError CONFIG_INVALID naming the flag's key and the problem
 */
export function auditFromFlags(values: {
  readonly checkpointEveryRows?: string | undefined;
  readonly checkpointEverySeconds?: string | undefined;
  readonly signingKey?: string | undefined;
  readonly publicKey?: string | undefined;
  readonly sensitiveAttributes?: string | undefined;
  readonly hmacKey?: string | undefined;
}): AuditLayer {
  const raw: Record<string, unknown> = {};
  for (const key of ['checkpointEveryRows', 'checkpointEverySeconds', 'signingKey', 'publicKey', 'sensitiveAttributes', 'hmacKey'] as const) {
    const value = values[key];
    if (value !== undefined) raw[key] = typed(key, value);
  }
  const result = layerSchema.safeParse(raw);
  if (!result.success) {
    throw new VerdictError('CONFIG_INVALID', result.error.issues.map((i) => `flags: ${i.path.map(String).join('.')}: ${i.message}`).join('; '));
  }
  return result.data;
}

function typed(key: keyof AuditConfig, value: string): unknown {
  switch (key) {
    case 'checkpointEveryRows':
    case 'checkpointEverySeconds':
      // Number('') is 0 and Number('12abc') NaN: both then fail the schema with the key named.
      return value.trim() === '' ? value : Number(value);
    case 'sensitiveAttributes':
      return value
        .split(',')
        .map((p) => p.trim())
        .filter((p) => p !== '');
    default:
      return value;
  }
}
