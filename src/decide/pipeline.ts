// The decide -> record -> answer path every transport takes (DecisionPipeline),
// and the observers told of each decision.

import type { DecisionSink } from '../decisions/log-client.js';
import type { DecisionRecord } from '../decisions/record.js';
import { evaluate } from '../engine/evaluate.js';
import type { PolicySet } from '../policy/policy-set.js';
import type { Decision, DecisionRequest } from '../types.js';
import { RequestMeter, type RequestLimits } from './bounds.js';
import { newDecisionId } from './decision-id.js';
import { invalidRequest, refusalDecision } from './refusals.js';
import { RefusedRequest, type CallMeta, type CheckInput, type CheckResult } from './request.js';

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
  /** A decision was recorded and is about to be answered; `seconds` since the call began, the commit included. */
  decided?(result: CheckResult, meta: CallMeta, seconds: number): void;
  /** A decision could not be recorded, so it is refused (the caller gets UNAVAILABLE or 503). */
  unrecorded?(error: unknown, meta: CallMeta): void;
}

export interface PipelineOptions {
  /** Caps on the size of a request (bounds.ts); a request over one is refused and recorded, never evaluated. */
  readonly requestLimits?: RequestLimits;
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

  constructor(
    private readonly policies: PolicySource,
    private readonly log: DecisionSink,
    options: PipelineOptions = {},
  ) {
    this.meter = new RequestMeter(options.requestLimits);
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
    return this.run(this.policies.current, input, meta, started, started);
  }

  /**
   * Decides and records the questions of one call, one result per input, in order,
   * all with the same policy set. They are appended in one turn, so they share a
   * commit. Each item's decision latency is its own; the observers' time is the call's.
   */
  checkBatch(inputs: readonly CheckInput[], meta: CallMeta): Promise<CheckResult[]> {
    const started = performance.now();
    const policySet = this.policies.current;
    return Promise.all(inputs.map((input) => this.run(policySet, input, meta, performance.now(), started)));
  }

  /** Like check, for a question that needs the policy set to be asked (see PrepareCheck). */
  checkWith(prepare: PrepareCheck, meta: CallMeta): Promise<CheckResult> {
    const started = performance.now();
    const policySet = this.policies.current;
    return this.run(policySet, prepare(policySet), meta, started, started);
  }

  /** decide → record → answer. `decidingFrom` times the decision for the log, `callFrom` the call for the observers. */
  private async run(policySet: PolicySet, input: CheckInput, meta: CallMeta, decidingFrom: number, callFrom: number): Promise<CheckResult> {
    let request: DecisionRequest;
    let decision: Decision;
    if (input instanceof RefusedRequest) {
      request = input.request;
      decision = refusalDecision(input.refusal, policySet.version);
    } else {
      const over = this.meter.problem(input);
      if (over === null) {
        request = input;
        decision = evaluate(policySet, input);
        // Stages after the engine go here: a rate limit refuses what the rules allowed (refusals.ts).
      } else {
        // Refused like any invalid request; the log keeps what identifies it, not the bulk that broke a cap.
        request = identifying(input, this.meter.limits.maxStringLength);
        decision = refusalDecision(invalidRequest(over), policySet.version);
      }
    }
    const record = toRecord(request, decision, meta, decidingFrom);
    try {
      await this.log.append(record);
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
          observers[i]!.decided?.(result, meta, seconds);
        } catch {
          // See DecisionObserver: an observer cannot stop a decision.
        }
      }
    }
    return result;
  }
}

const NOTHING = Object.freeze({});
const NO_ROLES: readonly string[] = Object.freeze([]);

/** A request over a cap as it is recorded: its ids, action and type (cut to `longest`), no roles or attributes. */
function identifying(request: DecisionRequest, longest: number): DecisionRequest {
  const cut = (s: string): string => (s.length <= longest ? s : `${s.slice(0, longest)}…`);
  return {
    principal: { id: cut(request.principal.id), roles: NO_ROLES, attributes: NOTHING },
    action: cut(request.action),
    resource: { type: cut(request.resource.type), id: cut(request.resource.id), attributes: NOTHING },
    context: { attributes: NOTHING },
  };
}

/** The decision log's row for a decision. */
function toRecord(request: DecisionRequest, decision: Decision, meta: CallMeta, started: number): DecisionRecord {
  const now = Date.now();
  return {
    decisionId: newDecisionId(now),
    time: now,
    caller: meta.caller,
    requestId: meta.requestId,
    principalId: request.principal.id,
    action: request.action,
    resourceType: request.resource.type,
    resourceId: request.resource.id,
    effect: decision.effect,
    reason: decision.reason,
    ruleIds: decision.ruleIds,
    errors: decision.errors,
    policyVersion: decision.policyVersion,
    request: {
      principal: { roles: request.principal.roles, attributes: request.principal.attributes },
      resource: { attributes: request.resource.attributes },
      context: { attributes: request.context.attributes },
    },
    latencyUs: Math.round((performance.now() - started) * 1000),
    details: meta.details ?? null,
  };
}
