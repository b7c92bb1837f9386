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
  /**
   * Calls waiting for time, by caller group then caller, each in the order they joined: the
   * groups in turn order on a linked list, and a Map to find a group by key. Rotating the
   * line by deleting and setting Map entries, once per resumed call, kept replacing the
   * Map's hash table, and V8 keeps an outgrown table with every entry it held, so waiting
   * calls (and all they hold) were promoted to the old generation under load. A group or
   * caller taken off the line lets go of its calls and neighbours (see server/in-flight.ts).
   */
  private readonly groups = new Map<string, WaitingGroup>();
  private first: WaitingGroup | null = null;
  private last: WaitingGroup | null = null;

  /** The slicer for one call's questions. */
  forCall(caller: string): BatchSlicer {
    return new BatchSlicer(this, callerGroup(caller), caller);
  }

  /** Calls waiting for time. */
  get waiting(): number {
    let count = 0;
    for (let group = this.first; group !== null; group = group.next) for (let caller = group.first; caller !== null; caller = caller.next) count += caller.calls.length;
    return count;
  }

  /** @internal a call may start deciding now: nobody is waiting or about to resume, and the turn has time left */
  mayStart(): boolean {
    return !this.handedOn && this.first === null && this.spent < BATCH_SLICE_MS;
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
      let waitingGroup = this.groups.get(group);
      if (waitingGroup === undefined) {
        waitingGroup = new WaitingGroup(group);
        this.groups.set(group, waitingGroup);
        this.append(waitingGroup);
      }
      waitingGroup.add(caller, resolve);
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
    const group = this.first;
    if (group === null) return;
    const resume = group.takeNext();
    this.first = group.next;
    if (this.first === null) this.last = null;
    group.next = null;
    if (group.first !== null) this.append(group);
    else this.groups.delete(group.key);
    this.handedOn = true;
    this.scheduleTurnEnd();
    resume();
  }

  private append(group: WaitingGroup): void {
    if (this.last === null) this.first = group;
    else this.last.next = group;
    this.last = group;
  }
}

/** The calls of one caller waiting for time, in the order they came. */
class WaitingCaller {
  calls: Array<() => void> = [];
  next: WaitingCaller | null = null;

  constructor(readonly key: string) {}
}

/** The callers of one group waiting for time, in turn order. */
class WaitingGroup {
  private readonly callers = new Map<string, WaitingCaller>();
  first: WaitingCaller | null = null;
  private last: WaitingCaller | null = null;
  next: WaitingGroup | null = null;

  constructor(readonly key: string) {}

  add(caller: string, resolve: () => void): void {
    let waiting = this.callers.get(caller);
    if (waiting === undefined) {
      waiting = new WaitingCaller(caller);
      this.callers.set(caller, waiting);
      this.append(waiting);
    }
    waiting.calls.push(resolve);
  }

  /** The first caller's first call; that caller goes to the back of the group's line with the rest of its calls, or off it. */
  takeNext(): () => void {
    const caller = this.first!;
    const resume = caller.calls.shift()!;
    this.first = caller.next;
    if (this.first === null) this.last = null;
    caller.next = null;
    if (caller.calls.length > 0) this.append(caller);
    else {
      this.callers.delete(caller.key);
      caller.calls = [];
    }
    return resume;
  }

  private append(caller: WaitingCaller): void {
    if (this.last === null) this.first = caller;
    else this.last.next = caller;
    this.last = caller;
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
