// Slices of deciding: calls that ask many questions (a batch, a search page) share
// one slice of each event-loop turn between them, taken in turns by caller, so other
// callers' checks are answered every turn however many such calls are running.

/** How long the questions of long calls are decided, in all, per event-loop turn before checks get theirs. */
export const BATCH_SLICE_MS = 2;

const ignore = (): void => {};

/**
 * The deciding time of every long call, shared. Every question's work is bounded
 * (request caps, the condition budget), but a thousand of them at the bound held the
 * thread for most of a second; and when each call yielded on its own, a hundred
 * CheckBatch calls each took their slice of every turn, so a check waited a hundred
 * slices. Here one slice opens per turn: a call that finds it spent, or others
 * waiting, joins the line; the line is served one slice per turn, one caller after
 * another (a caller's own calls in the order they came), so a caller with a hundred
 * calls waiting gets no more turns than one with a single call.
 */
export class DecidingTurns {
  private sliceStart = 0;
  /** A slice is open this turn (until `endSlice` runs). */
  private open = false;
  /** Calls waiting for a slice, by caller, in the order their callers joined. */
  private readonly line = new Map<string, Array<() => void>>();

  /** Calls waiting for a slice. */
  get waiting(): number {
    let count = 0;
    for (const calls of this.line.values()) count += calls.length;
    return count;
  }

  /** The slicer for one call's questions. */
  forCall(caller: string): BatchSlicer {
    return new BatchSlicer(this, caller);
  }

  /** @internal the slice has run its time */
  spent(): boolean {
    return performance.now() - this.sliceStart >= BATCH_SLICE_MS;
  }

  /** @internal a call not holding the slice may go on: nobody waits, and this turn's slice (opened now if none) has time left */
  mayGoOn(): boolean {
    if (this.line.size > 0) return false;
    if (!this.open) {
      this.openSlice();
      return true;
    }
    return !this.spent();
  }

  /** @internal resolves when the slice is the caller's */
  wait(caller: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const calls = this.line.get(caller);
      if (calls === undefined) this.line.set(caller, [resolve]);
      else calls.push(resolve);
      // A slice left open would be handed on at its end; with none open, one is handed on next turn.
      if (!this.open) this.openSlice();
    });
  }

  private openSlice(): void {
    this.open = true;
    this.sliceStart = performance.now();
    setImmediate(this.endSlice);
  }

  /** At the end of a turn's slice, the next one goes to the caller at the head of the line. */
  private readonly endSlice = (): void => {
    this.open = false;
    const first = this.line.entries().next();
    if (first.done === true) return;
    const [caller, calls] = first.value;
    const resume = calls.shift()!;
    this.line.delete(caller);
    // To the back of the line with the rest of its calls.
    if (calls.length > 0) this.line.set(caller, calls);
    this.openSlice();
    // Its call runs right after this callback returns (a microtask), inside the slice just opened.
    resume();
  };
}

/**
 * One call's side of DecidingTurns: `due()` before each question, `await pause()`
 * when it is. A quick call (one slice or less, nobody waiting) never waits.
 */
export class BatchSlicer {
  /** This call was handed the slice it is running in. */
  private holding = false;
  private marked = 0;

  constructor(
    private readonly turns: DecidingTurns,
    private readonly caller: string,
  ) {}

  due(): boolean {
    return this.holding ? this.turns.spent() : !this.turns.mayGoOn();
  }

  /**
   * Waits for this call's next slice. The runs started so far are marked handled first:
   * one that fails while the call waits is still reported by the Promise.all over them all,
   * not as an unhandled rejection that would end the process.
   */
  async pause(runs: readonly Promise<unknown>[] = []): Promise<void> {
    for (; this.marked < runs.length; this.marked++) runs[this.marked]!.catch(ignore);
    this.holding = false;
    await this.turns.wait(this.caller);
    this.holding = true;
  }
}
