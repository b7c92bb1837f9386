import type { DecisionRequest } from '../types.js';
import { MAX_REFUSAL_MESSAGE } from './refusals.js';
import { RefusedRequest, RequestFieldError, type CheckInput, type CheckResult } from './request.js';

/**
 * How many times the message limit one batch may write to the decision log. Every
 * item of a batch is recorded with its principal, resource and context, which the
 * items of a batch may share, so a batch records about items × (their size): without
 * a bound, one small message naming a large principal (or resource) a thousand times
 * fills the disk and holds the writer.
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
 * The error refusing a batch whose principals, resources, actions and contexts (and a
 * refused item's message), recorded once per item, would exceed `budgetBytes`; null when they fit. `perItemBytes` is what the call
 * itself adds to every row (its caller and request id). Sizes are measured as the log's
 * JSON spells them, once per distinct object (items sharing a principal share its
 * measure), and the measuring stops as soon as the budget is passed, so the work
 * is bounded by the budget whatever the batch holds.
 */
export function batchRecordError(inputs: readonly CheckInput[], budgetBytes: number, field = 'items', perItemBytes = 0): RequestFieldError | null {
  const measured = measureBatchRecord(inputs, budgetBytes, field, perItemBytes);
  return typeof measured === 'number' ? null : measured;
}

/** What the batch's items would record, in bytes, as batchRecordError measures it; the error when that is over `budgetBytes`. */
export function measureBatchRecord(inputs: readonly CheckInput[], budgetBytes: number, field = 'items', perItemBytes = 0): RequestFieldError | number {
  if (inputs.length === 0) return 0;
  // One item records what one check would: the message limit has bounded it already.
  const budget = inputs.length === 1 ? Infinity : budgetBytes;
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
    // A resource shared by every item (an AuthZEN top-level resource with `{}` items) is
    // recorded with each as surely as a shared principal: 9,000 properties in 145 KB
    // of body wrote 142 MB of log when only principals and contexts were counted.
    const resource = request.resource;
    recorded += sizeOf(resource, () => jsonBytes(resource.type) + jsonBytes(resource.id) + jsonBytes(resource.attributes));
    recorded += sizeOf(request.context, () => jsonBytes(request.context.attributes)) + Buffer.byteLength(request.action) + perItemBytes;
    // A refused item records its refusal's message, which may quote what was sent.
    if (input instanceof RefusedRequest) recorded += Buffer.byteLength(input.refusal.message.slice(0, MAX_REFUSAL_MESSAGE));
    if (recorded > budget) {
      return new RequestFieldError(
        field,
        `${field}: the principals, resources and contexts of these ${inputs.length} items are recorded with each item, over ${budgetBytes} bytes in all (the limit per batch) by item ${i}; send fewer items per batch, or smaller principals, resources or contexts`,
      );
    }
  }
  return recorded;
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}

/** What the batches let in may hold, all callers together, when none is configured. */
export const DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT = 128 * 1024 * 1024;

/**
 * What one decision's row holds in memory from its decision until the writer has it,
 * beyond what batchRecordError measures (the record object, its encoded values, the
 * resource and ids): about 7 KB measured for a plain item. Charged per item when a
 * batch is let in, so a flood of plain items is bounded as a flood of large ones.
 */
export const ROW_IN_MEMORY_BYTES = 8 * 1024;

/** Given back when an admitted batch has been decided and recorded (or refused). */
export type ReleaseBatch = () => void;

interface WaitingBatch {
  readonly bytes: number;
  readonly cancelled: () => boolean;
  readonly admit: (release: ReleaseBatch | null) => void;
}

/**
 * What batches being decided may hold at once. A batch's rows, each carrying its
 * principal, context and request id, live in memory from its decision until the
 * writer has them; a caller sending a hundred large batches at once on one connection
 * held tens of thousands of such rows (most of a gigabyte). So a batch is admitted
 * against a budget of bytes, all callers together (its caller charges what it will
 * record, as batchRecordError measures it, and ROW_IN_MEMORY_BYTES an item), and one
 * caller group (decisions/caller-group.ts: an identity, or a host) may hold at most
 * half of it. A batch that does not fit waits, unread work rather than rows, until
 * batches before it finish; the groups waiting are served in turn, a group served going
 * to the back, so a caller with many batches queued does not keep another's first one
 * waiting behind them all, and room is kept for the first in line that needs more than
 * is free. A batch larger than a group's share is charged the share.
 */
