// Slices of deciding: a call that asks many questions (a batch, a search page) gives
// the event loop a turn between them, so other callers' checks are answered meanwhile.

import { setImmediate as yieldToEventLoop } from 'node:timers/promises';

/** How long the questions of one call are decided before other callers' checks get a turn. */
export const BATCH_SLICE_MS = 2;

const ignore = (): void => {};

/**
 * Cuts the deciding of one call's questions into slices. Every question's work is
 * bounded (request caps, the condition budget), but a thousand of them at the bound
 * held the thread for most of a second, and every other caller's check with it: past
 * a gateway's deadline, one call would have had all traffic refused.
 */
export class BatchSlicer {
  private sliceStart = performance.now();
  private marked = 0;

  due(): boolean {
    return performance.now() - this.sliceStart >= BATCH_SLICE_MS;
  }

  /**
   * Gives the event loop a turn. The runs started so far are marked handled first: one
   * that fails while the call waits is still reported by the Promise.all over them all,
   * not as an unhandled rejection that would end the process.
   */
  async pause(runs: readonly Promise<unknown>[] = []): Promise<void> {
    for (; this.marked < runs.length; this.marked++) runs[this.marked]!.catch(ignore);
    await yieldToEventLoop();
    this.sliceStart = performance.now();
  }
}
