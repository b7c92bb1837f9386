import { describe, expect, it } from 'vitest';
import { InFlight } from '../../src/server/in-flight.js';

describe('InFlight', () => {
  it('takes each entry off once, whatever the order', () => {
    const list = new InFlight<string>();
    const a = list.add('a');
    const b = list.add('b');
    const c = list.add('c');
    expect(list.size).toBe(3);
    expect(list.values()).toEqual(['c', 'b', 'a']);
    expect(list.take(b)).toBe(true);
    expect(list.take(b)).toBe(false);
    expect(list.values()).toEqual(['c', 'a']);
    expect(list.take(c)).toBe(true);
    expect(list.values()).toEqual(['a']);
    expect(list.take(a)).toBe(true);
    expect(list.size).toBe(0);
    expect(list.values()).toEqual([]);
    // The list is usable again once empty.
    const d = list.add('d');
    expect(list.values()).toEqual(['d']);
    expect(list.take(d)).toBe(true);
  });

  it('takeAll hands back what is still in flight, and what it took cannot be taken again', () => {
    const list = new InFlight<number>();
    const entries = Array.from({ length: 10 }, (_, i) => list.add(i));
    for (const i of [0, 3, 9]) list.take(entries[i]!);
    expect(list.takeAll().sort((x, y) => x - y)).toEqual([1, 2, 4, 5, 6, 7, 8]);
    expect(list.size).toBe(0);
    expect(entries.map((entry) => list.take(entry))).toEqual(Array(10).fill(false));
    expect(list.takeAll()).toEqual([]);
  });

  it('keeps count through heavy churn, as a server answering out of order does', () => {
    const list = new InFlight<number>();
    const live: ReturnType<InFlight<number>['add']>[] = [];
    let added = 0;
    let taken = 0;
    for (let step = 0; step < 5000; step++) {
      if (live.length === 0 || step % 3 !== 0) {
        live.push(list.add(added++));
      } else {
        const index = (step * 7919) % live.length;
        expect(list.take(live[index]!)).toBe(true);
        live.splice(index, 1);
        taken += 1;
      }
    }
    expect(list.size).toBe(added - taken);
    expect(list.values().length).toBe(live.length);
  });
});
