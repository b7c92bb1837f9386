import { describe, expect, it } from 'vitest';
import type { RowValue } from '../../src/decisions/columns.js';
import type { Waiter } from '../../src/decisions/events.js';
import { FairRows } from '../../src/decisions/fair-rows.js';
import { ROW_WIDTH } from '../../src/decisions/row.js';

/**
 * A row whose every value names it, and a waiter that does too, so what was taken can be read back;
 * each value padded with dots to `width` characters (a row of ROW_WIDTH × width).
 */
function queue(rows: FairRows, caller: string, count: number, width = 0): void {
  for (let i = 0; i < count; i++) {
    const name = `${caller}${i}`.padEnd(width, '.');
    const waiter = { resolve: () => undefined, reject: () => undefined, name } as Waiter & { name: string };
    rows.push(caller, waiter, name, (out, item) => {
      for (let k = 0; k < ROW_WIDTH; k++) out.push(item);
    });
  }
}

function names(taken: { values: RowValue[]; waiters: Waiter[] }): string[] {
  const byWaiter = taken.waiters.map((w) => (w as Waiter & { name: string }).name);
  // Values and waiters stay in step: row i's values all name waiter i.
  const byValues = Array.from({ length: taken.waiters.length }, (_, i) => taken.values.slice(i * ROW_WIDTH, (i + 1) * ROW_WIDTH));
  expect(taken.values).toHaveLength(taken.waiters.length * ROW_WIDTH);
  byValues.forEach((values, i) => expect(new Set(values)).toEqual(new Set([byWaiter[i]])));
  return byWaiter.map((name) => name.replace(/\.+$/, ''));
}

describe('rows waiting for the writer, by caller', () => {
  it('give a caller with one row a place in the next message however many another has queued', () => {
    const rows = new FairRows();
    queue(rows, 'a', 1000);
    queue(rows, 'b', 1);
    const first = names(rows.take(8));
    expect(first).toContain('b0');
    expect(first.filter((n) => n.startsWith('a'))).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6']);
    expect(rows.size).toBe(993);
  });

  it('share a message equally between callers that fill it, and start the next with who was left out', () => {
    const rows = new FairRows();
    queue(rows, 'a', 10);
    queue(rows, 'b', 10);
    queue(rows, 'c', 10);
    expect(names(rows.take(6))).toEqual(['a0', 'a1', 'b0', 'b1', 'c0', 'c1']);
    // Two rows of room for three callers: one each for the first two in line, and c first next time.
    expect(names(rows.take(2))).toEqual(['a2', 'b2']);
    expect(names(rows.take(3))).toEqual(['c2', 'a3', 'b3']);
  });

  it('keep each caller\'s rows in the order they came, across many messages and the dropping of rows already sent', () => {
    const rows = new FairRows();
    queue(rows, 'a', 500);
    queue(rows, 'b', 7);
    const taken: string[] = [];
    while (rows.size > 0) taken.push(...names(rows.take(13)));
    expect(taken).toHaveLength(507);
    expect(taken.filter((n) => n.startsWith('a'))).toEqual(Array.from({ length: 500 }, (_, i) => `a${i}`));
    expect(taken.filter((n) => n.startsWith('b'))).toEqual(Array.from({ length: 7 }, (_, i) => `b${i}`));
  });

  it('hand over everything at once for a flush', () => {
    const rows = new FairRows();
    queue(rows, 'a', 300);
    queue(rows, 'b', 2);
    expect(names(rows.takeAll())).toHaveLength(302);
    expect(rows.size).toBe(0);
    expect(names(rows.take(10))).toEqual([]);
  });

  it('share a message\'s room in characters: a caller whose next row does not fit is passed over, smaller rows from others still go', () => {
    const rows = new FairRows();
    const wide = 1000; // a row of ROW_WIDTH × 1000 characters
    queue(rows, 'big', 5, wide);
    queue(rows, 'small', 3);
    const room = { characters: 2.5 * ROW_WIDTH * wide, firstRowAnyway: true };
    const first = rows.take(256, room);
    // Two large rows fit, the third does not; every small row does.
    expect(names(first)).toEqual(['big0', 'big1', 'small0', 'small1', 'small2']);
    expect(first.characters).toBe(2 * ROW_WIDTH * wide + 3 * ROW_WIDTH * 'small0'.length);
    expect(names(rows.take(256, room))).toEqual(['big2', 'big3']);
  });

  it('let a row larger than the whole room go alone when the writer has nothing else, and wait otherwise', () => {
    const rows = new FairRows();
    queue(rows, 'big', 2, 1000);
    const small = { characters: 10, firstRowAnyway: false };
    expect(names(rows.take(256, small))).toEqual([]);
    expect(rows.size).toBe(2);
    const alone = rows.take(256, { characters: 10, firstRowAnyway: true });
    expect(names(alone)).toEqual(['big0']);
    expect(alone.characters).toBe(ROW_WIDTH * 1000);
    expect(rows.size).toBe(1);
  });

  it('keep a caller passed over for want of room ahead of the callers served, for the next message', () => {
    const rows = new FairRows();
    queue(rows, 'a', 2, 1000);
    queue(rows, 'b', 2, 1000);
    queue(rows, 'c', 1);
    const room = { characters: 1.5 * ROW_WIDTH * 1000, firstRowAnyway: true };
    // a's first row takes most of the room, b's does not fit, c's does.
    expect(names(rows.take(256, room))).toEqual(['a0', 'c0']);
    queue(rows, 'late', 1);
    // b was passed over, so it goes first now: ahead of a, which was served.
    expect(names(rows.take(256, room))).toEqual(['b0', 'late0']);
    expect(names(rows.take(256, room))).toEqual(['a1']);
    expect(names(rows.take(256, room))).toEqual(['b1']);
  });

  it('do not pass a caller over twice while others keep the writer busy: nothing else goes until its row fits', () => {
    const rows = new FairRows();
    queue(rows, 'big', 1, 1000);
    queue(rows, 'flood', 2);
    // The writer holds other rows (firstRowAnyway false) and the big row does not fit the room left.
    const busy = { characters: 500 * ROW_WIDTH, firstRowAnyway: false };
    expect(names(rows.take(256, busy))).toEqual(['flood0', 'flood1']);
    queue(rows, 'flood', 2);
    // Passed over once: the line is held for it, so the writer empties...
    expect(names(rows.take(256, busy))).toEqual([]);
    // ...and then it goes first, alone if it must.
    expect(names(rows.take(256, { characters: 500 * ROW_WIDTH, firstRowAnyway: true }))[0]).toBe('big0');
  });

  it('keep nothing of a row that could not be encoded', () => {
    const rows = new FairRows();
    const waiter: Waiter = { resolve: () => undefined, reject: () => undefined };
    expect(() =>
      rows.push('a', waiter, null, () => {
        throw new Error('a cycle in the attributes');
      }),
    ).toThrow('a cycle');
    expect(rows.size).toBe(0);
    queue(rows, 'a', 1);
    expect(names(rows.take(5))).toEqual(['a0']);
  });
});
