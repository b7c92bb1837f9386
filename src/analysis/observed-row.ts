// The detectors' view of rows as the decision log's writer receives them (flat
// values, decisions/row.ts): how the `--workers` primary shows every worker's
// decisions to one set of detectors, in the order they are committed.

import { COLUMNS, type RowValue } from '../decisions/columns.js';
import { ROW_WIDTH } from '../decisions/row.js';
import type { DecisionDetails } from '../decisions/record.js';
import type { ConditionError, Effect, Reason } from '../types.js';
import type { ObservedDecision } from './detectors.js';

type Key = (typeof COLUMNS)[number]['key'];

/** Where each column sits in a row's values. */
const AT = Object.fromEntries(COLUMNS.map((column, k) => [column.key, k])) as Record<Key, number>;

/**
 * One stored row as the detectors read it. The JSON columns are parsed only
 * when read: only refused authentications read them, so the rows of ordinary
 * checks cost the primary no JSON parsing.
 */
class ObservedRow implements ObservedDecision {
  readonly decisionId: string;
  readonly time: number;
  readonly caller: string;
  readonly principalId: string;
  readonly action: string;
  readonly resourceType: string;
  readonly resourceId: string;
  readonly effect: Effect;
  readonly reason: Reason;
  private parsedErrors: readonly ConditionError[] | undefined;
  private parsedDetails: DecisionDetails | null | undefined;

  constructor(
    private readonly errorsText: string,
    private readonly detailsText: string | null,
    values: readonly RowValue[],
    offset: number,
  ) {
    this.decisionId = values[offset + AT.decisionId] as string;
    this.time = values[offset + AT.timeMs] as number;
    this.caller = values[offset + AT.caller] as string;
    this.principalId = values[offset + AT.principalId] as string;
    this.action = values[offset + AT.action] as string;
    this.resourceType = values[offset + AT.resourceType] as string;
    this.resourceId = values[offset + AT.resourceId] as string;
    this.effect = values[offset + AT.effect] as Effect;
    this.reason = values[offset + AT.reason] as Reason;
  }

  get errors(): readonly ConditionError[] {
    this.parsedErrors ??= JSON.parse(this.errorsText) as ConditionError[];
    return this.parsedErrors;
  }

  get details(): DecisionDetails | null {
    if (this.parsedDetails === undefined) this.parsedDetails = this.detailsText === null ? null : (JSON.parse(this.detailsText) as DecisionDetails);
    return this.parsedDetails;
  }
}

/**
 * Shows the rows of a flat batch (already checked by checkBatch) to `observe`,
 * in order, skipping those in `skip` (rows the database refused).
 */
export function observeRows(values: readonly RowValue[], skip: ReadonlySet<number>, observe: (decision: ObservedDecision) => void): void {
  for (let offset = 0, index = 0; offset < values.length; offset += ROW_WIDTH, index++) {
    if (skip.has(index)) continue;
    observe(new ObservedRow(values[offset + AT.errors] as string, values[offset + AT.details] as string | null, values, offset));
  }
}
