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

/**
 * Most characters of row values (a number counts 8) that one client hands the writer
 * at once, beside MAX_ROWS_AT_WRITER: a row may be a thousand times the size of
 * another (a check carrying a megabyte of context), and the writer's time goes by
 * bytes, so a cap on rows alone let one caller's 100 large checks put 100 MB in front
 * of everyone's next commit. A row larger than this goes alone once the writer has
 * nothing else.
 */
export const MAX_CHARACTERS_AT_WRITER = 1024 * 1024;

/** One caller's rows: `values` (ROW_WIDTH per row), `waiters` and `characters` (one per row), the first `taken` of them sent already. */
interface CallerRows {
  values: RowValue[];
  waiters: Waiter[];
  characters: number[];
  taken: number;
  /** Its next row was passed over for want of room: it is not passed over again (see take). */
  passedOver: boolean;
}

/** What a message may still hold of row values, as MAX_CHARACTERS_AT_WRITER counts them. */
export interface CharacterRoom {
  readonly characters: number;
  /** The message's first row goes even when it is larger than the room (the writer has nothing else). */
  readonly firstRowAnyway: boolean;
}

const NO_CHARACTER_LIMIT: CharacterRoom = { characters: Infinity, firstRowAnyway: true };

/** Rows taken for one message: their values, and the waiters its answer settles, in the same order; `characters` their size. */
export interface TakenRows {
  readonly values: RowValue[];
  readonly waiters: Waiter[];
  readonly characters: number;
}

/**
 * Rows waiting for the writer, by caller. `take` fills a message in turns: every
 * caller with rows waiting gets an equal share of the message's room in rows (at
 * least one row), callers with fewer rows leave their room to the others, and a
 * caller left with rows goes to the back of the line for the next message. So a
 * caller that queued 20,000 rows (a hundred CheckBatch calls) sends them over many
 * messages, and a check from anyone else goes in the next one. The message's room
 * in characters is shared the same way: a caller whose next row does not fit is
 * passed over (keeping its place in the line) while smaller rows from others still go.
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
    const rows = known ?? { values: [], waiters: [], characters: [], taken: 0, passedOver: false };
    const from = rows.values.length;
    encode(rows.values, item);
    if (known === undefined) this.byCaller.set(caller, rows);
    rows.waiters.push(waiter);
    rows.characters.push(charactersOf(rows.values, from));
    this.waiting++;
  }

  /** Up to `maxRows` rows within `room`, shared out between the callers as the class says. */
  take(maxRows: number, room: CharacterRoom = NO_CHARACTER_LIMIT): TakenRows {
    const values: RowValue[] = [];
    const waiters: Waiter[] = [];
    let rowRoom = Math.min(maxRows, this.waiting);
    let characters = 0;
    // A caller passed over before heads the line (those passed over keep their place, the
    // ones served go to the back): while its row still does not fit, nothing else goes,
    // so the writer empties and it goes (alone, if it must) instead of waiting for as
    // long as others keep the writer busy.
    const head = this.byCaller.values().next().value;
    if (head !== undefined && head.passedOver && !room.firstRowAnyway && (head.characters[head.taken] as number) > room.characters) {
      return { values, waiters, characters };
    }
    /** Callers whose next row did not fit: they keep their place for the next message. */
    const passedOver = new Set<string>();
    while (rowRoom > 0 && passedOver.size < this.byCaller.size) {
      const share = Math.max(1, Math.floor(rowRoom / (this.byCaller.size - passedOver.size)));
      // A copy of the line: callers are moved to its back while it is walked.
      for (const [caller, rows] of [...this.byCaller]) {
        if (passedOver.has(caller)) continue;
        const from = rows.taken;
        const most = Math.min(share, rows.waiters.length - from, rowRoom);
        let count = 0;
        while (count < most) {
          const size = rows.characters[from + count] as number;
          const anyway = room.firstRowAnyway && waiters.length === 0 && count === 0;
          if (characters + size > room.characters && !anyway) break;
          characters += size;
          count++;
        }
        if (count === 0) {
          passedOver.add(caller);
          rows.passedOver = true;
          continue;
        }
        rows.passedOver = false;
        for (let i = from * ROW_WIDTH, end = (from + count) * ROW_WIDTH; i < end; i++) values.push(rows.values[i] as RowValue);
        for (let i = from; i < from + count; i++) waiters.push(rows.waiters[i] as Waiter);
        rows.taken += count;
        rowRoom -= count;
        this.byCaller.delete(caller);
        const kept = rows.taken < rows.waiters.length ? compacted(rows) : null;
        if (kept !== null) this.byCaller.set(caller, kept);
        if (kept !== rows) letGo(rows);
        // Its next row did not fit: nothing more of it in this message.
        if (count < most) passedOver.add(caller);
        if (rowRoom === 0) break;
      }
    }
    this.waiting -= waiters.length;
    return { values, waiters, characters };
  }

  /** Every row queued, in one piece (a flush, a close). */
  takeAll(): TakenRows {
    return this.take(this.waiting);
  }
}

/**
 * Empties rows that have left the Map. A caller with one row at a time (a forward-auth
 * connection, a check each) is set and deleted once per row, so the Map keeps replacing
 * its hash table, and V8 keeps a replaced table with every entry it held until the next
 * full collection: rows still holding their values and waiters kept each decision and
 * its request alive into the old generation (README, "What each check leaves to the
 * garbage collector").
 */
function letGo(rows: CallerRows): void {
  // Truncated, not replaced: the message took copies of what it sends, and a new array per release is one more allocation per commit.
  rows.values.length = 0;
  rows.waiters.length = 0;
  rows.characters.length = 0;
  rows.taken = 0;
}

/** The size of the row whose values start at `from`, as MAX_CHARACTERS_AT_WRITER counts it. */
function charactersOf(values: readonly RowValue[], from: number): number {
  let characters = 0;
  for (let i = from; i < values.length; i++) {
    const value = values[i];
    characters += typeof value === 'string' ? value.length : 8;
  }
  return characters;
}

/** Drops the rows already taken once they are at least half of what is kept, so a long queue is not copied per message. */
function compacted(rows: CallerRows): CallerRows {
  if (rows.taken * 2 < rows.waiters.length) return rows;
  return { values: rows.values.slice(rows.taken * ROW_WIDTH), waiters: rows.waiters.slice(rows.taken), characters: rows.characters.slice(rows.taken), taken: 0, passedOver: rows.passedOver };
}
