import type { DecisionRequest } from '../types.js';
import { RefusedRequest, RequestFieldError, type CheckInput, type CheckResult } from './request.js';

/**
 * How many times the message limit one batch may write to the decision log. Every
 * item of a batch is recorded with its principal and context, which the items of a
 * batch usually share, so a batch records about items × (their size): without a
 * bound, one small message naming a large principal a thousand times fills the disk
 * and holds the writer.
 */
export const BATCH_RECORD_FACTOR = 16;

/** The budget when none is configured: BATCH_RECORD_FACTOR times the default 1 MiB message limit. */
export const DEFAULT_MAX_BATCH_RECORDED_BYTES = BATCH_RECORD_FACTOR * 1024 * 1024;

/**
 * A batch refused whole by the pipeline (DecisionPipeline.checkBatch and checkUntil)
 * because what it would record is over the budget: no item was decided; the refusal
 * itself was recorded as one small invalid-request decision, `result`. Answer it as
 * bad input (INVALID_ARGUMENT, 400) naming `error`.
 */
export class BatchRefused extends RequestFieldError {
  constructor(
    readonly error: RequestFieldError,
    readonly result: CheckResult,
  ) {
    super(error.field, error.message);
    this.name = 'BatchRefused';
  }
}

/**
 * The error refusing a batch whose principals and contexts, recorded once per item,
 * would exceed `budgetBytes`; null when they fit. `perItemBytes` is what the call
 * itself adds to every row (its caller and request id). Sizes are measured as the log's
 * JSON spells them, once per distinct object (items sharing a principal share its
 * measure), and the measuring stops as soon as the budget is passed, so the work
 * is bounded by the budget whatever the batch holds.
 */
export function batchRecordError(inputs: readonly CheckInput[], budgetBytes: number, field = 'items', perItemBytes = 0): RequestFieldError | null {
  if (inputs.length <= 1) return null;
  const measured = new Map<object, number>();
  const sizeOf = (value: object, measure: () => number): number => {
    let bytes = measured.get(value);
    if (bytes === undefined) measured.set(value, (bytes = measure()));
    return bytes;
  };
  let recorded = 0;
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i]!;
    const request: DecisionRequest = input instanceof RefusedRequest ? input.request : input;
    const principal = request.principal;
    recorded += sizeOf(principal, () => jsonBytes(principal.roles) + jsonBytes(principal.attributes));
    recorded += sizeOf(request.context, () => jsonBytes(request.context.attributes)) + perItemBytes;
    if (recorded > budgetBytes) {
      return new RequestFieldError(
        field,
        `${field}: the principals and contexts of these ${inputs.length} items are recorded with each item, over ${budgetBytes} bytes in all (the limit per batch) by item ${i}; send fewer items per batch or smaller principals`,
      );
    }
  }
  return null;
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}
