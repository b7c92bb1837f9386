// The decide -> record -> answer path every transport takes (DecisionPipeline),
// and the observers told of each decision.

import type { DecisionSink } from '../decisions/log-client.js';
import type { DecisionDetails, DecisionRecord } from '../decisions/record.js';
import { completeRequest, directorySources, spelledOtherwise, type DirectorySources } from '../engine/complete.js';
import { decisionWith } from '../engine/decision-with.js';
import { decideAsServed, evaluateAsServed, isSchemaRefusal } from '../engine/schema-checked.js';
import type { PolicySet } from '../policy/policy-set.js';
import { callerGroup } from '../decisions/caller-group.js';
import { VerdictError, messageOf } from '../errors.js';
import { adjustReservation, BackendUnavailable, RateLimiter, SettlementBook, type LimitOutcome, type Reservation } from '../limits/index.js';
import type { Decision, DecisionRequest, LimitState, ShadowDecision, SuspensionState } from '../types.js';
import { RequestMeter, type RequestLimits } from './bounds.js';
import { withoutNullMembers } from '../engine/null-members.js';
import { newDecisionId } from './decision-id.js';
import { decisionRecord } from './record.js';
import { blocked, invalidRequest, limitError, rateLimited, refusalDecision, suspended } from './refusals.js';
import { BatchesInFlight, BatchRefused, DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT, DEFAULT_MAX_BATCH_RECORDED_BYTES, measureBatchRecord, ROW_IN_MEMORY_BYTES } from './batch-budget.js';
import { InvalidRequest, RefusedRequest, RequestFieldError, type CallMeta, type CheckInput, type CheckResult } from './request.js';
import type { Suspensions } from './suspensions.js';
import { DecidingTurns, type BatchSlicer } from './slices.js';
import { cutText } from '../cut-text.js';

/** Where the pipeline reads the policy set to decide with: once per call, never half-loaded. */
export interface PolicySource {
  readonly current: PolicySet;
}

/**
 * Told of every decision the pipeline makes (metrics today; anomaly detectors and
 * shadow evaluation later). Observers run on the hot path, in the order they were
 * added: they must be quick and must not block. One that throws is ignored: it
 * cannot stop a decision or the other observers.
 */
export interface DecisionObserver {
  /**
   * A decision was recorded and is about to be answered; `seconds` since the call began, the commit included;
   * `record` is what the decision log was given (the anomaly detectors read it).
   */
  decided?(result: CheckResult, meta: CallMeta, seconds: number, record: DecisionRecord): void;
  /** A decision could not be recorded, so it is refused (the caller gets UNAVAILABLE or 503). */
  unrecorded?(error: unknown, meta: CallMeta): void;
}

export interface PipelineOptions {
  /** Caps on the size of a request (bounds.ts); a request over one is refused and recorded, never evaluated. */
  readonly requestLimits?: RequestLimits;
  /** Applies the rate limits; by default one in memory for this process, with bounded keys. */
  readonly limiter?: RateLimiter;
  /**
   * Shadow mode: a candidate policy set decided beside the live one on every check. The
   * answer is always the live set's; where the effects differ, the decision carries the
   * shadow's (`decision.shadow`, recorded as `details.shadow`).
   */
  readonly shadow?: PolicySource;
  /**
   * Most bytes the items of one batch (checkBatch, checkUntil) may write to the decision
   * log, their shared principal, resource and context counted once per item (see batchRecordError);
   * a batch over it is refused whole. Default DEFAULT_MAX_BATCH_RECORDED_BYTES.
   */
  readonly maxBatchRecordedBytes?: number;
  /** Most bytes the batches being decided at once may hold, all callers together (BatchesInFlight: what they record, and ROW_IN_MEMORY_BYTES an item). Default DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT. */
  readonly maxBatchBytesInFlight?: number;
  /**
   * Principals whose checks are denied for now (DENIED_BY_SUSPENSION) before the
   * rules are asked: one map lookup per check. The row's details say which alert
   * suspended it and until when (`details.suspension`).
   */
  readonly suspensions?: Suspensions;
  /** What Settle may still correct: decisions whose limits took a cost (bounded, with expiry). */
  readonly settlements?: SettlementBook;
  /**
   * Where a Settle of a decision this process does not hold is tried next: with
   * `--workers N`, the other workers (one of which decided it, and holds what it
   * reserved). Resolves with that worker's outcome (its row recorded there), or
   * null when none holds it; then it is refused here as unknown.
   */
  readonly settleElsewhere?: (decisionId: string, actualUnits: number, meta: CallMeta) => Promise<SettleOutcome | null>;
}

/** Largest number of units a Settle may report. */
export const MAX_SETTLE_UNITS = 1e15;

/** Why a Settle is refused. */
type SettleProblem = { readonly kind: 'invalid' | 'unknown' | 'expired' | 'settled-already' | 'settling'; readonly message: string };

/** What is wrong with a Settle's decision id and units as sent, or null. */
function settleInputProblem(decisionId: string, actualUnits: number | undefined): SettleProblem | null {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(decisionId)) {
    return { kind: 'invalid', message: 'decision_id: expected the decision id a Check answered (a UUID)' };
  }
  // Read as 0 it would hand the caller back its whole reservation.
  if (actualUnits === undefined) return { kind: 'invalid', message: 'actual_units: missing; send the units the call really used (0 if it used none)' };
  if (!Number.isFinite(actualUnits) || actualUnits < 0 || actualUnits > MAX_SETTLE_UNITS) return { kind: 'invalid', message: `actual_units: expected a number from 0 to ${MAX_SETTLE_UNITS}` };
  return null;
}