export class BatchesInFlight {
  private held = 0;
  private readonly heldBy = new Map<string, number>();
  /** Waiting batches by group; a Map keeps the order groups began waiting in, for turns. */
  private readonly waiting = new Map<string, WaitingBatch[]>();
  /** How many of a group's waiters were still wanted when its line was last pruned. */
  private readonly livedAfterPrune = new Map<string, number>();
  private waitingCount = 0;
  /** A waiting batch needs more room than is free: until it is let in, no batch goes ahead of it. */
  private blockedOnBudget = false;

  constructor(readonly maxBytes: number = DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT) {}

  /** Bytes charged to the batches admitted now. */
  get bytesInFlight(): number {
    return this.held;
  }

  /** Batches waiting to be admitted. */
  get batchesWaiting(): number {
    return this.waitingCount;
  }

  /**
   * Admits a batch of `bytes` for `group`: at once when it fits, else once it does.
   * Resolves with the release to call when the batch is done, or null when the caller
   * went away (`cancelled`) while it waited.
   */
  admit(group: string, bytes: number, cancelled: () => boolean = () => false): Promise<ReleaseBatch | null> | ReleaseBatch {
    const charge = Math.min(bytes, this.share);
    // Not ahead of a batch already waiting for room, nor of its own group's line.
    if (!this.blockedOnBudget && !this.waiting.has(group) && this.fits(group, charge)) return this.take(group, charge);
    if (this.held + charge > this.maxBytes) this.blockedOnBudget = true;
    return new Promise((resolve) => {
      let queue = this.waiting.get(group);
      if (queue === undefined) this.waiting.set(group, (queue = []));
      // Callers that gave up are otherwise dropped only when their turn comes, and a caller can
      // give up and ask again without end while its line does not move: look for them whenever
      // the line has doubled since last looked at (each waiter is looked at a bounded number of times).
      if (queue.length >= 2 * (this.livedAfterPrune.get(group) ?? 0) + 8) this.prune(group, queue);
      queue.push({ bytes: charge, cancelled, admit: resolve });
      this.waitingCount += 1;
    });
  }

  /** Drops the waiters of `group` whose callers are gone (answered null). */
  private prune(group: string, queue: WaitingBatch[]): void {
    let kept = 0;
    for (const waiter of queue) {
      if (waiter.cancelled()) {
        waiter.admit(null);
        this.waitingCount -= 1;
      } else {
        queue[kept++] = waiter;
      }
    }
    queue.length = kept;
    this.livedAfterPrune.set(group, kept);
  }

  private get share(): number {
    return Math.max(1, Math.floor(this.maxBytes / 2));
  }

  private fits(group: string, charge: number): boolean {
    return this.held + charge <= this.maxBytes && (this.heldBy.get(group) ?? 0) + charge <= this.share;
  }

  private take(group: string, charge: number): ReleaseBatch {
    this.held += charge;
    this.heldBy.set(group, (this.heldBy.get(group) ?? 0) + charge);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held -= charge;
      const left = (this.heldBy.get(group) ?? 0) - charge;
      if (left > 0) this.heldBy.set(group, left);
      else this.heldBy.delete(group);
      this.admitWaiting();
    };
  }

  /** Admits waiting batches that fit now, one group at a time in turn; the callers gone are dropped. */
  private admitWaiting(): void {
    this.blockedOnBudget = false;
    for (;;) {
      let served = false;
      for (const [group, queue] of this.waiting) {
        while (queue.length > 0 && queue[0]!.cancelled()) {
          queue.shift()!.admit(null);
          this.waitingCount -= 1;
        }
        const next = queue[0];
        if (next === undefined) {
          this.waiting.delete(group);
          this.livedAfterPrune.delete(group);
          continue;
        }
        if (this.held + next.bytes > this.maxBytes) {
          // Room is kept for the first in line that does not fit: nobody behind it goes ahead.
          this.blockedOnBudget = true;
          return;
        }
        // At its share: the next group in line goes first.
        if (!this.fits(group, next.bytes)) continue;
        queue.shift();
        this.waitingCount -= 1;
        next.admit(this.take(group, next.bytes));
        // Served: to the back of the line, behind the groups it was ahead of.
        this.waiting.delete(group);
        if (queue.length > 0) this.waiting.set(group, queue);
        else this.livedAfterPrune.delete(group);
        served = true;
        break;
      }
      if (!served) return;
    }
  }
}
