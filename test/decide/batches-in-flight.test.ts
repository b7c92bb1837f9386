import { describe, expect, it } from 'vitest';
import { BatchesInFlight, type ReleaseBatch } from '../../src/decide/batch-budget.js';

// Room for the rows of batches being decided: a budget of recorded bytes, half of it at
// most per caller group, the groups waiting served in turn.

const MiB = 1024 * 1024;

/** Resolves a pending admission, or says it is still waiting. */
async function settled<T>(promise: Promise<T> | T): Promise<T | 'waiting'> {
  return Promise.race([promise, new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 10))]);
}

describe('BatchesInFlight', () => {
  it('admits at once what fits, and makes the rest wait for room', async () => {
    const budget = new BatchesInFlight(8 * MiB);
    const first = budget.admit('a', 3 * MiB);
    expect(typeof first).toBe('function');
    expect(budget.bytesInFlight).toBe(3 * MiB);
    // Group a may hold half the budget: 3 + 3 MiB is over 4.
    const second = budget.admit('a', 3 * MiB);
    expect(await settled(second)).toBe('waiting');
    expect(budget.batchesWaiting).toBe(1);
    (first as ReleaseBatch)();
    const admitted = await settled(second);
    expect(typeof admitted).toBe('function');
    expect(budget.bytesInFlight).toBe(3 * MiB);
    expect(budget.batchesWaiting).toBe(0);
    (admitted as ReleaseBatch)();
    expect(budget.bytesInFlight).toBe(0);
  });

  it('lets another group in while one group has used its half', async () => {
    const budget = new BatchesInFlight(8 * MiB);
    const held = [budget.admit('flood', 2 * MiB), budget.admit('flood', 2 * MiB)];
    const queued = Array.from({ length: 5 }, () => budget.admit('flood', 2 * MiB));
    expect(await settled(queued[0]!)).toBe('waiting');
    // The flood's queue does not stand in another caller's way.
    expect(typeof budget.admit('other', 2 * MiB)).toBe('function');
    expect(budget.bytesInFlight).toBe(6 * MiB);
    for (const release of held) (release as ReleaseBatch)();
    expect(typeof (await settled(queued[0]!))).toBe('function');
  });

  it('serves the waiting groups in turn, not one group\'s whole queue first', async () => {
    const budget = new BatchesInFlight(8 * MiB);
    const x = budget.admit('x', 4 * MiB) as ReleaseBatch;
    budget.admit('y', 4 * MiB);
    const order: string[] = [];
    const wait = (group: string) => Promise.resolve(budget.admit(group, 1 * MiB)).then(() => order.push(group));
    // Three of a's batches wait, then one of b's; then there is room for all four.
    const waiting = [wait('a'), wait('a'), wait('a'), wait('b')];
    expect(budget.batchesWaiting).toBe(4);
    x();
    await Promise.all(waiting);
    expect(order).toEqual(['a', 'b', 'a', 'a']);
  });

  it('charges a batch larger than a group\'s half the half, so it is admitted once the group holds nothing', async () => {
    const budget = new BatchesInFlight(4 * MiB);
    const small = budget.admit('a', 1 * MiB) as ReleaseBatch;
    const large = budget.admit('a', 100 * MiB);
    expect(await settled(large)).toBe('waiting');
    small();
    const release = await settled(large);
    expect(typeof release).toBe('function');
    expect(budget.bytesInFlight).toBe(2 * MiB);
  });

  it('drops a waiting batch whose caller has gone, without admitting it', async () => {
    const budget = new BatchesInFlight(2 * MiB);
    const held = budget.admit('a', 1 * MiB) as ReleaseBatch;
    let gone = false;
    const waiting = budget.admit('a', 1 * MiB, () => gone);
    gone = true;
    held();
    expect(await settled(waiting)).toBeNull();
    expect(budget.bytesInFlight).toBe(0);
    expect(budget.batchesWaiting).toBe(0);
  });

  it('gives the room back once however often the release is called', () => {
    const budget = new BatchesInFlight(4 * MiB);
    const release = budget.admit('a', 1 * MiB) as ReleaseBatch;
    const other = budget.admit('b', 1 * MiB) as ReleaseBatch;
    release();
    release();
    expect(budget.bytesInFlight).toBe(1 * MiB);
    other();
  });
  it('does not keep callers that gave up queued while their line does not move', async () => {
    const budget = new BatchesInFlight(128 * MiB);
    const slow = budget.admit('a', 64 * MiB) as ReleaseBatch;
    const live = budget.admit('a', 16 * MiB);
    // A caller that asks and gives up, again and again, behind a line that does not move.
    const gone: Array<Promise<ReleaseBatch | null> | ReleaseBatch> = [];
    for (let i = 0; i < 100_000; i++) gone.push(budget.admit('a', 16 * MiB, () => true));
    expect(budget.batchesWaiting).toBeLessThan(20);
    expect(await settled(gone[0]!)).toBeNull();
    slow();
    expect(typeof (await settled(live))).toBe('function');
    expect(budget.batchesWaiting).toBe(0);
  });
  it('lets a group that came later in before two groups that keep asking', async () => {
    const budget = new BatchesInFlight(8 * MiB);
    const held: { a: ReleaseBatch[]; b: ReleaseBatch[] } = { a: [], b: [] };
    const admitted: string[] = [];
    const ask = (group: 'a' | 'b' | 'w'): void => {
      void Promise.resolve(budget.admit(group, 1 * MiB)).then((release) => {
        admitted.push(group);
        if (group !== 'w') held[group].push(release as ReleaseBatch);
      });
    };
    // a and b each hold their half, and each has more waiting; then w asks once.
    for (let i = 0; i < 14; i++) ask(i % 2 === 0 ? 'a' : 'b');
    await settled(null);
    ask('w');
    admitted.length = 0;
    // Each of a's and b's batches, once done, is followed by another of theirs.
    for (let round = 0; round < 6 && !admitted.includes('w'); round++) {
      const group: 'a' | 'b' = round % 2 === 0 ? 'a' : 'b';
      held[group].shift()!();
      await settled(null);
    }
    expect(admitted).toContain('w');
  });

  it('keeps room for a large batch waiting: smaller ones that came after do not go ahead of it', async () => {
    const budget = new BatchesInFlight(8 * MiB);
    const first = budget.admit('a', 3 * MiB) as ReleaseBatch;
    const second = budget.admit('b', 3 * MiB) as ReleaseBatch;
    // 2 MiB free: c's 4 MiB waits for room.
    const large = budget.admit('c', 4 * MiB);
    expect(await settled(large)).toBe('waiting');
    // A 1 MiB batch would fit, but would keep c waiting.
    const small = budget.admit('d', 1 * MiB);
    expect(await settled(small)).toBe('waiting');
    first();
    expect(typeof (await settled(large))).toBe('function');
    expect(typeof (await settled(small))).toBe('function');
    second();
  });
});
