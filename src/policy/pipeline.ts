import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import { VerdictError } from '../errors.js';
import type { YoungGenerationPacer } from './young-generation.js';

/**
 * Loading a policy directory is a list of named stages run in order over one
 * shared state (see load.ts). A stage is a generator so that the same code can
 * run straight through (the CLI) or in slices between which the event loop
 * answers checks (the server's reloads): it yields `undefined` where it may
 * pause, and a promise where it must wait for I/O.
 */
export type Pause = Promise<unknown> | undefined;
export type StageRun<T = void> = Generator<Pause, T, unknown>;

export interface Stage<S> {
  readonly name: string;
  run(state: S): StageRun;
}

/** Waits for `promise` inside a stage; the driver resumes the stage with its value. */
export function* wait<T>(promise: Promise<T>): StageRun<T> {
  return (yield promise) as T;
}

/** Runs stages to the end in one go; a stage that waits for I/O here is a bug (the synchronous readers never do). */
export function runStages<S>(stages: readonly Stage<S>[], state: S): void {
  for (const stage of stages) runToEnd(stage.run(state));
}

/** Runs one stage's generator (or a helper of one) to its end in this thread. */
export function runToEnd<T>(run: StageRun<T>): T {
  for (let step = run.next(); ; step = run.next()) {
    if (step.done) return step.value;
    if (step.value !== undefined) throw new VerdictError('INTERNAL', 'a synchronous load waited for I/O');
  }
}

/** How a sliced run went. */
export interface SliceStats {
  /** The longest the stages ran without letting the event loop run, in milliseconds. */
  readonly longestSliceMs: number;
  /** The stage that took most of the longest slice (a slice can run on from one stage into the next). */
  readonly longestSliceStage: string | null;
  /** The longest young-generation collection the pacer made between slices, in milliseconds (0: none). */
  readonly longestCollectionMs: number;
  readonly slices: number;
}

/** How a run in slices shares its thread, besides the length of its slices. */
export interface SliceSharing {
  /** Collects the young generation between slices once they have allocated enough (see young-generation.ts). */
  readonly pacer?: YoungGenerationPacer | null;
  /**
   * Milliseconds the thread rests between slices (0: none beyond the turns every pause gives).
   * Slices run back to back keep the thread busy without a break, and on a busy
   * machine the kernel's scheduler then makes it wait behind other threads, for
   * tens of milliseconds, with the checks it would answer; a thread that rests a
   * moment between slices is scheduled again at once when a check arrives.
   */
  readonly restMs?: number;
}

/**
 * Two turns of the event loop, so that the checks answered during a pause are on
 * the wire before the next slice holds the thread. A gRPC answer ends with trailers
 * (its status), and node's HTTP/2 submits them from an immediate queued when the
 * stream asks for them (`sendTrailers` defers to `setImmediate`), behind the one
 * that would resume the reload; their bytes then go out with the next turn's writes.
 * Resumed after one turn, a check that had waited for a slice or a collection would
 * wait for the next one as well.
 */
async function letAnswersLeave(): Promise<void> {
  await yieldToEventLoop();
  await yieldToEventLoop();
}

/** Measures slices and gives the event loop a turn when one has run for `budgetMs`. */
class SliceClock {
  private sliceStart = performance.now();
  longestSliceMs = 0;
  longestSliceStage: string | null = null;
  longestCollectionMs = 0;
  /** The stage being driven, and since when in this slice: to name the one that held the thread longest. */
  private stage: string | null = null;
  private stageSince = this.sliceStart;
  /** The stage that has taken most of this slice so far, and for how long. */
  private heaviestStage: string | null = null;
  private heaviestStageMs = 0;
  slices = 1;
  private readonly pacer: YoungGenerationPacer | null;
  private readonly restMs: number;

  constructor(
    private readonly budgetMs: number,
    sharing: SliceSharing,
  ) {
    this.pacer = sharing.pacer ?? null;
    this.restMs = sharing.restMs ?? 0;
  }

