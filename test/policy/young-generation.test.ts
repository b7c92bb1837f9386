import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { runStagesInSlices, type Stage } from '../../src/policy/pipeline.js';
import { youngGenerationPacer, type YoungGenerationPacer } from '../../src/policy/young-generation.js';

/** The work a stage would do without a pause point. */
function busyFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spinning
  }
}

describe('young-generation pacing of reloads', () => {
  it('reaches V8\'s collector without --expose-gc, and leaves no other context with gc', () => {
    const pacer = youngGenerationPacer(0);
    expect(pacer).not.toBeNull();
    expect(pacer!.due()).toBe(true);
    const kept = Array.from({ length: 1000 }, (_, i) => ({ i }));
    pacer!.collect();
    expect(kept[999]!.i).toBe(999);
    expect(runInNewContext('typeof gc')).toBe('undefined');
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    // Past a threshold no run allocates, it is not due.
    expect(youngGenerationPacer(Number.MAX_SAFE_INTEGER)!.due()).toBe(false);
    // Due counts what was allocated since its last collection, not the survivors that collection left.
    const paced = youngGenerationPacer(256 * 1024)!;
    paced.collect();
    expect(paced.due()).toBe(false);
    const more = Array.from({ length: 50_000 }, (_, i) => ({ i }));
    expect(paced.due()).toBe(true);
    expect(more.length).toBe(50_000);
  });

  it('collects between slices, in a turn of its own, only when due', async () => {
    const events: string[] = [];
    let due = false;
    const pacer: YoungGenerationPacer = {
      due: () => due,
      collect: () => {
        events.push('collect');
        setImmediate(() => events.push('turn'));
      },
    };
    const stage: Stage<null> = {
      name: 'steps',
      *run() {
        for (let i = 0; i < 4; i++) {
          events.push(`step ${i}`);
          due = i === 1;
          // A check arriving while the slice runs is answered at the next pause.
          setImmediate(() => events.push('turn'));
          yield;
        }
      },
    };
    await runStagesInSlices([stage], null, 0, { pacer });
    // At the end, what the last slices kept is collected twice (into the survivor space, then the old generation), each in a turn of its own.
    expect(events).toEqual(['step 0', 'turn', 'step 1', 'turn', 'collect', 'turn', 'step 2', 'turn', 'step 3', 'turn', 'collect', 'turn', 'collect', 'turn']);
  });

  it('rests between slices when asked: timers due meanwhile run before the next slice', async () => {
    const events: string[] = [];
    const stage: Stage<null> = {
      name: 'steps',
      *run() {
        events.push('step 0');
        setTimeout(() => events.push('timer'), 5);
        yield;
        events.push('step 1');
      },
    };
    await runStagesInSlices([stage], null, 0, { restMs: 20 });
    expect(events).toEqual(['step 0', 'timer', 'step 1']);
  });

  it('reports its longest slice, the stage that took it, and its longest collection', async () => {
    const quick: Stage<null> = {
      name: 'quick',
      *run() {
        for (let i = 0; i < 5; i++) yield;
      },
    };
    const long: Stage<null> = {
      name: 'long',
      *run() {
        yield;
        busyFor(30);
        yield;
      },
    };
    const pacer: YoungGenerationPacer = { due: () => true, collect: () => busyFor(12) };
    const stats = await runStagesInSlices([quick, long, quick], null, 0, { pacer });
    expect(stats.longestSliceStage).toBe('long');
    expect(stats.longestSliceMs).toBeGreaterThanOrEqual(30);
    expect(stats.longestCollectionMs).toBeGreaterThanOrEqual(12);
    expect(stats.slices).toBeGreaterThan(5);
  });

  it('names the stage that held the slice, not the stage the slice ended in', async () => {
    const holds: Stage<null> = {
      name: 'holds',
      *run() {
        busyFor(30);
      },
    };
    const pausesAtOnce: Stage<null> = {
      name: 'pauses-at-once',
      *run() {
        busyFor(1);
        yield;
      },
    };
    const stats = await runStagesInSlices([holds, pausesAtOnce], null, 0);
    expect(stats.longestSliceMs).toBeGreaterThanOrEqual(30);
    expect(stats.longestSliceStage).toBe('holds');
  });
});
