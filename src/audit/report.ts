/**
 * What `verdict audit verify` found, and how it is printed.
 *
 * What each kind of break means (seq is always the first sequence number affected):
 * - changed: a row's content no longer matches its hash, or a row was replaced
 *   by one with a recomputed hash (then the next row, or a signed checkpoint,
 *   no longer agrees with it);
 * - deleted: rows are missing (a gap in seq, or later rows renumbered to close it);
 * - inserted: a row that is not part of the chain sits at seq (later rows shifted);
 * - reordered: rows are intact but in the wrong place;
 * - truncated: the log ends before a signed checkpoint it once had (in the
 *   database or exported with `verdict audit checkpoint --export`);
 * - bad-signature: a checkpoint or prune anchor is not signed by the trusted key;
 * - checkpoint-removed: a signed checkpoint names, as the one signed before it,
 *   a checkpoint the log no longer holds (format v2, checkpoint.ts); seq is the
 *   missing checkpoint's;
 * - replica-mismatch: a checkpoint signed (format v3, checkpoint.ts) in the log
 *   of another replica than the one this log (or the export's header) names:
 *   copied from another replica's log, or the recorded id was changed; seq is
 *   the checkpoint's;
 * - unsigned-header: an export's header is unsigned (format v1: an earlier
 *   release's, or a signed header rewritten as v1), so its range and replica
 *   are unproven; reported only when nothing else broke and unsigned headers
 *   were not accepted (--allow-unsigned-header); seq is 0, the whole export
 *   is affected;
 * - structure: the log's tables are not as verdict makes them (a view for
 *   `decisions`, seq not its rowid, no unique decision_id, a lowered schema
 *   version) or SQLite's integrity check fails (a stale index); seq is 0, the
 *   whole log is affected.
 */

export type BreakKind = 'changed' | 'deleted' | 'inserted' | 'reordered' | 'truncated' | 'bad-signature' | 'checkpoint-removed' | 'replica-mismatch' | 'unsigned-header' | 'structure';

export interface VerifyBreak {
  readonly kind: BreakKind;
  readonly seq: number;
  readonly message: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  /** What was verified: the database or export path. */
  readonly source: string;
  /** Rows whose hash was recomputed and matched, up to the break if there is one. */
  readonly rows: number;
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  /** Where the chain starts: the first row, or a prune anchor, or (export) its first row. */
  readonly start: { readonly seq: number; readonly from: 'genesis' | 'anchor' | 'checkpoint' | 'unanchored' };
  readonly keyIds: readonly string[];
  readonly checkpoints: { readonly total: number; readonly verified: number; readonly lastSeq: number | null; readonly lastTimeMs: number | null };
  /** Rows after the last verified checkpoint: chained, but not yet signed. */
  readonly unsignedRows: number;
  /** The exported checkpoint given with --from-checkpoint, and how it compared. */
  readonly external: { readonly seq: number; readonly status: 'matched' | 'before-anchor' } | null;
  readonly break: VerifyBreak | null;
  readonly warnings: readonly string[];
  readonly seconds: number;
  /** A log's SQLite integrity check: run (and passed, unless the break says otherwise) or skipped with --chain-only; absent for an export. */
  readonly storage?: 'checked' | 'skipped';
  /** The replica whose log it is (decisions/replica.ts): what the log or the export's header records; null when it records none. */
  readonly replicaId?: string | null;
  /**
   * An export's header (absent for a log): `signed` when its signature verified
   * with a trusted key and the rows are the ones it signs; `unsigned` when it
   * carries no signature (format v1), so its claims are unproven; `failed` when
   * its signature or signed range does not hold (the break says how); `missing`
   * when the export has no header line.
   */
  readonly header?: 'signed' | 'unsigned' | 'failed' | 'missing';
}

/** The report as `verdict audit verify` prints it; `keySource` says where the trusted keys came from. */
export function formatReport(report: VerifyReport, keySource: string, isExport: boolean): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const lines: string[] = [`verdict audit verify ${report.source}`];
  const row = (label: string, text: string): void => {
    lines.push(`  ${label.padEnd(12)} ${text}`);
  };
  if (report.replicaId !== undefined) row('replica', report.replicaId ?? 'unnamed (no replica id recorded)');
  row('key', report.keyIds.length > 0 ? `${report.keyIds.join(', ')} from ${keySource}` : 'none (no checkpoints to check)');
  const from = { genesis: 'the start (genesis)', anchor: `the prune anchor at seq ${n(report.start.seq)}`, checkpoint: `the checkpoint at seq ${n(report.start.seq)}`, unanchored: `seq ${n(report.start.seq)} (unanchored)` }[report.start.from];
  const range = report.lastSeq === null ? 'no rows' : `${n(report.rows)} rows, seq ${n(report.start.seq + 1)}..${n(report.lastSeq)}`;
  // An unsigned header is refused only once the chain and checkpoints verified to the end.
  const chainIntact = report.ok || report.break?.kind === 'unsigned-header';
  row('chain', `${range} from ${from}${chainIntact ? ': intact' : ' verified before the break'}`);
  const cp = report.checkpoints;
  if (!chainIntact) {
    row('checkpoints', `${n(cp.verified)} of ${n(cp.total)} verified before the break`);
  } else if (cp.total > 0 || report.start.from === 'anchor') {
    const last = cp.lastSeq === null ? 'none after the anchor yet' : `last at seq ${n(cp.lastSeq)} (${new Date(cp.lastTimeMs ?? 0).toISOString()})`;
    row('checkpoints', `${n(cp.verified)} of ${n(cp.total)} verified; ${last}; ${n(report.unsignedRows)} row${report.unsignedRows === 1 ? '' : 's'} after it not yet signed`);
  } else if (report.lastSeq !== null) {
    row('checkpoints', 'none');
  }
  if (report.external !== null) {
    row('exported', report.external.status === 'matched' ? `checkpoint at seq ${n(report.external.seq)} matched` : `checkpoint at seq ${n(report.external.seq)} predates the pruned rows (signature valid)`);
  }
  if (report.header !== undefined) row('header', HEADER_STATES[report.header]);
  if (report.storage !== undefined && report.ok) row('storage', report.storage === 'checked' ? "SQLite's integrity check: ok" : 'not checked (--chain-only)');
  const rate = report.seconds > 0 ? Math.round(report.rows / report.seconds) : 0;
  row('speed', `${n(report.rows)} rows in ${report.seconds.toFixed(2)} s (${n(rate)} rows/s)`);
  for (const warning of report.warnings) row('warning', warning);
  if (report.ok && report.header === 'unsigned') {
    // Not "the export is intact": what its header says about the range was never proven.
    lines.push("OK (header not authenticated): the export's rows and checkpoints are intact; its unsigned header was accepted with --allow-unsigned-header");
  } else if (report.ok) {
    lines.push(`OK: the ${isExport ? 'export' : 'decision log'} is intact`);
  } else if (report.break !== null) {
    const where = report.break.kind === 'structure' || report.break.kind === 'unsigned-header' ? '' : ` at seq ${report.break.seq}`;
    lines.push(`FAILED: ${report.break.kind}${where}: ${report.break.message}`);
  }
  return `${lines.join('\n')}\n`;
}

const HEADER_STATES: Record<NonNullable<VerifyReport['header']>, string> = {
  signed: 'signed; the signature and the range it signs verified',
  unsigned: 'not authenticated: unsigned (format verdict.export.v1); its range and replica are its own claims',
  failed: 'does not verify (below)',
  missing: 'missing (below)',
};
