// Slices of deciding: calls that ask many questions (a batch, a search page) share
// 2 ms of deciding per event-loop turn between them, taken in turns by caller, so
// other callers' checks are answered every turn however many such calls are running.

import { callerGroup } from '../decisions/caller-group.js';
import { VerdictError } from '../errors.js';

/** How long the questions of long calls are decided, in all, per event-loop turn before checks get theirs. */
export const BATCH_SLICE_MS = 2;

const ignore = (): void => {};

/**
 * The deciding time of every long call, shared. Every question's work is bounded
 * (request caps, the condition budget), but a thousand of them at the bound held the
 * thread for most of a second; and when each call yielded on its own, a hundred
 * CheckBatch calls each took their slice of every turn, so a check waited a hundred
 * slices. Here the calls of one turn decide for BATCH_SLICE_MS in all (only their
 * own deciding counts, not the checks and I/O around it). A call that finds the turn's
 * time spent, or others waiting, joins a line; a call that stops with time left (it
 * finished) hands the rest on to the next in line, and each turn starts with the next.
 * The line is served one caller group after another (callerGroup: a host, or an
 * identity), and within a group one caller (connection) after another, a caller's own
 * calls in the order they came: a host with a hundred calls waiting on a hundred
 * connections gets no more turns than one with a single call.
 */
export class DecidingTurns {
  /** Deciding done by long calls in this turn, in ms. */
  private spent = 0;
  private turnEndScheduled = false;
  /** A waiting call has been resumed and has not started deciding yet. */
  private handedOn = false;
  /** Calls waiting for time, by caller group then caller, each in the order they joined. */
  private readonly line = new Map<string, Map<string, Array<() => void>>>();

  /** The slicer for one call's questions. */
  forCall(caller: string): BatchSlicer {
    return new BatchSlicer(this, callerGroup(caller), caller);
  }

  /** Calls waiting for time. */
  get waiting(): number {
    let count = 0;
    for (const callers of this.line.values()) for (const calls of callers.values()) count += calls.length;
    return count;
  }

  /** @internal a call may start deciding now: nobody is waiting or about to resume, and the turn has time left */
  mayStart(): boolean {
    return !this.handedOn && this.line.size === 0 && this.spent < BATCH_SLICE_MS;
  }

  /** @internal a call deciding for `runningMs` since it last started would go past this turn's time */
  spentWith(runningMs: number): boolean {
    return this.spent + runningMs >= BATCH_SLICE_MS;
  }

  /** @internal a call started deciding (at once, or resumed) */
  started(): void {
    this.handedOn = false;
    this.scheduleTurnEnd();
  }

  /** @internal a call stopped deciding after `ms` */
  charge(ms: number): void {
    this.spent += ms;
    this.scheduleTurnEnd();
  }

  /** @internal resolves when the caller's turn comes */
  wait(group: string, caller: string): Promise<void> {
    return new Promise<void>((resolve) => {
      let callers = this.line.get(group);
      if (callers === undefined) this.line.set(group, (callers = new Map()));
      const calls = callers.get(caller);
      if (calls === undefined) callers.set(caller, [resolve]);
      else calls.push(resolve);
      this.scheduleTurnEnd();
    });
  }

  /** @internal a call has finished: what is left of the turn goes to the next in line */
  finished(): void {
    if (!this.handedOn && this.spent < BATCH_SLICE_MS) this.resumeNext();
  }

  private scheduleTurnEnd(): void {
    if (this.turnEndScheduled) return;
    this.turnEndScheduled = true;
    setImmediate(this.endTurn);
  }

  private readonly endTurn = (): void => {
    this.turnEndScheduled = false;
    this.spent = 0;
    if (!this.handedOn) this.resumeNext();
  };

  /**
   * The first call of the first caller of the group at the head of the line resumes
   * (right after the current callback, a microtask); caller and group go to the back
   * of their lines with the rest of their calls.
   */
  private resumeNext(): void {
    const firstGroup = this.line.entries().next();
    if (firstGroup.done === true) return;
    const [group, callers] = firstGroup.value;
    const [caller, calls] = callers.entries().next().value!;
    const resume = calls.shift()!;
    callers.delete(caller);
    if (calls.length > 0) callers.set(caller, calls);
    this.line.delete(group);
    if (callers.size > 0) this.line.set(group, callers);
    this.handedOn = true;
    this.scheduleTurnEnd();
    resume();
  }
}

/**
 * One call's side of DecidingTurns: `due()` before each question, `await pause()`
 * when it is, `finished()` once the call asks no more (in a `finally`). A quick call
 * (less than the turn's time left, nobody waiting) never waits.
 */
export class BatchSlicer {
  private deciding = false;
  private startedAt = 0;
  private marked = 0;

  constructor(
    private readonly turns: DecidingTurns,
    private readonly group: string,
    private readonly caller: string,
  ) {}

  due(): boolean {
    if (this.deciding) return this.turns.spentWith(performance.now() - this.startedAt);
    if (!this.turns.mayStart()) return true;
    this.start();
    return false;
  }

  /**
   * Waits for this call's next turn. The runs started so far are marked handled first:
   * one that fails while the call waits is still reported by the Promise.all over them all,
   * not as an unhandled rejection that would end the process.
   * @throws (rejects) VerdictError CANCELLED when, its turn come, `cancelled` says the caller has gone
   */
  async pause(runs: readonly Promise<unknown>[] = [], cancelled?: () => boolean): Promise<void> {
    for (; this.marked < runs.length; this.marked++) runs[this.marked]!.catch(ignore);
    this.stop();
    await this.turns.wait(this.group, this.caller);
    this.start();
    if (cancelled?.() === true) {
      throw new VerdictError('CANCELLED', 'the caller cancelled the call, or its connection closed, before every question was decided; the questions decided so far are recorded');
    }
  }

  /** The call asks no more: its deciding is charged, and the rest of the turn goes to the next in line. */
  finished(): void {
    this.stop();
    this.turns.finished();
  }

  private start(): void {
    this.deciding = true;
    this.startedAt = performance.now();
    this.turns.started();
  }

  private stop(): void {
    if (!this.deciding) return;
    this.deciding = false;
    this.turns.charge(performance.now() - this.startedAt);
  }
}