  /** Ends a slice, lets the event loop run until `until` settles (or for one turn), and starts the next. */
  private async pause(until: Promise<unknown> | undefined): Promise<unknown> {
    this.endSlice();
    this.slices += 1;
    const value = until !== undefined ? await until : this.restMs > 0 ? await sleep(this.restMs) : undefined;
    await letAnswersLeave();
    if (this.pacer?.due()) {
      // A young-generation collection of what the last slices kept, in a turn of its own.
      this.timedCollect(this.pacer);
      await letAnswersLeave();
    }
    this.sliceStart = performance.now();
    this.stageSince = this.sliceStart;
    return value;
  }

  async drive<T>(run: StageRun<T>): Promise<T> {
    try {
      let input: unknown;
      // A wait that failed is thrown into the stage where it waited, as runToEnd's synchronous reads throw there.
      let failed: { readonly error: unknown } | null = null;
      for (;;) {
        const step = failed === null ? run.next(input) : run.throw(failed.error);
        input = undefined;
        failed = null;
        if (step.done) return step.value;
        if (step.value !== undefined) {
          try {
            input = await this.pause(step.value);
          } catch (error) {
            failed = { error };
          }
        } else if (performance.now() - this.sliceStart >= this.budgetMs) await this.pause(undefined);
      }
    } finally {
      run.return(undefined as T);
    }
  }

  /**
   * With a pacer, what the last slices kept is collected in turns of its own before
   * the run ends: once into the young generation's survivor space, once more into the
   * old generation. Left there, it would be copied by the next collection V8 makes on
   * its own, in one pause with whatever the following load keeps.
   */
  async settle(): Promise<void> {
    if (this.pacer === null) return;
    for (let i = 0; i < 2; i++) {
      await letAnswersLeave();
      this.timedCollect(this.pacer);
    }
    await letAnswersLeave();
  }

  /** Starts driving `stage`; the time since the last switch goes to the one before. */
  enterStage(stage: string): void {
    this.countStageShare();
    this.stage = stage;
  }

  private countStageShare(): void {
    const now = performance.now();
    if (now - this.stageSince > this.heaviestStageMs) {
      this.heaviestStageMs = now - this.stageSince;
      this.heaviestStage = this.stage;
    }
    this.stageSince = now;
  }

  private endSlice(): void {
    this.countStageShare();
    const ms = performance.now() - this.sliceStart;
    if (ms > this.longestSliceMs) {
      this.longestSliceMs = ms;
      this.longestSliceStage = this.heaviestStage;
    }
    this.heaviestStage = null;
    this.heaviestStageMs = 0;
  }

  private timedCollect(pacer: YoungGenerationPacer): void {
    const from = performance.now();
    pacer.collect();
    this.longestCollectionMs = Math.max(this.longestCollectionMs, performance.now() - from);
  }

  stats(): SliceStats {
    this.endSlice();
    this.sliceStart = performance.now();
    this.stageSince = this.sliceStart;
    return { longestSliceMs: this.longestSliceMs, longestSliceStage: this.longestSliceStage, longestCollectionMs: this.longestCollectionMs, slices: this.slices };
  }
}

/**
 * Runs stages in slices of about `budgetMs`: at a pause point past the budget, the
 * event loop gets a turn (pending I/O, checks among it, runs) before the stages go on
 * (see SliceSharing for resting between slices and pacing garbage collection).
 */
export async function runStagesInSlices<S>(stages: readonly Stage<S>[], state: S, budgetMs: number, sharing: SliceSharing = {}): Promise<SliceStats> {
  const clock = new SliceClock(budgetMs, sharing);
  for (const stage of stages) {
    clock.enterStage(stage.name);
    await clock.drive(stage.run(state));
  }
  const stats = clock.stats();
  await clock.settle();
  // The settling collections run after the last slice, and can be the longest.
  return { ...stats, longestCollectionMs: clock.longestCollectionMs };
}

/** Runs one generator in slices of about `budgetMs` (see runStagesInSlices). */
export function runInSlices<T>(run: StageRun<T>, budgetMs: number, sharing: SliceSharing = {}): Promise<T> {
  return new SliceClock(budgetMs, sharing).drive(run);
}
