// Times as people write them to verdict — the CLI's flags and the console's query
// parameters — read one way: an ISO 8601 date or time (UTC when it names no offset,
// matching the times verdict prints), or a duration ago (`15m`, `24h`, `7d`).

const UNIT_MS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^(\d{1,15})([smhdw])$/;
const ISO = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/** A duration (`90s`, `15m`, `24h`, `7d`, `2w`) in milliseconds, or null when `text` is not one. */
export function durationMs(text: string): number | null {
  const match = DURATION.exec(text);
  return match ? Number(match[1]) * UNIT_MS[match[2]!]! : null;
}

/**
 * What an ISO 8601 date or time reads as: epoch milliseconds; `notADay` when it has
 * the shape but names a day the calendar does not have (`2026-02-31`, which
 * `Date.parse` would roll over into March, where a typo should be an error); null
 * when it is not one.
 */
export function readIsoTime(text: string): { readonly ms: number } | { readonly notADay: string } | null {
  const iso = ISO.exec(text);
  if (!iso) return null;
  const day = text.slice(0, 10);
  if (!isCalendarDate(day)) return { notADay: day };
  let normalised = text.replace(' ', 'T');
  if (text.length > 10 && iso[1] === undefined) normalised += 'Z';
  else if (iso[1] !== undefined && /^[+-]\d{4}$/.test(iso[1])) normalised = `${normalised.slice(0, -2)}:${normalised.slice(-2)}`;
  // Date.parse wants at most milliseconds.
  normalised = normalised.replace(/(\.\d{3})\d+/, '$1');
  const ms = Date.parse(normalised);
  return Number.isFinite(ms) ? { ms } : null;
}

function isCalendarDate(ymd: string): boolean {
  const [year, month, day] = ymd.split('-').map(Number) as [number, number, number];
  // setUTCFullYear, not Date.UTC, which reads years 0–99 as 1900–1999 (0000-02-29 is a leap day).
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** The latest time a Date can hold (year 275760), in epoch milliseconds. */
export const LAST_REPRESENTABLE_MS = 8.64e15;