/**
 * The answer to a Settle: the budget corrected (`remaining`: the least left among
 * the limits corrected), or why not. Either way `settleId` names its row in the log.
 * - `invalid`: the decision id or units are malformed;
 * - `unknown`: no decision of this caller that took a cost (or it was dropped);
 * - `expired`: its settle window has passed; `settled`: it was settled already.
 */
export type SettleOutcome =
  | { readonly kind: 'settled'; readonly settleId: string; readonly reservedUnits: number; readonly actualUnits: number; readonly limitIds: readonly string[]; readonly remaining: number }
  | { readonly kind: 'invalid' | 'unknown' | 'expired' | 'settled-already' | 'settling' | 'unavailable'; readonly settleId: string; readonly message: string };

/** How a transport names a batch's items in its errors. */
export interface BatchOptions {
  /** The field holding the items, as the transport's callers know it: `items` (default), `evaluations`. */
  readonly field?: string;
  /**
   * True once the caller has gone (its stream or connection closed): a call waiting for
   * its turn then stops, its remaining questions neither decided nor recorded, rather
   * than being decided for nobody while others wait behind it.
   */
  readonly cancelled?: () => boolean;
}

/** Maps a transport's request to a question with the policy set that will decide it (a gateway reads its routes). */
export type PrepareCheck = (policySet: PolicySet) => CheckInput;

/**
 * The one path to a decision, for every transport, single or batch: read the
 * policy set being served, decide (a refused request is not evaluated), record
 * the decision in the log, tell the observers, and only then hand the result back
 * to be answered. A decision that cannot be recorded is never answered: the
 * append rejects, and so does the check.
 *
 * @example
 * const pipeline = new DecisionPipeline(policyStore, decisionLog);
 * pipeline.observe(metrics);
 * const { decision, decisionId } = await pipeline.check(request, { caller: '10.0.0.7:41234', requestId: null });
 */
export class DecisionPipeline {
  private observers: readonly DecisionObserver[] = [];
  private readonly meter: RequestMeter;

  /** Applies the policy set's rate limits to what the rules allow. */
  readonly limiter: RateLimiter;
  private readonly shadow: PolicySource | null;
  private readonly maxBatchRecordedBytes: number;
  private readonly suspensions: Suspensions | null;
  /** The deciding time of long calls (batches, searches), shared out by caller. */
  private readonly turns = new DecidingTurns();
  /** Room for the rows of batches being decided, shared out by caller. */
  readonly batchesInFlight: BatchesInFlight;

  constructor(
    private readonly policies: PolicySource,
    private readonly log: DecisionSink,
    options: PipelineOptions = {},
  ) {
    this.meter = new RequestMeter(options.requestLimits);
    this.limiter = options.limiter ?? new RateLimiter();
    this.shadow = options.shadow ?? null;
    this.maxBatchRecordedBytes = options.maxBatchRecordedBytes ?? DEFAULT_MAX_BATCH_RECORDED_BYTES;
    this.batchesInFlight = new BatchesInFlight(options.maxBatchBytesInFlight ?? DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT);
    this.suspensions = options.suspensions ?? null;
    this.settlements = options.settlements ?? new SettlementBook();
    this.settleElsewhere = options.settleElsewhere ?? null;
  }

  private readonly settleElsewhere: NonNullable<PipelineOptions['settleElsewhere']> | null;

  /** Decisions whose cost Settle may still correct. */
  readonly settlements: SettlementBook;

  /** Long calls (batches, searches) waiting for their next slice of deciding. */
  get longCallsWaiting(): number {
    return this.turns.waiting;
  }

  /**
   * Corrects the cost budget a decision reserved up front, once the actual units are
   * known (e.g. the tokens a model really produced): the difference is given back, or
   * taken beyond the burst (an overspend waits for the refill), in every limit that
   * took a cost, where it was taken. Only the caller that asked for the decision may
   * settle it, once, within the settle window. Recorded as a row (action `settle`).
   * `unreadable`: why the request carrying it could not be read (it is refused as invalid, and recorded).
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE when it cannot be recorded: what was corrected is
   *   taken back (as far as the backend takes it) and the decision stays open
   */
  async settle(decisionId: string, actualUnits: number | undefined, meta: CallMeta, unreadable?: string): Promise<SettleOutcome> {
    const started = performance.now();
    const policyVersion = this.policies.current.version;
    // A request id over the string cap is refused and recorded cut, as a Check's is: whole, it would be
    // written with the row (up to a message's size), and with --workers sent to every worker.
    const long = this.longRequestId(meta);
    if (long !== null) meta = long.meta;
    const problem: SettleProblem | null =
      unreadable !== undefined ? { kind: 'invalid', message: unreadable } : long !== null ? { kind: 'invalid', message: long.error.message } : settleInputProblem(decisionId, actualUnits);
    const entry = problem === null ? this.settlements.take(decisionId, meta.caller) : null;
    if (entry === 'unknown' && this.settleElsewhere !== null && actualUnits !== undefined) {
      let there: SettleOutcome | null;
      try {
        there = await this.settleElsewhere(decisionId, actualUnits, meta);
      } catch (error) {
        // The holder could not record its row: it took its correction back and left the decision open, as one process does.
        if (error instanceof VerdictError && error.code === 'DECISION_LOG_UNAVAILABLE') throw error;
        // Whether another process holds it is not known: refused as unavailable (a retry finds out), not as unknown.
        const message = `decision ${decisionId} is not held by the process that took this Settle, and the others could not be asked (${messageOf(error)}); settle it again`;
        const settleId = newDecisionId(Date.now());
        await this.log.append(settleRecord(settleId, meta, policyVersion, started, null, decisionId, actualUnits, message));
        return { kind: 'unavailable', settleId, message };
      }
      if (there !== null) return there;
    }
    return this.completeSettle(entry, problem, decisionId, actualUnits, meta, started, policyVersion);
  }

