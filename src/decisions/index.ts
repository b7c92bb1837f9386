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
  type AuditStatus,
  type CheckpointOptions,
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
  RAW_COLUMNS,
  rawChainHash,
  type RawRow,
} from './chain.js';
export { toRow, type DecisionRow, type SequencedRow } from './row.js';
export { SCHEMA_VERSION, checkReadable, migrate, readSchemaVersion } from './schema.js';
export {
  CHECKPOINT_FORMAT,
  checkpointMessage,
  checkpointSignatureValid,
  readCheckpointExport,
  signCheckpoint,
  type Checkpoint,
  type CheckpointBody,
  type CheckpointExport,
  type CheckpointKind,
} from './checkpoint.js';
export { defaultKeyPaths, keyIdOf, loadHmacKey, loadOrCreateSigningKey, readPrivateKey, readPublicKey, type CheckpointSigner } from './keys.js';
export { AUDIT_DEFAULTS, AUDIT_ENVIRONMENT_KEYS, type AuditConfig } from './audit-config.js';
export { loadAudit, type AuditSettings, type AuditSetup } from './audit-setup.js';
export { HMAC_PREFIX, SensitiveAttributes, attributeFilter, hashAttributeValue, parseAttributePath } from './sensitive.js';
export { EXPORT_FORMAT, exportLog, exportLogToFile, readExportFile, type ExportOptions, type ExportSummary } from './export.js';
export { pruneLog, type PruneOptions, type PruneResult } from './prune.js';
export { verifyExport, verifyLog, type BreakKind, type VerifyBreak, type VerifyOptions, type VerifyReport } from './verify.js';
