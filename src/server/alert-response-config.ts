// The responses to alerts in the server's configuration (`alerts.webhooks`,
// `alerts.suspend`): schemas, defaults, and the secrets read at start.

import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { AlertType } from '../analysis/alert.js';
import { VerdictError, messageOf } from '../errors.js';

export const ALERT_TYPES = ['volume', 'probing', 'reconnaissance', 'baseline', 'extraction', 'auth-failures'] as const satisfies readonly AlertType[];
// The compiler checks the list names every type of analysis/alert.ts.
type Missing = Exclude<AlertType, (typeof ALERT_TYPES)[number]>;
export type EveryAlertTypeListed = [Missing] extends [never] ? true : Missing;

const alertType = z.enum(ALERT_TYPES, { error: `expected one of ${ALERT_TYPES.join(', ')}` });

const UNIT_MS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** The longest a suspension may last, by configuration or by an operator. */
export const MAX_SUSPENSION_MS = 30 * 86_400_000;

/** `90s`, `15m`, `2h`, `1d` in milliseconds; null when `text` is not one. */
export function parseSuspensionDuration(text: string): number | null {
  const match = /^(\d{1,9})([smhd])$/.exec(text);
  if (!match) return null;
  const ms = Number(match[1]) * (UNIT_MS[match[2]!] ?? NaN);
  return ms > 0 && ms <= MAX_SUSPENSION_MS ? ms : null;
}

const webhookSchema = z
  .strictObject({
    /** Where alerts are POSTed: http:// or https://. */
    url: z
      .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
      .refine((url) => {
        const parsed = new URL(url);
        return parsed.username === '' && parsed.password === '';
      }, 'a webhook URL cannot carry a user name or password (they would be logged, and fetch refuses them); the receiver checks the signature made with `secret`'),
    /** The HMAC-SHA256 key the body is signed with: given here, in a file (`secretFile`), or in an environment variable (`secretEnv`) — exactly one. */
    secret: z.string().min(16, { error: 'a webhook secret needs at least 16 characters' }).optional(),
    secretFile: z.string().min(1).optional(),
    secretEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' }).optional(),
    /** Only alerts of these types; all types when absent. */
    types: z.array(alertType).min(1).optional(),
    /** How long one POST may take before it counts as failed and is retried. */
    timeoutMs: z.number().int().min(100).max(120_000).default(5_000),
    /** Alerts waiting for this webhook at most; past it new ones are dropped and counted. */
    maxQueue: z.number().int().min(1).max(100_000).default(1_000),
    /** Attempts per alert before it is given up (and counted). */
    maxAttempts: z.number().int().min(1).max(100).default(10),
    /** Backoff between attempts: doubling from `initialMs` up to `maxMs`, each wait drawn at random below it (full jitter). */
    backoff: z.strictObject({ initialMs: z.number().int().min(1).max(60_000).default(500), maxMs: z.number().int().min(1).max(3_600_000).default(60_000) }).default({ initialMs: 500, maxMs: 60_000 }),
  })
  .refine((w) => [w.secret, w.secretFile, w.secretEnv].filter((s) => s !== undefined).length === 1, { error: 'give the webhook exactly one of secret, secretFile, secretEnv' });

const suspendSchema = z.strictObject({
  /** Off by default: anyone who can send traffic in a principal's name could get it suspended (README, "Alerts: webhooks and suspension"). */
  enabled: z.boolean().default(false),
  /** How long an alert suspends its principal: `15m`, `2h`, `1d` (at most 30d). */
  for: z
    .string()
    .refine((t) => parseSuspensionDuration(t) !== null, { error: 'expected a duration such as 90s, 15m, 2h or 1d, at most 30d' })
    .default('15m'),
  /** The alert types that suspend; every type by default. Only alerts about a principal suspend one. */
  types: z.array(alertType).min(1).default([...ALERT_TYPES]),
  /**
   * Suspensions in force past which an alert suspends nobody (counted and logged):
   * an attack that raises alerts about ever new principals must not grow the table
   * every worker reads without end. An operator's SuspendPrincipal is never refused.
   */
  maxSuspended: z.number().int().min(1).max(1_000_000).default(10_000),
});

/**
 * The keys of the `alerts` block this file owns, to be spread into it:
 * `webhooks` and `suspend`.
 */
export const alertResponseShape = {
  /** Where alerts are POSTed, signed (server/webhooks.ts). */
  webhooks: z.array(webhookSchema).max(32).default([]),
  /** Whether an alert suspends its principal (server/suspension.ts). */
  suspend: suspendSchema.default({ enabled: false, for: '15m', types: [...ALERT_TYPES], maxSuspended: 10_000 }),
};

export type WebhookConfig = z.output<typeof webhookSchema>;
export type SuspendConfig = z.output<typeof suspendSchema>;

/**
 * A webhook's secret, from the config, its file or its environment variable.
 * @throws VerdictError CONFIG_INVALID naming the webhook and where the secret was to come from
 */
export function webhookSecret(webhook: WebhookConfig, index: number, env: NodeJS.ProcessEnv = process.env): string {
  const where = `alerts.webhooks.${index}`;
  let secret: string;
  if (webhook.secret !== undefined) secret = webhook.secret;
  else if (webhook.secretFile !== undefined) {
    try {
      secret = readFileSync(webhook.secretFile, 'utf8').trim();
    } catch (error) {
      throw new VerdictError('CONFIG_INVALID', `${where}.secretFile: cannot read ${webhook.secretFile}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`);
    }
  } else {
    secret = (env[webhook.secretEnv!] ?? '').trim();
    if (secret === '') throw new VerdictError('CONFIG_INVALID', `${where}.secretEnv: the environment variable ${webhook.secretEnv} is not set`);
  }
  if (secret.length < 16) throw new VerdictError('CONFIG_INVALID', `${where}: the secret has ${secret.length} characters; use at least 16 (e.g. openssl rand -hex 32)`);
  return secret;
}
