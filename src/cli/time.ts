import { VerdictError } from '../errors.js';

/** Times and durations as the CLI takes them, for every command that takes one. */

const UNIT_MS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^(\d+)([smhdw])$/;
const ISO = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

export function isDuration(text: string): boolean {
  return DURATION.test(text);
}

/** A positive duration (`90s`, `15m`, `24h`, `7d`, `2w`) in milliseconds. @throws VerdictError USAGE */
export function parseDuration(flag: string, text: string): number {
  const match = DURATION.exec(text);
  const ms = match ? Number(match[1]) * (UNIT_MS[match[2] ?? ''] ?? NaN) : NaN;
  if (!(ms > 0)) throw new VerdictError('USAGE', `${flag} must be a duration such as 30m, 24h, 90d or 2w, not ${JSON.stringify(text)}; see --help`);
  return ms;
}

/**
 * An ISO 8601 date or time as epoch milliseconds, or null when `text` is not one.
 * Without an offset the time is UTC, matching the times verdict prints.
 */
export function parseIsoTime(text: string): number | null {
  const iso = ISO.exec(text);
  if (!iso || !isCalendarDate(text.slice(0, 10))) return null;
  let normalised = text.replace(' ', 'T');
  if (text.length > 10 && iso[1] === undefined) normalised += 'Z';
  else if (iso[1] !== undefined && /^[+-]\d{4}$/.test(iso[1])) normalised = `${normalised.slice(0, -2)}:${normalised.slice(-2)}`;
  // Date.parse wants at most milliseconds.
  normalised = normalised.replace(/(\.\d{3})\d+/, '$1');
  const ms = Date.parse(normalised);
  return Number.isFinite(ms) ? ms : null;
}

/** ISO 8601, or a duration ago (`15m`, `2h`, `7d`), as epoch milliseconds. @throws VerdictError USAGE */
export function parseTime(flag: string, text: string, now: number): number {
  if (isDuration(text)) return now - parseDuration(flag, text);
  const ms = parseIsoTime(text);
  if (ms !== null) return ms;
  throw new VerdictError('USAGE', `${flag} must be an ISO 8601 time (2025-06-01T14:30:00Z) or a duration ago (15m, 2h, 7d), not "${text}"; see --help`);
}

// Date.parse rolls 2025-02-30 over into March; a typo should be an error instead.
function isCalendarDate(ymd: string): boolean {
  const [year, month, day] = ymd.split('-').map(Number) as [number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}
