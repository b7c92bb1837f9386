/**
 * The detectors' thresholds: the `alerts.detectors` block of the server
 * configuration and the settings of `verdict analyze`. Every member is
 * optional; what is left out takes its documented default (README, Alerts).
 */
import { z } from 'zod';

const count = (most: number) => z.number().int().min(1).max(most);

export const detectorsSchema = z.strictObject({
  /** The length of the sliding window every figure is counted over; alerts are raised once per window of this length aligned to the epoch (hours start on the hour). */
  windowSeconds: z.number().int().min(60).max(7 * 86_400).optional(),
  /** Subjects (principals, principal×model pairs, failing credentials) kept per detector map; the least recently active is evicted past it. */
  maxSubjects: count(10_000_000).optional(),
  volume: z.strictObject({ enabled: z.boolean().optional(), maxRequests: count(1e12).optional() }).optional(),
  probing: z
    .strictObject({
      enabled: z.boolean().optional(),
      maxDeniedPercent: z.number().min(0).max(99.99).optional(),
      minRequests: count(1e9).optional(),
    })
    .optional(),
  reconnaissance: z
    .strictObject({ enabled: z.boolean().optional(), maxResources: count(10_000).optional(), resourceType: z.string().min(1).max(256).optional() })
    .optional(),
  baseline: z
    .strictObject({
      enabled: z.boolean().optional(),
      factor: z.number().min(1.01).max(1e6).optional(),
      floor: count(1e12).optional(),
      alpha: z.number().gt(0).max(1).optional(),
      warmupWindows: z.number().int().min(0).max(1000).optional(),
    })
    .optional(),
  extraction: z
    .strictObject({
      enabled: z.boolean().optional(),
      maxCalls: count(1e12).optional(),
      action: z.string().min(1).max(256).optional(),
      resourceType: z.string().min(1).max(256).optional(),
    })
    .optional(),
  /**
   * `maxAlerts`: alerts per window about token subjects, and as many about sources, before one alert about the rest;
   * `maxTotal`: failed authentications in the sliding window from all callers together (detectors.ts).
   */
  authFailures: z.strictObject({ enabled: z.boolean().optional(), maxFailures: count(1e12).optional(), maxAlerts: count(1e6).optional(), maxTotal: count(1e12).optional() }).optional(),
});

export type DetectorSettings = z.infer<typeof detectorsSchema>;

/** Every threshold, resolved. */
export interface DetectorConfig {
  readonly windowMs: number;
  readonly maxSubjects: number;
  readonly volume: { readonly enabled: boolean; readonly maxRequests: number };
  readonly probing: { readonly enabled: boolean; readonly maxDeniedPercent: number; readonly minRequests: number };
  readonly reconnaissance: { readonly enabled: boolean; readonly maxResources: number; readonly resourceType: string };
  readonly baseline: { readonly enabled: boolean; readonly factor: number; readonly floor: number; readonly alpha: number; readonly warmupWindows: number };
  readonly extraction: { readonly enabled: boolean; readonly maxCalls: number; readonly action: string; readonly resourceType: string };
  readonly authFailures: { readonly enabled: boolean; readonly maxFailures: number; readonly maxAlerts: number; readonly maxTotal: number };
}

/** The defaults (README, Alerts). */
export const DEFAULT_DETECTORS: DetectorConfig = {
  windowMs: 3_600_000,
  maxSubjects: 100_000,
  volume: { enabled: true, maxRequests: 1000 },
  probing: { enabled: true, maxDeniedPercent: 50, minRequests: 20 },
  reconnaissance: { enabled: true, maxResources: 5, resourceType: 'model' },
  baseline: { enabled: true, factor: 10, floor: 20, alpha: 0.3, warmupWindows: 3 },
  extraction: { enabled: true, maxCalls: 500, action: 'predict', resourceType: 'model' },
  authFailures: { enabled: true, maxFailures: 20, maxAlerts: 10, maxTotal: 500 },
};

/** `settings` over the defaults. */
export function resolveDetectors(settings: DetectorSettings = {}): DetectorConfig {
  const d = DEFAULT_DETECTORS;
  return {
    windowMs: settings.windowSeconds === undefined ? d.windowMs : settings.windowSeconds * 1000,
    maxSubjects: settings.maxSubjects ?? d.maxSubjects,
    volume: { ...d.volume, ...defined(settings.volume) },
    probing: { ...d.probing, ...defined(settings.probing) },
    reconnaissance: { ...d.reconnaissance, ...defined(settings.reconnaissance) },
    baseline: { ...d.baseline, ...defined(settings.baseline) },
    extraction: { ...d.extraction, ...defined(settings.extraction) },
    authFailures: { ...d.authFailures, ...defined(settings.authFailures) },
  };
}

function defined<T extends object>(value: T | undefined): Partial<T> {
  if (value === undefined) return {};
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