  /**
   * A Settle passed on by another `--workers` process (settleElsewhere there):
   * settled here, and recorded here, when this process holds the decision for
   * this caller; null, with nothing recorded, when it does not.
   * `claim`, asked once it is known to be held here and before anything is changed or
   * recorded: whether the Settle is still waited for (false when the asking process has
   * answered it already, e.g. as unavailable): if not, null, nothing changed or recorded.
   * @throws (rejects) as settle
   */
  async settleIfHeld(decisionId: string, actualUnits: number, meta: CallMeta, claim: () => boolean | Promise<boolean> = () => true): Promise<SettleOutcome | null> {
    if (settleInputProblem(decisionId, actualUnits) !== null || !this.settlements.holds(decisionId, meta.caller)) return null;
    if (!(await claim())) return null;
    const started = performance.now();
    const policyVersion = this.policies.current.version;
    const entry = this.settlements.take(decisionId, meta.caller);
    if (entry === 'unknown') return null;
    return this.completeSettle(entry, null, decisionId, actualUnits, meta, started, policyVersion);
  }

  private async completeSettle(
    entry: ReturnType<SettlementBook['take']> | null,
    problemBefore: SettleProblem | null,
    decisionId: string,
    actualUnits: number | undefined,
    meta: CallMeta,
    started: number,
    policyVersion: string,
  ): Promise<SettleOutcome> {
    let problem = problemBefore;
    if (entry === 'unknown') problem = { kind: 'unknown', message: `no decision ${decisionId} of this caller that reserved a cost (unknown, not a cost, another caller's, or no longer held)` };
    else if (entry === 'expired') problem = { kind: 'expired', message: `decision ${decisionId} can no longer be settled: its settle window has passed` };
    else if (entry === 'settled') problem = { kind: 'settled-already', message: `decision ${decisionId} is already settled` };
    else if (entry === 'settling') problem = { kind: 'settling', message: `another Settle of decision ${decisionId} has not answered yet; retry once it has (it may leave the decision open)` };
    const settleId = newDecisionId(Date.now());
    if (problem !== null || entry === null || typeof entry === 'string' || actualUnits === undefined) {
      const refusal = problem ?? { kind: 'invalid' as const, message: 'not settled' };
      await this.log.append(settleRecord(settleId, meta, policyVersion, started, null, decisionId, actualUnits, refusal.message));
      return { kind: refusal.kind, settleId, message: refusal.message };
    }
    // Settled once this Settle is over, whatever becomes of it, unless it left the decision open.
    let reopened = false;
    try {
      let remaining = Number.POSITIVE_INFINITY;
      let reservedUnits = 0;
      const corrections: (number | Promise<number>)[] = [];
      for (const reservation of entry.reservations) {
        reservedUnits = Math.max(reservedUnits, reservation.units);
        corrections.push(adjustReservation(this.limiter, reservation, actualUnits - reservation.units));
      }
      const outcomes = await Promise.all(corrections.map((c) => Promise.resolve(c).then((left) => ({ left }), (error: unknown) => ({ error }))));
      const failed = entry.reservations.filter((_, i) => 'error' in outcomes[i]!);
      if (failed.length > 0) {
        const errors = outcomes.flatMap((o) => ('error' in o ? [o.error] : []));
        const made = entry.reservations.filter((_, i) => 'left' in outcomes[i]!).map((r) => r.limitId);
        const done = made.length > 0 ? `; those of ${made.join(', ')} were made` : '';
        // A correction never sent (the backend known to be down) is not lost: the decision stays open
        // for it. One sent that timed out may have been made, and made again it would count twice.
        const unsent = errors.every((error) => error instanceof BackendUnavailable && !error.mayHaveRun);
        if (unsent) {
          this.settlements.reopen(decisionId, failed);
          reopened = true;
        }
        const message = unsent
          ? `the rate-limit backend did not take the correction of ${failed.map((r) => r.limitId).join(', ')} (${messageOf(errors[0])})${done}; nothing is lost: settle decision ${decisionId} again`
          : `the rate-limit backend did not confirm the correction of ${failed.map((r) => r.limitId).join(', ')} (${messageOf(errors[0])})${done}; it may have been made, so decision ${decisionId} is not settled again`;
        await this.log.append(settleRecord(settleId, meta, policyVersion, started, null, decisionId, actualUnits, message));
        return { kind: 'unavailable', settleId, message };
      }
      for (const outcome of outcomes) if ('left' in outcome) remaining = Math.min(remaining, outcome.left);
      const limitIds = entry.reservations.map((r: Reservation) => r.limitId);
      try {
        await this.log.append(settleRecord(settleId, meta, policyVersion, started, entry, decisionId, actualUnits, null));
      } catch (error) {
        // Not recorded, so not settled: the corrections are taken back and the decision stays open, to settle
        // again once the log can be written (a budget changed by a Settle no row shows would be a quiet change).
        await Promise.all(entry.reservations.map((r) => Promise.resolve(adjustReservation(this.limiter, r, r.units - actualUnits)).catch(() => undefined)));
        this.settlements.reopen(decisionId, entry.reservations);
        reopened = true;
        throw error;
      }
      return { kind: 'settled', settleId, reservedUnits, actualUnits, limitIds, remaining: Number.isFinite(remaining) ? remaining : 0 };
    } finally {
      if (!reopened) this.settlements.settled(decisionId);
    }
  }

