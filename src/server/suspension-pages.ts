// ListSuspensions, a page at a time: where a page starts, as an opaque token.

import { createHash } from 'node:crypto';
import { RequestFieldError, bySuspensionOrder } from '../decide/index.js';
import type { SuspensionState } from '../types.js';
import type { SuspensionPage } from './grpc/handlers.js';

/** Suspensions per page when the request names no page_size. */
export const DEFAULT_SUSPENSION_PAGE = 100;
/** The largest page: a larger page_size is treated as this (AIP-158), as ListDecisions does. */
export const MAX_SUSPENSION_PAGE = 1000;

const TOKEN_VERSION = 's1';

/**
 * The page of `suspensions` (in bySuspensionOrder) that `pageToken` starts. A page
 * starts after the last suspension of the one before (its end and principal id), not
 * at a count, so a suspension that ends or is lifted between pages moves no other
 * from one page to the next: each in force throughout is listed once.
 * @throws RequestFieldError (page_size, page_token) for a negative size or a token this server did not issue
 */
export function suspensionPage(suspensions: readonly SuspensionState[], pageSize: number, pageToken: string): SuspensionPage {
  if (!Number.isInteger(pageSize) || pageSize < 0) throw RequestFieldError.invalid('page_size', `must be 0 (for ${DEFAULT_SUSPENSION_PAGE}) or more, not ${pageSize}`);
  const size = pageSize === 0 ? DEFAULT_SUSPENSION_PAGE : Math.min(pageSize, MAX_SUSPENSION_PAGE);
  let start = 0;
  if (pageToken !== '') {
    const after = openToken(pageToken);
    // The first suspension ordered after the token's: a binary search over the sorted list.
    let low = 0;
    let high = suspensions.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (bySuspensionOrder(suspensions[mid]!, after) <= 0) low = mid + 1;
      else high = mid;
    }
    start = low;
  }
  const page = suspensions.slice(start, start + size);
  const last = page[page.length - 1];
  return { suspensions: page, nextPageToken: last !== undefined && start + size < suspensions.length ? issueToken(last) : '' };
}

/** Not secret (it names a principal and a time, as the page does), only opaque; the check makes an altered or cut token a clear refusal. */
function issueToken(last: SuspensionState): string {
  const payload = `${TOKEN_VERSION}.${last.until}.${Buffer.from(last.principalId, 'utf8').toString('base64url')}`;
  return Buffer.from(`${payload}.${check(payload)}`, 'utf8').toString('base64url');
}

function openToken(token: string): SuspensionState {
  const bad = (): RequestFieldError =>
    RequestFieldError.invalid('page_token', 'is not a token this server gave; pass the next_page_token of the previous page as it was, or none for the first page');
  // No length cap of its own: the token names a principal id, which may be as long as a check (or SuspendPrincipal)
  // carried, and a token this server gave must page on. Its size is bounded by the request's (maxMessageBytes),
  // and every step below is linear in it.
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw bad();
  const text = Buffer.from(token, 'base64url').toString('utf8');
  const match = /^(s1\.(\d{1,16})\.([A-Za-z0-9_-]*))\.([A-Za-z0-9_-]{16})$/.exec(text);
  if (match === null || match[4] !== check(match[1]!)) throw bad();
  const until = Number(match[2]);
  if (!Number.isSafeInteger(until)) throw bad();
  return { principalId: Buffer.from(match[3]!, 'base64url').toString('utf8'), until, since: 0, alertId: '', alertType: 'manual', note: '' };
}

const check = (payload: string): string => createHash('sha256').update(payload).digest('base64url').slice(0, 16);
