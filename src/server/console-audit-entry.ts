// The console's audit thread (see console-audit.ts): verifies the decision log's
// chain and checkpoints away from the event loop that answers checks, the first
// time in full and then only the rows recorded since, with a full pass again
// every so often.
import type { KeyObject } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { heldCheckpointSeqs, namesRemovedCheckpoint } from '../audit/checkpoints.js';
import { hasCheckpointTable, openLogFile, readCheckpointLinks, readCheckpoints, replicaIdColumn, type CheckpointLink, type LogFile } from '../audit/log-file.js';
import { verifyLog } from '../audit/verify.js';
import { newClaims, sqliteJsonMatchesJs, verifyBlocks } from '../audit/verify-range.js';
import { checkpointSignatureValid, type Checkpoint } from '../decisions/checkpoint.js';
import { keyIdOf, readPublicKey } from '../decisions/keys.js';
import { recordedReplicaId } from '../decisions/replica.js';
import { messageOf } from '../errors.js';
import type { AuditState, AuditThreadData } from './console-audit.js';
import { runInBackground } from '../thread-priority.js';

const port = parentPort;
if (port === null) throw new Error('console-audit-entry.js runs as a worker thread');

// Background work: the thread answering checks gets the CPU first (thread-priority.ts).
runInBackground();

const { path, publicKeyPath, fullEveryMs } = workerData as AuditThreadData;

/** What the last pass proved: the chain is intact through `seq`, whose hash is `hash`. */
interface Verified {
  readonly seq: number;
  readonly hash: Buffer;
  readonly anchorSeq: number | null;
  readonly rows: number;
  readonly startSeq: number;
  readonly startFrom: AuditState['start']['from'];
  readonly checkpointsVerified: number;
  readonly checkpointsTotal: number;
  readonly lastCheckpoint: { readonly seq: number; readonly timeMs: number; readonly keyId: string } | null;
  readonly fullAt: number;
}

let verified: Verified | null = null;
let key: KeyObject | null = null;

port.on('message', () => {
  void refresh().then((state) => port.postMessage(state));
});

async function refresh(): Promise<AuditState> {
  const now = Date.now();
  try {
    key ??= publicKeyPath === null ? null : readPublicKey(publicKeyPath);
    if (verified !== null && now - verified.fullAt < fullEveryMs) {
      const incremental = extend(verified);
      if (incremental !== null) {
        verified = incremental;
        return stateOf(incremental, 'incremental', now);
      }
    }
    return await full(now);
  } catch (error) {
    verified = null;
    return { checkedAt: now, pass: 'full', ok: false, verifiedThrough: null, rows: 0, start: { seq: 0, from: 'genesis' }, lastCheckpoint: null, checkpoints: { total: 0, verified: 0 }, unsignedRows: 0, break: null, lastFullAt: null, error: messageOf(error) };
  }
}

/** `verdict audit verify` over the whole log; remembers where it got to when the chain is intact. */
async function full(now: number): Promise<AuditState> {
  verified = null;
  // SQLite's integrity check (seconds a million rows, beside a serving process) is left to `verdict audit verify`.
  const report = await verifyLog(path, { publicKeys: key ? [key] : [], workers: 1, checkStorage: false });
  const last = report.checkpoints.lastSeq;
  const state: AuditState = {
    checkedAt: now,
    pass: 'full',
    ok: report.ok,
    verifiedThrough: report.lastSeq ?? (report.start.seq > 0 ? report.start.seq : null),
    rows: report.rows,
    start: report.start,
    lastCheckpoint: last === null ? null : { seq: last, timeMs: report.checkpoints.lastTimeMs ?? 0, keyId: key ? keyIdOf(key) : '' },
    checkpoints: { total: report.checkpoints.total, verified: report.checkpoints.verified },
    unsignedRows: report.unsignedRows,
    break: report.break,
    lastFullAt: now,
    error: null,
  };
  if (report.ok) {
    const log = openLogFile(path);
    try {
      const anchorSeq = anchorOf(log);
      const seq = report.lastSeq ?? report.start.seq;
      const hash = seq === 0 ? null : storedHash(log, seq);
      if (seq === 0 || hash !== null) {
        verified = {
          seq,
          hash: hash ?? Buffer.alloc(32),
          anchorSeq,
          rows: report.rows,
          startSeq: report.start.seq,
          startFrom: report.start.from,
          checkpointsVerified: report.checkpoints.verified,
          checkpointsTotal: report.checkpoints.total,
          lastCheckpoint: state.lastCheckpoint,
          fullAt: now,
        };
      }
    } finally {
      log.db.close();
    }
  }
  return state;
}

/**
 * Verify only the rows and checkpoints recorded since `from`. Null when that
 * cannot be done (the log was pruned or its verified tip changed, a break, a
 * bad checkpoint): then a full pass finds and names what happened.
 */