  /** Adds an observer of every decision; returns the function that removes it. */
  observe(observer: DecisionObserver): () => void {
    // Replaced, not changed in place, so a decision being announced sees a stable list.
    this.observers = [...this.observers, observer];
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
    };
  }

  /**
   * Decides and records one question.
   * @throws (rejects) VerdictError DECISION_LOG_UNAVAILABLE when the decision cannot be recorded: answer with an error, never allow
   */
  check(input: CheckInput, meta: CallMeta): Promise<CheckResult> {
    const started = performance.now();
    const long = this.longRequestId(meta);
    if (long !== null) return this.run(this.policies.current, this.refusedForId(input, long.error), long.meta, started, started);
    return this.run(this.policies.current, input, meta, started, started);
  }

  /**
   * A request id longer than any other string of a request may be (it would be written
   * with every row of the call, a thousand times for a full batch): the error refusing
   * the call, and the call as it is recorded, with the id's first 64 characters.
   */
  private longRequestId(meta: CallMeta): { error: RequestFieldError; meta: CallMeta } | null {
    const id = meta.requestId;
    const longest = this.meter.limits.maxStringLength;
    if (id === null || id.length <= longest) return null;
    const error = RequestFieldError.invalid('request_id', `${id.length} characters, over the limit of ${longest} (requestLimits.maxStringLength)`);
    return { error, meta: { ...meta, requestId: cutText(id, 64) } };
  }

  /** The question refused for its call's request id, unless it was refused already. */
  private refusedForId(input: CheckInput, error: RequestFieldError): CheckInput {
    return input instanceof RefusedRequest ? input : new InvalidRequest(error, identifying(input, this.meter.limits.maxStringLength));
  }

  /**
   * Decides and records the questions of one call, one result per input, in order,
   * all with the same policy set. Each item's decision latency is its own; the
   * observers' time is the call's. Long calls share one slice of each event-loop
   * turn, by caller (DecidingTurns in slices.ts), so other callers' checks are
   * answered every turn; a quick batch is decided, and appended, in one turn.
   * @throws (rejects) BatchRefused when what the items would record is over maxBatchRecordedBytes
   *   (no item decided; the refusal recorded once)
   */
  async checkBatch(inputs: readonly CheckInput[], meta: CallMeta, options: BatchOptions = {}): Promise<CheckResult[]> {
    const long = this.longRequestId(meta);
    if (long !== null) return this.refuseBatch(long.error, inputs, long.meta);
    return this.withRoom(inputs, meta, options, (runs) => this.decideBatch(inputs, meta, options, runs));
  }

  private async decideBatch(inputs: readonly CheckInput[], meta: CallMeta, options: BatchOptions, runs: Promise<CheckResult>[]): Promise<CheckResult[]> {
    const started = performance.now();
    const policySet = this.policies.current;
    const slicer = this.turns.forCall(meta.caller);
    try {
      for (let i = 0; i < inputs.length; i++) {
        if (slicer.due()) await slicer.pause(runs, options.cancelled);
        runs.push(this.run(policySet, inputs[i]!, meta, performance.now(), started));
      }
    } finally {
      slicer.finished();
    }
    return Promise.all(runs);
  }

  /** Like check, for a question that needs the policy set to be asked (see PrepareCheck). */
  checkWith(prepare: PrepareCheck, meta: CallMeta): Promise<CheckResult> {
    const started = performance.now();
    const policySet = this.policies.current;
    // The shadow set asks its own question: its routes may map the request otherwise, or not at all.
    const shadow = this.shadow === null ? null : shadowInput(this.shadow.current, prepare);
    const long = this.longRequestId(meta);
    if (long !== null) return this.run(policySet, this.refusedForId(prepare(policySet), long.error), long.meta, started, started);
    const decided = this.decide(policySet, prepare(policySet), shadow);
    if (decided instanceof Promise) return decided.then((d) => this.record(d, meta, started, started));
    return this.record(decided, meta, started, started);
  }

  /**
   * Decides the questions of one call in order, all with the same policy set, and
   * stops after the first decision `stop` is true of (AuthZEN's deny_on_first_deny
   * and permit_on_first_permit): the questions after it are neither decided nor
   * recorded. One result per decided question, in order; sliced and bounded like
   * checkBatch (BatchRefused).
   */
  async checkUntil(inputs: readonly CheckInput[], meta: CallMeta, stop: (decision: Decision) => boolean, options: BatchOptions = {}): Promise<CheckResult[]> {
    const long = this.longRequestId(meta);
    if (long !== null) return this.refuseBatch(long.error, inputs, long.meta);
    return this.withRoom(inputs, meta, options, (runs) => this.decideUntil(inputs, meta, stop, options, runs));
  }

  private async decideUntil(inputs: readonly CheckInput[], meta: CallMeta, stop: (decision: Decision) => boolean, options: BatchOptions, runs: Promise<CheckResult>[]): Promise<CheckResult[]> {
    const started = performance.now();
    const policySet = this.policies.current;
    const slicer = this.turns.forCall(meta.caller);
    try {
      for (let i = 0; i < inputs.length; i++) {
        if (slicer.due()) await slicer.pause(runs, options.cancelled);
        const decidingFrom = performance.now();
        const decided = this.decide(policySet, inputs[i]!);
        // A shared limit backend answers later: the rest waits for each decision (no slices needed), so none is taken past a stop.
        if (decided instanceof Promise) {
          slicer.finished();
          return await this.untilShared(decided, inputs, i, policySet, meta, stop, runs, decidingFrom, started);
        }
        runs.push(this.record(decided, meta, decidingFrom, started));
        if (stop(decided.decision)) break;
      }
    } finally {
      slicer.finished();
    }
    return Promise.all(runs);
  }

  /**
   * Decides a batch once there is room for its rows among the batches being decided
   * (BatchesInFlight), and gives the room back once each of its decisions is recorded
   * or has failed. Let in at once, it is decided in the turn it came (no await between).
   * @throws (rejects) BatchRefused when it is over maxBatchRecordedBytes (the refusal recorded once)
   * @throws (rejects) VerdictError CANCELLED when the caller went away while it waited
   */
  private async withRoom(inputs: readonly CheckInput[], meta: CallMeta, options: BatchOptions, decide: (runs: Promise<CheckResult>[]) => Promise<CheckResult[]>): Promise<CheckResult[]> {
    const measured = measureBatchRecord(inputs, this.maxBatchRecordedBytes, options.field, callBytes(meta));
    if (typeof measured !== 'number') return this.refuseBatch(measured, inputs, meta);
    const admitted = this.batchesInFlight.admit(callerGroup(meta.caller), measured + inputs.length * ROW_IN_MEMORY_BYTES, options.cancelled);
    const release = typeof admitted === 'function' ? admitted : await admitted;
    if (release === null) throw new VerdictError('CANCELLED', 'the caller cancelled the call, or its connection closed, while the batch waited for room among the batches being decided; nothing of it was decided or recorded');
    const runs: Promise<CheckResult>[] = [];
    try {
      return await decide(runs);
    } finally {
      void Promise.allSettled(runs).then(release);
    }
  }

  private async untilShared(
    first: Promise<Decided>,
    inputs: readonly CheckInput[],
    from: number,
    policySet: PolicySet,
    meta: CallMeta,
    stop: (decision: Decision) => boolean,
    runs: Promise<CheckResult>[],
    decidingFrom: number,
    started: number,
  ): Promise<CheckResult[]> {
    let pending: Promise<Decided> | Decided = first;
    for (let i = from; ; ) {
      const decided = await pending;
      runs.push(this.record(decided, meta, decidingFrom, started));
      if (stop(decided.decision) || ++i >= inputs.length) break;
      decidingFrom = performance.now();
      pending = this.decide(policySet, inputs[i]!);
    }
    return Promise.all(runs);
  }

  /** Records a batch refused whole as one error decision (the first principal's id, none of what made it large), then rejects. */
  private async refuseBatch(error: RequestFieldError, inputs: readonly CheckInput[], meta: CallMeta): Promise<never> {
    const first = inputs[0]!;
    const principalId = (first instanceof RefusedRequest ? first.request : first).principal.id;
    const empty = Object.freeze({});
    const input = new InvalidRequest(error, {
      principal: { id: principalId, roles: [], attributes: empty },
      action: '',
      resource: { type: '', id: '', attributes: empty },
      context: { attributes: empty },
    });
    throw new BatchRefused(error, await this.check(input, meta));
  }

  /**
   * A search over the policy set (AuthZEN's subject, resource and action search):
   * `run` asks as many questions as it needs with `decide` — the decide core's
   * completion and evaluation, without rate limits (a search takes no budget) and
   * without a row each — and returns its result and the one row that records the
   * search (the question, what it found). The row is recorded before the result is
   * handed back: a search that cannot be recorded rejects, like any decision. A long
   * `run` asks in the slices `slicer` gives it, like a batch; the policy set stays the one read here.
   */
  async search<T>(
    meta: CallMeta,
    run: (policySet: PolicySet, decide: (request: DecisionRequest) => Decision, slicer: BatchSlicer) => SearchOutcome<T> | Promise<SearchOutcome<T>>,
  ): Promise<{ result: T; decisionId: string }> {
    const started = performance.now();
    const policySet = this.policies.current;
    const slicer = this.turns.forCall(meta.caller);
    let outcome: SearchOutcome<T>;
    try {
      outcome = await run(policySet, (request) => this.decideForSearch(policySet, request), slicer);
    } finally {
      slicer.finished();
    }
    const found = outcome.count > 0;
    const decision: Decision = {
      effect: found ? 'ALLOW' : 'DENY',
      reason: found ? 'ALLOWED_BY_RULE' : 'DENIED_BY_DEFAULT',
      ruleIds: outcome.ruleIds,
      errors: [],
      policyVersion: policySet.version,
    };
    const record = toRecord(outcome.request, decision, { ...meta, details: Object.assign({}, meta.details, { search: outcome.details }) }, started, null);
    await this.log.append(record);
    return { result: outcome.result, decisionId: record.decisionId };
  }

  /**
   * One question of a search, answered as a check of it would be (bounds, suspension,
   * directory completion, the attribute schema, the rules), so a search never finds
   * what a check refuses; only rate limits are left out, since a search takes no budget.
   */
  private decideForSearch(policySet: PolicySet, request: DecisionRequest): Decision {
    const over = this.meter.problem(request);
    if (over !== null) return refusalDecision(invalidRequest(over), policySet.version);
    if (this.suspensions !== null && this.suspensions.size > 0) {
      const suspension = this.suspensions.active(request.principal.id);
      if (suspension !== undefined) return refusalDecision(suspended(suspension), policySet.version);
    }
    const asked = this.meter.heldNullMembers() ? withoutNullMembers(request) : request;
    const spelling = spelledOtherwise(policySet, asked);
    if (spelling !== null) return refusalDecision(invalidRequest(spelling), policySet.version);
    return evaluateAsServed(policySet, completeRequest(policySet, asked));
  }

  /** decide → record → answer. `decidingFrom` times the decision for the log, `callFrom` the call for the observers. */
  private run(policySet: PolicySet, input: CheckInput, meta: CallMeta, decidingFrom: number, callFrom: number): Promise<CheckResult> {
    const decided = this.decide(policySet, input);
    if (decided instanceof Promise) return decided.then((d) => this.record(d, meta, decidingFrom, callFrom));
    return this.record(decided, meta, decidingFrom, callFrom);
  }

  /** The decision for one question: a refused request is not evaluated; only what the rules allow takes rate-limit budget. */
  private decide(policySet: PolicySet, input: CheckInput, shadowAsked?: ShadowInput | null): Decided | Promise<Decided> {
    if (input instanceof RefusedRequest) {
      const refused = refusalDecision(input.refusal, policySet.version);
      // A request the live routes refuse that the shadow's routes map (a new route) is a disagreement too.
      const shadow = shadowAsked ? this.shadowOf(refused, shadowAsked) : undefined;
      return { request: input.request, decision: shadow === undefined ? refused : decisionWith(refused, { shadow }) };
    }
    const over = this.meter.problem(input);
    if (over !== null) {
      // Refused like any invalid request; the log keeps what identifies it, not the bulk that broke a cap.
      return { request: identifying(input, this.meter.limits.maxStringLength), decision: refusalDecision(invalidRequest(over), policySet.version) };
    }
    // An attribute sent as null is unknown, as an absent one is: decided (and recorded) without it.
    const asked = this.meter.heldNullMembers() ? withoutNullMembers(input) : input;
    // A suspended principal is refused whatever it asks; the rules and limits are not asked.
    if (this.suspensions !== null && this.suspensions.size > 0) {
      const suspension = this.suspensions.active(asked.principal.id);
      if (suspension !== undefined) return { request: asked, decision: decisionWith(refusalDecision(suspended(suspension), policySet.version), { suspension }) };
    }
    // A request naming a principal or resource the directories list under another spelling is refused, not decided without their facts.
    const spelling = spelledOtherwise(policySet, asked);
    if (spelling !== null) {
      const refused = refusalDecision(invalidRequest(spelling), policySet.version);
      const shadow = this.shadow === null ? undefined : this.shadowOf(refused, shadowAsked ?? { set: this.shadow.current, input: asked });
      return { request: asked, decision: shadow === undefined ? refused : decisionWith(refused, { shadow }) };
    }
    // A request naming a principal or resource the directories know is decided (and limited, and recorded) with their facts.
    const request = completeRequest(policySet, asked);
    // The attribute schema: a violation refuses the request (reject; recorded as sent) or is recorded beside the decision (warn).
    let decision = evaluateAsServed(policySet, request);
    if (isSchemaRefusal(decision)) return { request: asked, decision };
    // The rules of both sets are compared; a rate limit is not a policy difference.
    const shadow = this.shadow === null ? undefined : this.shadowOf(decision, shadowAsked ?? { set: this.shadow.current, input: asked });
    const directory = request === asked ? null : directorySources(policySet, asked);
    // A limit refuses what the rules allowed, or reports what is left; a shared backend (Redis) answers later.
    if (decision.effect === 'ALLOW' && policySet.limits.length > 0) {
      const outcome = this.limiter.apply(policySet.limits, request);
      if (outcome instanceof Promise) {
        const allowed = decision;
        return outcome.then((o) => afterLimits(request, allowed, o, shadow, directory));
      }
      return afterLimits(request, decision, outcome, shadow, directory);
    }
    if (shadow !== undefined) decision = decisionWith(decision, { shadow });
    return { request, decision, directory };
  }

  /**
   * The shadow set's disagreement with the live decision, if any. Whatever the
   * shadow set does (a refusal, an error, a throw) only ever changes what is
   * recorded beside the live answer, never the answer.
   */
  private shadowOf(live: Decision, asked: ShadowInput): ShadowDecision | undefined {
    let shadow: Decision;
    try {
      const input = asked.input;
      // The shadow set's own attribute schema applies, as it would if it were served.
      shadow = input === null ? shadowError(asked.set) : input instanceof RefusedRequest ? refusalDecision(input.refusal, asked.set.version) : decideAsServed(asked.set, input);
    } catch {
      shadow = shadowError(asked.set);
    }
    return disagreement(live, shadow);
  }

  /** record → answer: a decision that cannot be recorded rejects, and the observers hear of it. */
  private async record(decided: Decided, meta: CallMeta, decidingFrom: number, callFrom: number): Promise<CheckResult> {
    const { request, decision, reserved } = decided;
    const record = toRecord(request, decision, meta, decidingFrom, decided.directory ?? null);
    try {
      await this.log.append(record);
      // Settle may correct a cost only once its decision is recorded.
      if (reserved !== undefined) {
        this.settlements.add(record.decisionId, { caller: meta.caller, principalId: request.principal.id, resourceType: request.resource.type, resourceId: request.resource.id, reservations: reserved }, callerGroup(meta.caller));
      }
    } catch (error) {
      for (const observer of this.observers) {
        try {
          observer.unrecorded?.(error, meta);
        } catch {
          // See DecisionObserver: an observer cannot stop a refusal either.
        }
      }
      throw error;
    }
    const result: CheckResult = { request, decision, decisionId: record.decisionId };
    const observers = this.observers;
    if (observers.length > 0) {
      const seconds = (performance.now() - callFrom) / 1000;
      for (let i = 0; i < observers.length; i++) {
        try {
          observers[i]!.decided?.(result, meta, seconds, record);
        } catch {
          // See DecisionObserver: an observer cannot stop a decision.
        }
      }
    }
    return result;
  }
}


