/**
 * The decision log: the durable, hash-chained record of every decision.
 *
 * @example
 * import { DecisionLog, queryDecisions } from './decisions/index.js';
 * const log = DecisionLog.open('data/decisions.db');
 * await log.append(record);
 * queryDecisions('data/decisions.db', { principalId: 'dana', effect: 'DENY' });
 */
export type { DecisionRecord } from './record.js';
export {
  DecisionLog,
  type CommitStats,
  type DecisionLogMode,
  type DecisionLogOptions,
  type HealthState,
  type WriteFailure,
} from './log.js';
export {
  DEFAULT_LIMIT,
  DecisionReader,
  getDecision,
  queryDecisions,
  type DecisionFilters,
  type DecisionSource,
  type StoredDecision,
} from './query.js';
export {
  CANONICAL_FORMAT,
  GENESIS_HASH,
  canonicalRowBytes,
  chainHash,
  verifyChain,
  type ChainProblem,
  type ChainVerification,
  type ChainedRow,
} from './chain.js';
export { toRow, type DecisionRow, type SequencedRow } from './row.js';
export { SCHEMA_VERSION, checkReadable, migrate, readSchemaVersion } from './schema.js';
