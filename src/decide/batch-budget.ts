import type { Principal, RequestContext } from '../types.js';
import { RequestFieldError } from './request.js';

/**
 * How many times the message limit one batch may write to the decision log. Every
 * item of a batch is recorded with the principal and context it shares, so a
 * batch records about items × (their size): without a bound, one small message
 * naming a large principal a thousand times fills the disk and holds the writer.
 */
export const BATCH_RECORD_FACTOR = 16;

/**
 * The error refusing a batch whose shared principal and context, recorded once per
 * item, would exceed `budgetBytes`; null when it fits. The size is measured once per
 * batch, as the log's JSON would spell it, and never for single-item batches.
 */
export function batchRecordError(principal: Principal, context: RequestContext, items: number, budgetBytes: number): RequestFieldError | null {
  if (items <= 1) return null;
  const sharedBytes = jsonBytes(principal.roles) + jsonBytes(principal.attributes) + jsonBytes(context.attributes);
  const recorded = sharedBytes * items;
  if (recorded <= budgetBytes) return null;
  return new RequestFieldError(
    'items',
    `items: the principal and context (${sharedBytes} bytes) are recorded with each of the ${items} items, ${recorded} bytes in all, over the limit of ${budgetBytes} bytes per batch; send fewer items per batch or a smaller principal`,
  );
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}