/** What a search found, and how it is recorded: one row, `details.search` saying what was searched and found. */
export interface SearchOutcome<T> {
  readonly result: T;
  /** The question searched: the searched member's id left empty. */
  readonly request: DecisionRequest;
  /** Results found: the row is an allow when there are any, a deny by default when none. */
  readonly count: number;
  /** The rules that decided the results (deduplicated), as the row's rule ids. */
  readonly ruleIds: readonly string[];
  readonly details: Readonly<Record<string, unknown>>;
}

interface Decided {
  readonly request: DecisionRequest;
  readonly decision: Decision;
  /** Which facts the directories supplied (null: none). */
  readonly directory?: DirectorySources | null;
  /** Cost the limits took for an allow, which Settle may correct. */
  readonly reserved?: readonly Reservation[] | undefined;
}

/** The row of a Settle: `settle` on the decision's resource, allowed when corrected, else refused with why. */
function settleRecord(settleId: string, meta: CallMeta, policyVersion: string, started: number, entry: { principalId: string; resourceType: string; resourceId: string; reservations: readonly Reservation[] } | null, decisionId: string, actualUnits: number | undefined, refusal: string | null): DecisionRecord {
  const now = Date.now();
  return {
    decisionId: settleId,
    time: now,
    caller: meta.caller,
    requestId: meta.requestId,
    principalId: entry?.principalId ?? '',
    action: 'settle',
    resourceType: entry?.resourceType ?? '',
    resourceId: entry?.resourceId ?? '',
    effect: refusal === null ? 'ALLOW' : 'DENY',
    reason: refusal === null ? 'ALLOWED_BY_RULE' : 'DENIED_INVALID_REQUEST',
    ruleIds: entry === null ? [] : entry.reservations.map((r) => `limit:${r.limitId}`),
    errors: refusal === null ? [] : [{ ruleId: 'settle', message: refusal }],
    policyVersion,
    request: { principal: { roles: [], attributes: {} }, resource: { attributes: {} }, context: { attributes: {} } },
    latencyUs: Math.round((performance.now() - started) * 1000),
    details: {
      settle: {
        decisionId,
        ...(actualUnits === undefined ? {} : { actualUnits: Number.isFinite(actualUnits) ? actualUnits : String(actualUnits) }),
        ...(entry === null ? {} : { limits: entry.reservations.map((r) => ({ id: r.limitId, reservedUnits: r.units })) }),
      },
    },
  };
}

