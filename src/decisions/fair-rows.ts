// The durable rows waiting to be sent to the writer, one queue per caller, taken in
// turns: one caller's flood of rows cannot stand between another caller's decision
// and its commit.

import type { RowValue } from './columns.js';
import type { Waiter } from './events.js';
import { ROW_WIDTH } from './row.js';

/**
 * Most rows waiting for their commit that one client hands the writer at once: a
 * new decision's row is committed after at most this many others from the same
 * process, however many are waiting here.
 */
export const MAX_ROWS_AT_WRITER = 256;

/** One caller's rows: `values` (ROW_WIDTH per row) and `waiters` (one per row), the first `taken` of them sent already. */
interface CallerRows {
  values: RowValue[];
  waiters: Waiter[];
  taken: number;
}

/** Rows taken for one message: their values, and the waiters its answer settles, in the same order. */
export interface TakenRows {
  readonly values: RowValue[];
  readonly waiters: Waiter[];
}

/**
 * Rows waiting for the writer, by caller. `take` fills a message in turns: every
 * caller with rows waiting gets an equal share of the message's room (at least one
 * row), callers with fewer rows leave their room to the others, and a caller left
 * with rows goes to the back of the line for the next message. So a caller that
 * queued 20,000 rows (a hundred CheckBatch calls) sends them over many messages,
 * and a check from anyone else goes in the next one.
 */
export class FairRows {
  private readonly byCaller = new Map<string, CallerRows>();
  private waiting = 0;

  /** Rows queued and not yet taken. */
  get size(): number {
    return this.waiting;
  }

  /**
   * Queues one row for `caller`: `encode` appends the values of `item` to the array it
   * is given (and leaves it as it was when it throws, which this passes on, keeping nothing).
   */
  push<T>(caller: string, waiter: Waiter, item: T, encode: (out: RowValue[], item: T) => void): void {
    const known = this.byCaller.get(caller);
    const rows = known ?? { values: [], waiters: [], taken: 0 };
    encode(rows.values, item);
    if (known === undefined) this.byCaller.set(caller, rows);
    rows.waiters.push(waiter);
    this.waiting++;
  }

  /** Up to `maxRows` rows, shared out between the callers as the class says. */
  take(maxRows: number): TakenRows {
    const values: RowValue[] = [];
    const waiters: Waiter[] = [];
    let room = Math.min(maxRows, this.waiting);
    while (room > 0) {
      const share = Math.max(1, Math.floor(room / this.byCaller.size));
      // A copy of the line: callers are moved to its back while it is walked.
      for (const [caller, rows] of [...this.byCaller]) {
        const count = Math.min(share, rows.waiters.length - rows.taken, room);
        const from = rows.taken;
        for (let i = from * ROW_WIDTH, end = (from + count) * ROW_WIDTH; i < end; i++) values.push(rows.values[i] as RowValue);
        for (let i = from; i < from + count; i++) waiters.push(rows.waiters[i] as Waiter);
        rows.taken += count;
        room -= count;
        this.byCaller.delete(caller);
        if (rows.taken < rows.waiters.length) {
          this.byCaller.set(caller, compacted(rows));
        }
        if (room === 0) break;
      }
    }
    this.waiting -= waiters.length;
    return { values, waiters };
  }

  /** Every row queued, in one piece (a flush, a close). */
  takeAll(): TakenRows {
    return this.take(this.waiting);
  }
}

/** Drops the rows already taken once they are at least half of what is kept, so a long queue is not copied per message. */
function compacted(rows: CallerRows): CallerRows {
  if (rows.taken * 2 < rows.waiters.length) return rows;
  return { values: rows.values.slice(rows.taken * ROW_WIDTH), waiters: rows.waiters.slice(rows.taken), taken: 0 };
}
