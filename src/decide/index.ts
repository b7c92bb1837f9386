/**
 * The decide core's public face: the one path to a decision (DecisionPipeline),
 * the request and call types transports speak to it, and the refusals.
 */
export { DecisionPipeline, type BatchOptions, type DecisionObserver, type PipelineOptions, type PolicySource, type PrepareCheck, type SearchOutcome, type SettleOutcome, MAX_SETTLE_UNITS } from './pipeline.js';
export { CONSTRUCTOR_KEY_PROBLEM, DEFAULT_REQUEST_LIMITS, PROTO_KEY_PROBLEM, RequestMeter, type RequestLimits } from './bounds.js';
export { InvalidRequest, RefusedRequest, RequestFieldError, type CallMeta, type CheckInput, type CheckResult } from './request.js';
export {
  AUTHN_RULE_ID,
  REQUEST_RULE_ID,
  ROUTE_RULE_ID,
  SUSPENSION_RULE_ID,
  blocked,
  invalidRequest,
  limitError,
  limitRuleId,
  noRoute,
  notAPep,
  rateLimited,
  refusalDecision,
  selfStatedProperties,
  suspended,
  unauthenticated,
  unroutable,
  type Refusal,
} from './refusals.js';
export { Suspensions, bySuspensionOrder, type SuspensionListener } from './suspensions.js';
export { newDecisionId } from './decision-id.js';
export { BATCH_SLICE_MS, BatchSlicer, DecidingTurns } from './slices.js';
export { decisionRecord } from './record.js';
export { BATCH_RECORD_FACTOR, BatchRefused, batchRecordError, DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT, DEFAULT_MAX_BATCH_RECORDED_BYTES } from './batch-budget.js';