/** A rule allow after the limits: refused, or carrying the tightest limit's state (and the cost reserved, for Settle). */
function afterLimits(request: DecisionRequest, allowed: Decision, outcome: LimitOutcome | null, shadow: ShadowDecision | undefined, directory: DirectorySources | null): Decided {
  const decision = limited(allowed, outcome);
  const reserved = outcome !== null && outcome.kind === 'allowed' ? outcome.reserved : undefined;
  return { request, decision: shadow === undefined ? decision : decisionWith(decision, { shadow }), directory, reserved };
}

/** An allow after the limits: refused by one, or carrying the tightest limit's state. */
function limited(decision: Decision, outcome: LimitOutcome | null): Decision {
  if (outcome === null) return decision;
  if (outcome.kind === 'error') return refusalDecision(limitError(outcome.limit.id, outcome.message), decision.policyVersion);
  const { limit, rate, remaining, retryAfterMs, resetMs, blockedUntil, offences, backend } = outcome.report;
  const state: LimitState = { limitId: limit.id, quota: rate.count, windowSeconds: rate.periodMs / 1000, remaining, retryAfterMs, resetMs, backend };
  if (outcome.kind === 'allowed') return decisionWith(decision, { limit: state });
  if (blockedUntil !== undefined) {
    return decisionWith(refusalDecision(blocked(limit.id, blockedUntil, offences ?? 1, retryAfterMs), decision.policyVersion), { limit: Object.assign({}, state, { blockedUntil: Math.ceil(blockedUntil), offences }) });
  }
  return decisionWith(refusalDecision(rateLimited(limit.id, rate.text, rate.burst, retryAfterMs), decision.policyVersion), { limit: state });
}

