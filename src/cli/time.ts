import { VerdictError } from '../errors.js';
import { durationMs, readIsoTime } from '../time-text.js';

/** Times and durations as the CLI takes them, for every command that takes one (read as time-text.ts reads them). */

/** A positive duration (`90s`, `15m`, `24h`, `7d`, `2w`) in milliseconds. @throws VerdictError USAGE */
export function parseDuration(flag: string, text: string): number {
  const ms = durationMs(text) ?? NaN;
  if (!(ms > 0)) throw new VerdictError('USAGE', `${flag} must be a duration such as 30m, 24h, 90d or 2w, not ${JSON.stringify(text)}; see --help`);
  return ms;
}

export function isDuration(text: string): boolean {
  return durationMs(text) !== null;
}

/** An ISO 8601 date or time as epoch milliseconds, or null when `text` is not one (see readIsoTime). */
export function parseIsoTime(text: string): number | null {
  const read = readIsoTime(text);
  return read !== null && 'ms' in read ? read.ms : null;
}

/** ISO 8601, or a duration ago (`15m`, `2h`, `7d`), as epoch milliseconds. @throws VerdictError USAGE */
export function parseTime(flag: string, text: string, now: number): number {
  if (isDuration(text)) {
    const ago = parseDuration(flag, text);
    if (ago > now) throw new VerdictError('USAGE', `${flag} ${text} reaches back before 1970; leave ${flag} out to read from the first decision`);
    return now - ago;
  }
  const iso = readIsoTime(text);
  if (iso !== null && 'notADay' in iso) throw new VerdictError('USAGE', `${flag}: ${iso.notADay} is not a day of the calendar`);
  if (iso !== null) return iso.ms;
  throw new VerdictError('USAGE', `${flag} must be an ISO 8601 time (2025-06-01T14:30:00Z) or a duration ago (15m, 2h, 7d), not "${text}"; see --help`);
}
