import { VerdictError, messageOf } from '../errors.js';
import type { DecisionRecord } from './record.js';
import type { SensitiveAttributes } from './sensitive.js';

/**
 * A decision as it is stored: one value per column of `decisions`, JSON columns
 * already serialised. These exact values (after a round trip through SQLite) are
 * what the hash chain covers, so everything that SQLite could change on the way
 * in — fractional integers, lone UTF-16 surrogates — is normalised here first.
 */
export interface DecisionRow {
  readonly decisionId: string;
  readonly timeMs: number;
  readonly caller: string;
  readonly requestId: string | null;
  readonly principalId: string;
  readonly action: string;
  readonly resourceType: string;
  readonly resourceId: string;
  readonly effect: string;
  readonly reason: string;
  /** JSON text of the rule id array. */
  readonly ruleIds: string;
  /** JSON text of the condition error array. */
  readonly errors: string;
  readonly policyVersion: string;
  /** JSON text of the request's roles and attributes. */
  readonly request: string;
  readonly latencyUs: number;
}

/** A stored row together with its place in the log. */
export interface SequencedRow extends DecisionRow {
  readonly seq: number;
}

// SQLite stores text as UTF-8, where a lone surrogate cannot survive: it would
// read back as U+FFFD and the row would no longer match its hash.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function text(value: string): string {
  // isWellFormed is a native scan; the regex runs only for the rare string that needs it.
  return value.isWellFormed() ? value : value.replace(LONE_SURROGATE, '\uFFFD');
}

function optionalText(value: string | null): string | null {
  return value === null || value === undefined ? null : text(value);
}

// JSON.stringify already escapes lone surrogates, so JSON columns need no more.
function json(value: unknown): string {
  return JSON.stringify(value) ?? 'null';
}

/**
 * Serialise a record for the writer. Throws VerdictError('INTERNAL') when the
 * record cannot be stored faithfully, so that one broken record fails alone
 * instead of failing the whole batch it would have joined.
 */
export function toRow(record: DecisionRecord): DecisionRow {
  if (!Number.isFinite(record.time)) {
    throw new VerdictError('INTERNAL', `decision ${record.decisionId}: time ${record.time} is not a finite number of milliseconds`);
  }
  if (!Number.isFinite(record.latencyUs)) {
    throw new VerdictError('INTERNAL', `decision ${record.decisionId}: latencyUs ${record.latencyUs} is not a finite number`);
  }
  try {
    return {
      decisionId: text(record.decisionId),
      timeMs: Math.trunc(record.time),
      caller: text(record.caller),
      requestId: optionalText(record.requestId),
      principalId: text(record.principalId),
      action: text(record.action),
      resourceType: text(record.resourceType),
      resourceId: text(record.resourceId),
      effect: text(record.effect),
      reason: text(record.reason),
      ruleIds: json(record.ruleIds),
      errors: json(record.errors),
      policyVersion: text(record.policyVersion),
      request: json(record.request),
      latencyUs: Math.round(record.latencyUs),
    };
  } catch (error) {
    // A BigInt or a cycle in the attributes, or a missing field from an untyped caller.
    throw new VerdictError('INTERNAL', `decision ${String(record.decisionId)} cannot be serialised for the decision log: ${messageOf(error)}`, {
      cause: error,
    });
  }
}

/**
 * The row to store for a decision: sensitive attributes replaced by their HMAC
 * first, so their raw values never reach a row, a writer or the file.
 * @throws VerdictError INTERNAL when the record cannot be stored faithfully
 */
export function storedRow(record: DecisionRecord, sensitive: SensitiveAttributes | null): DecisionRow {
  try {
    return toRow(sensitive === null ? record : sensitive.apply(record));
  } catch (error) {
    if (error instanceof VerdictError) throw error;
    throw new VerdictError('INTERNAL', `decision ${String(record.decisionId)} cannot be recorded: ${messageOf(error)}`, { cause: error });
  }
}

/** What an append to a closed log rejects with. */
export function closedLogError(path: string): VerdictError {
  return new VerdictError('DECISION_LOG_UNAVAILABLE', `the decision log ${path} is closed; the decision cannot be recorded`);
}