/** The shadow set and the question it is asked (for a gateway request, as its own routes make it); `input` null when preparing it failed. */
interface ShadowInput {
  readonly set: PolicySet;
  readonly input: CheckInput | null;
}

function shadowInput(set: PolicySet, prepare: PrepareCheck): ShadowInput {
  try {
    return { set, input: prepare(set) };
  } catch {
    return { set, input: null };
  }
}

/** What the shadow set decided when it could not decide: an error, never a reason to change the live answer. */
function shadowError(set: PolicySet): Decision {
  return { effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: [], errors: [{ ruleId: '', message: 'the shadow set could not decide this request' }], policyVersion: set.version };
}

/** The shadow set's decision when its effect differs from the live set's; undefined when they agree. */
function disagreement(live: Decision, shadow: Decision): ShadowDecision | undefined {
  if (shadow.effect === live.effect) return undefined;
  return { effect: shadow.effect, reason: shadow.reason, ruleIds: shadow.ruleIds, policyVersion: shadow.policyVersion };
}

/** What the decision log keeps of a limit's state: `details.limit`. */
function limitDetails(state: LimitState): { id: string; remaining: number; retryAfterMs: number; blockedUntil?: number; offences?: number; backend?: string } {
  const details = { id: state.limitId, remaining: state.remaining, retryAfterMs: Math.ceil(state.retryAfterMs), ...(state.backend === undefined ? {} : { backend: state.backend }) };
  return state.blockedUntil === undefined ? details : Object.assign(details, { blockedUntil: state.blockedUntil, offences: state.offences });
}