function extend(from: Verified): Verified | null {
  const log = openLogFile(path);
  try {
    if (anchorOf(log) !== from.anchorSeq) return null;
    if (from.seq > 0) {
      const tipHash = storedHash(log, from.seq);
      if (tipHash === null || !tipHash.equals(from.hash)) return null;
    }
    const tip = (log.db.prepare('SELECT max(seq) FROM decisions').pluck().get() as number | null) ?? from.seq;
    // A checkpoint removed since the last pass (an old one as well as the last verified) is a break the full pass names.
    // That needs every checkpoint's seq and previous_seq; the full rows only of those verified now.
    if (checkpointRemoved(readCheckpointLinks(log), from)) return null;
    // A checkpoint naming another replica than the log records (signed or not) is for the full pass to judge and name.
    if (namesOtherReplica(log)) return null;
    const sinceCheckpoint = from.lastCheckpoint?.seq ?? from.startSeq;
    const checkpoints = sinceCheckpoint < tip ? readCheckpoints(log, { from: sinceCheckpoint + 1, to: tip }).filter((c) => c.kind === 'checkpoint') : [];
    const hashes = new Map<number, Buffer>();
    let seq = from.seq;
    let hash = from.hash;
    if (tip > from.seq) {
      if (from.seq === 0) return null;
      const plan = { path, from: from.seq + 1, to: tip, prev: from.hash, blockRows: tip - from.seq, hashesAt: [...checkpoints.map((c) => c.seq), tip], fast: sqliteJsonMatchesJs(log.db), claims: newClaims(1) };
      const [result] = verifyBlocks(log.db, plan);
      if (result === undefined || result.failure !== null) return null;
      for (const [at, h] of result.hashesAt) hashes.set(at, Buffer.from(h));
      const tipComputed = hashes.get(tip);
      if (tipComputed === undefined) return null;
      seq = tip;
      hash = tipComputed;
    }
    let checkpointsVerified = from.checkpointsVerified;
    let lastCheckpoint = from.lastCheckpoint;
    for (const checkpoint of checkpoints) {
      // A checkpoint at or before the rows verified earlier is compared with their stored (verified) hash.
      const chainHash = hashes.get(checkpoint.seq) ?? (checkpoint.seq <= from.seq ? storedHash(log, checkpoint.seq) : null);
      if (!signedBy(checkpoint) || chainHash === null || !chainHash.equals(Buffer.from(checkpoint.hash))) return null;
      checkpointsVerified++;
      lastCheckpoint = { seq: checkpoint.seq, timeMs: checkpoint.timeMs, keyId: checkpoint.keyId };
    }
    return { ...from, seq, hash, rows: from.rows + (seq - from.seq), checkpointsVerified, checkpointsTotal: from.checkpointsTotal + checkpoints.length, lastCheckpoint };
  } finally {
    log.db.close();
  }
}

/**
 * Whether a checkpoint the last pass relied on is gone: the last one verified,
 * or one a held v2 checkpoint names as signed before it (the rule full
 * verification applies, checkpoints.ts).
 */
function checkpointRemoved(checkpoints: readonly CheckpointLink[], from: Verified): boolean {
  // The anchor is the one the last pass started from: extend has found it still the log's latest.
  const held = heldCheckpointSeqs(checkpoints, from.anchorSeq === null ? null : { seq: from.anchorSeq });
  if (from.lastCheckpoint !== null && !held.has(from.lastCheckpoint.seq)) return true;
  return checkpoints.some((c) => c.seq > from.startSeq && namesRemovedCheckpoint(c, from.startSeq, held));
}

function namesOtherReplica(log: LogFile): boolean {
  let recorded: string | null;
  try {
    recorded = recordedReplicaId(log.db, path);
  } catch {
    return true;
  }
  const column = replicaIdColumn(log);
  if (!hasCheckpointTable(log) || column === 'NULL') return false;
  // The stored id alone, not the full rows: any checkpoint or anchor naming another replica (or holding anything but text).
  return log.db.prepare(`SELECT 1 FROM checkpoints WHERE ${column} IS NOT NULL AND ${column} IS NOT ? LIMIT 1`).pluck().get(recorded) !== undefined;
}

function signedBy(checkpoint: Checkpoint): boolean {
  return key !== null && checkpointSignatureValid(checkpoint, key);
}

function stateOf(v: Verified, pass: AuditState['pass'], now: number): AuditState {
  return {
    checkedAt: now,
    pass,
    ok: true,
    verifiedThrough: v.seq > 0 ? v.seq : null,
    rows: v.rows,
    start: { seq: v.startSeq, from: v.startFrom },
    lastCheckpoint: v.lastCheckpoint,
    checkpoints: { total: v.checkpointsTotal, verified: v.checkpointsVerified },
    unsignedRows: Math.max(0, v.seq - (v.lastCheckpoint?.seq ?? v.startSeq)),
    break: null,
    lastFullAt: v.fullAt,
    error: null,
  };
}

function anchorOf(log: LogFile): number | null {
  if (log.schemaVersion < 2) return null;
  return log.db.prepare("SELECT max(seq) FROM checkpoints WHERE kind = 'anchor'").pluck().get() as number | null;
}

function storedHash(log: LogFile, seq: number): Buffer | null {
  const value = log.db.prepare('SELECT CAST(hash AS BLOB) FROM decisions WHERE seq = ?').pluck().get(seq) as Buffer | null | undefined;
  return value ?? null;
}