/** What the decision log keeps of a suspension: `details.suspension` (times in ms since the epoch). */
function suspensionDetails(s: SuspensionState): { alertId: string; alertType: string; since: number; until: number; note: string } {
  return { alertId: s.alertId, alertType: s.alertType, since: s.since, until: s.until, note: s.note };
}

const NOTHING = Object.freeze({});
const NO_ROLES: readonly string[] = Object.freeze([]);

/** A request over a cap as it is recorded: its ids, action and type (cut to `longest`), no roles or attributes. */
function identifying(request: DecisionRequest, longest: number): DecisionRequest {
  const cut = (s: string): string => cutText(s, longest);
  return {
    principal: { id: cut(request.principal.id), roles: NO_ROLES, attributes: NOTHING },
    action: cut(request.action),
    resource: { type: cut(request.resource.type), id: cut(request.resource.id), attributes: NOTHING },
    context: { attributes: NOTHING },
  };
}

/**
 * The row's details: the transport's (a gateway's HTTP method and path), a limit's state, a shadow decision that differs,
 * schema violations warned about, a suspension, which facts the directories supplied.
 */
function detailsOf(decision: Decision, meta: CallMeta, directory: DirectorySources | null): DecisionDetails | null {
  if (decision.limit === undefined && decision.shadow === undefined && decision.schemaViolations === undefined && decision.suspension === undefined && directory === null) return meta.details ?? null;
  // Members set one by one, in this order (a member the transport's details already hold keeps its place):
  // every allowed check under a limit, and every disagreeing one in shadow mode, builds one. Copied with
  // Object.assign, not a spread: a member added to a spread copy takes V8's slow path (decision-with.ts).
  const details: Record<string, unknown> = meta.details === undefined || meta.details === null ? {} : Object.assign({}, meta.details);
  if (decision.schemaViolations !== undefined) details.schema = { enforcement: 'warn', violations: decision.schemaViolations };
  if (directory !== null) details.directory = directory;
  if (decision.suspension !== undefined) details.suspension = suspensionDetails(decision.suspension);
  if (decision.limit !== undefined) details.limit = limitDetails(decision.limit);
  if (decision.shadow !== undefined) details.shadow = decision.shadow;
  return details as DecisionDetails;
}

/** The decision log's row for a decision. */
function toRecord(request: DecisionRequest, decision: Decision, meta: CallMeta, started: number, directory: DirectorySources | null): DecisionRecord {
  return decisionRecord(request, decision, meta, Date.now(), Math.round((performance.now() - started) * 1000), detailsOf(decision, meta, directory));
}

/** What a call adds to every row of it: its caller and request id, as the log stores them. */
function callBytes(meta: CallMeta): number {
  return Buffer.byteLength(meta.caller) + (meta.requestId === null ? 0 : Buffer.byteLength(meta.requestId));
}
