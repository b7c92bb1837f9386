import { createPublicKey, sign, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { latestCheckpoint, readCheckpointExport, toExport, writeCheckpointExport } from '../audit/checkpoint-export.js';
import { exportLog, exportLogToFile } from '../audit/export.js';
import { pruneLog } from '../audit/prune.js';
import { formatReport, type VerifyReport } from '../audit/report.js';
import { verifyExport, verifyLog } from '../audit/verify.js';
import { checkpointSignatureValid } from '../decisions/checkpoint.js';
import { defaultKeyPaths, keyIdOf, publicKeyPem, readPrivateKey, readPublicKey, type CheckpointSigner } from '../decisions/keys.js';
import { VerdictError, messageOf } from '../errors.js';
import { parseTime } from './time.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';

const DEFAULT_DB = 'data/decisions.db';

const HELP = `Usage: verdict audit <command> [options]

The decision log's audit trail: every row is hash-chained (SHA-256) and the
server signs checkpoints of the chain (Ed25519). These commands check and
manage it; they open the log read-only unless they say otherwise, so they are
safe while the server runs.

Commands:
  verify      recompute the chain and check every signature; name the first break
  checkpoint  print or export the latest signed checkpoint, to keep elsewhere
  export      write rows with their hashes and checkpoints as JSON lines (for a SIEM)
  prune       remove old rows, keeping a signed anchor so the rest still verifies
  pubkey      print the public key that verifies the checkpoints

Run "verdict audit <command> --help" for its options.
`;

const VERIFY_HELP = `Usage: verdict audit verify [--db FILE | --export FILE [--allow-unsigned-header]] [--pubkey FILE]... [--from-checkpoint FILE] [--workers N] [--chain-only] [--json]

Recomputes the hash chain, checks every checkpoint and prune anchor signature,
checks that the log's tables are as verdict makes them and runs SQLite's
integrity check, and reports the first break with its kind and sequence number:
changed, deleted, inserted, reordered, truncated (after a known checkpoint),
bad-signature, checkpoint-removed, replica-mismatch or structure. An export
whose header is unsigned fails as unsigned-header: see --allow-unsigned-header.

Options:
  --db FILE               the decision log (default: ${DEFAULT_DB})
  --export FILE           verify a JSONL export (verdict audit export) instead of a log
  --allow-unsigned-header with --export: accept an unsigned header (format verdict.export.v1,
                          written by releases before headers were signed). Its range, replica
                          and the rows after the last checkpoint are then taken on trust, as a
                          signed header rewritten as v1 would be too; the report says so
  --pubkey FILE           trusted public key (PEM); repeat for rotated keys. Default:
                          the key in an exported checkpoint given with --from-checkpoint,
                          else audit-signing-key.pub.pem next to the log
  --from-checkpoint FILE  a checkpoint exported earlier (verdict audit checkpoint --export):
                          the log must still contain it, so a cut-off tail shows
  --workers N             threads for a large log (default: one per core, at most 4)
  --chain-only            skip SQLite's integrity check (about 2 s a million rows), which
                          proves the indexes queries read through hold the chained rows
  --json                  print the report as one JSON object
  -h, --help              this text

Exit codes: 0 intact, 1 a break was found (or an export's header is unsigned), 2 usage error,
4 the log or a key cannot be read.
`;

const CHECKPOINT_HELP = `Usage: verdict audit checkpoint [--db FILE] [--export FILE] [--pubkey FILE]

Prints the latest signed checkpoint of the log, or writes it to FILE with the
public key that verifies it. Keep that file somewhere the log's host cannot
write (another machine, a ticket, object storage with retention): then
"verdict audit verify --from-checkpoint FILE" detects rows removed from the end.

Options:
  --db FILE        the decision log (default: ${DEFAULT_DB})
  --export FILE    write the checkpoint to FILE
  --pubkey FILE    the public key (default: audit-signing-key.pub.pem next to the log)
  -h, --help       this text

Exit codes: 0 ok, 1 the latest checkpoint does not verify, 2 usage error, 4 unreadable log or key.
`;

const EXPORT_HELP = `Usage: verdict audit export [--db FILE] [--since TIME] [--until TIME] [--format jsonl] [--out FILE] [--signing-key FILE]

Writes decisions as JSON lines, each with its seq, prev_hash and hash, with the
signed checkpoints in between, for a SIEM. "verdict audit verify --export FILE"
verifies such a file on its own. Rows are contiguous by seq: from the first row
made at or after --since to the last row before the first made at or after --until.
The header line (range, replica, the chain hashes around the range) is signed
with the log's signing key, so a header rewritten to present a shorter range fails.

Options:
  --db FILE        the decision log (default: ${DEFAULT_DB})
  --since TIME     from this time (ISO 8601, or a duration ago: 15m, 2h, 7d)
  --until TIME     up to this time
  --format jsonl   the only format (default)
  --out FILE       write to FILE (default: standard output)
  --signing-key FILE  the Ed25519 key that signs the header (default: audit-signing-key.pem
                   next to the log, the key the server signs checkpoints with)
  --pubkey FILE    public key to put in the header (default: the signing key's); must be the signing key's
  -h, --help       this text

Exit codes: 0 ok, 2 usage error, 4 the log or the key cannot be read or FILE cannot be written.
`;

const PRUNE_HELP = `Usage: verdict audit prune --before TIME [--db FILE] [--export FILE] [--signing-key FILE] [--dry-run]

Removes the rows made before TIME (the longest prefix of the log that is older),
after verifying the whole log, and signs an anchor (the seq and hash of the last
row removed) so the remaining rows still verify. Opens the log for writing;
safe while the server runs (it works in short transactions).

Options:
  --before TIME        ISO 8601 (2025-01-01) or a duration ago (90d)
  --db FILE            the decision log (default: ${DEFAULT_DB})
  --export FILE        first write the rows to be removed to FILE as JSON lines
  --signing-key FILE   the Ed25519 key that signs the anchor (default: audit-signing-key.pem
                       next to the log, the key the server signs checkpoints with)
  --pubkey FILE        also trust this key when verifying first (rotated keys); repeatable
  --dry-run            only say what would be removed
  -h, --help           this text

Exit codes: 0 ok, 1 the log does not verify (nothing removed), 2 usage error, 4 unreadable log or key.
`;

const PUBKEY_HELP = `Usage: verdict audit pubkey [--db FILE] [--signing-key FILE | --public-key FILE]

Prints the PEM public key that verifies the log's checkpoints, and its key id.
Give a copy to whoever verifies the log, kept apart from it.

Options:
  --db FILE            the decision log whose keys to use (default: ${DEFAULT_DB})
  --signing-key FILE   derive the public key from this private key
  --public-key FILE    read this public key
  -h, --help           this text
`;

/** `verdict audit`: verify, checkpoint, export, prune, pubkey. Returns the exit code; never throws. */
export async function runAudit(argv: string[], io: CommandIO): Promise<number> {
  const [sub, ...rest] = argv;
  const run = SUBCOMMANDS[sub ?? ''];
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    (sub === undefined ? io.stderr : io.stdout)(HELP);
    return sub === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (run === undefined) {
    io.stderr(`verdict audit: unknown command "${sub}"; use verify, checkpoint, export, prune or pubkey\n`);
    return EXIT.USAGE;
  }
  try {
    return await run(rest, io);
  } catch (error) {
    io.stderr(`verdict audit ${sub}: ${messageOf(error)}\n`);
    if (!(error instanceof VerdictError)) return EXIT.FAILED;
    if (error.code === 'USAGE') return EXIT.USAGE;
    return EXIT.INPUT;
  }
}

const SUBCOMMANDS: Record<string, (argv: string[], io: CommandIO) => Promise<number>> = {
  verify: runVerify,
  checkpoint: runCheckpoint,
  export: runExport,
  prune: runPrune,
  pubkey: runPubkey,
};

// ---------------------------------------------------------------- verify

async function runVerify(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      help: { type: 'boolean', short: 'h' },
      db: { type: 'string' },
      export: { type: 'string' },
      pubkey: { type: 'string', multiple: true },
      'from-checkpoint': { type: 'string' },
      workers: { type: 'string' },
      'chain-only': { type: 'boolean' },
      'allow-unsigned-header': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    false,
  );
  if (values.help) {
    io.stdout(VERIFY_HELP);
    return EXIT.OK;
  }
  if (values.db !== undefined && values.export !== undefined) throw usage('give --db or --export, not both');
  if (values.export !== undefined && values['chain-only']) throw usage('--chain-only is for a log (--db): an export has no SQLite storage to check');
  if (values.export === undefined && values['allow-unsigned-header']) throw usage('--allow-unsigned-header is for an export (--export FILE): a log has no export header');
  const workers = values.workers === undefined ? undefined : positiveInt('--workers', values.workers);
  const external = values['from-checkpoint'] === undefined ? null : readCheckpointExport(values['from-checkpoint']);

  const keys = trustedKeys(values.pubkey as string[] | undefined, external?.publicKey ?? null, values.export === undefined ? (values.db ?? DEFAULT_DB) : null);
  let report: VerifyReport;
  if (values.export !== undefined) {
    report = verifyExport(values.export, {
      publicKeys: keys.keys,
      allowUnsignedHeader: values['allow-unsigned-header'] === true,
      ...(external ? { fromCheckpoint: external.checkpoint } : {}),
    });
  } else {
    report = await verifyLog(values.db ?? DEFAULT_DB, { publicKeys: keys.keys, workers, checkStorage: values['chain-only'] !== true, ...(external ? { fromCheckpoint: external.checkpoint } : {}) });
  }
  if (values.json) {
    io.stdout(`${JSON.stringify({ ...report, keySource: keys.source })}\n`);
  } else {
    io.stdout(formatReport(report, keys.source, values.export !== undefined));
  }
  return report.ok ? EXIT.OK : EXIT.FAILED;
}

/**
 * Which public keys to trust, and where they came from: --pubkey files; else the
 * key inside an exported checkpoint (kept elsewhere, so a better root of trust
 * than the log's own directory); else the key file next to the log.
 */
function trustedKeys(files: readonly string[] | undefined, fromCheckpoint: KeyObject | null, db: string | null): { keys: KeyObject[]; source: string } {
  if (files !== undefined && files.length > 0) return { keys: files.map(readPublicKey), source: files.join(', ') };
  if (fromCheckpoint !== null) return { keys: [fromCheckpoint], source: 'the exported checkpoint (--from-checkpoint)' };
  if (db !== null) {
    const beside = defaultKeyPaths(db).publicKey;
    if (fs.existsSync(beside)) return { keys: [readPublicKey(beside)], source: `${beside} (next to the log: pass --pubkey with a copy kept elsewhere for independent assurance)` };
  }
  return { keys: [], source: 'none' };
}

// ---------------------------------------------------------------- checkpoint

async function runCheckpoint(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseFlags(argv, { help: { type: 'boolean', short: 'h' }, db: { type: 'string' }, export: { type: 'string' }, pubkey: { type: 'string' } }, false);
  if (values.help) {
    io.stdout(CHECKPOINT_HELP);
    return EXIT.OK;
  }
  const db = values.db ?? DEFAULT_DB;
  const found = latestCheckpoint(db);
  if (found === null) throw new VerdictError('NOT_FOUND', `${db} has no signed checkpoint yet (the server signs one every checkpointEveryRows rows or checkpointEverySeconds seconds, and on shutdown)`);
  const latest = found.checkpoint;
  const keyFile = values.pubkey ?? defaultKeyPaths(db).publicKey;
  const publicKey = readPublicKey(keyFile);
  if (keyIdOf(publicKey) !== latest.keyId || !checkpointSignatureValid(latest, publicKey)) {
    io.stderr(`verdict audit checkpoint: the latest checkpoint (seq ${latest.seq}) is not validly signed by ${keyIdOf(publicKey)} from ${keyFile}; not exporting it. Run verdict audit verify.\n`);
    return EXIT.FAILED;
  }
  // A checkpoint signed in another replica's log would carry that replica's name to wherever it is kept.
  if (latest.replicaId !== null && latest.replicaId !== found.replicaId) {
    const recorded = found.replicaId === null ? 'records no replica id' : `records replica ${found.replicaId}`;
    io.stderr(`verdict audit checkpoint: the latest checkpoint (seq ${latest.seq}) was signed in the log of replica ${latest.replicaId}, but ${db} ${recorded}; not exporting it. Run verdict audit verify.\n`);
    return EXIT.FAILED;
  }
  const data = toExport(latest, publicKey);
  if (values.export === undefined) {
    io.stdout(`${JSON.stringify(data, null, 2)}\n`);
    return EXIT.OK;
  }
  writeCheckpointExport(values.export, data);
  const replica = latest.replicaId === null ? '' : ` for replica ${latest.replicaId}`;
  io.stdout(`exported the ${latest.kind} at seq ${latest.seq.toLocaleString('en-US')} (signed ${data.time} by ${latest.keyId}${replica}) to ${values.export}\nkeep it where this host cannot write; later: verdict audit verify --db ${db} --from-checkpoint ${values.export}\n`);
  return EXIT.OK;
}

// ---------------------------------------------------------------- export

async function runExport(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      help: { type: 'boolean', short: 'h' },
      db: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      format: { type: 'string' },
      out: { type: 'string' },
      pubkey: { type: 'string' },
      'signing-key': { type: 'string' },
    },
    false,
  );
  if (values.help) {
    io.stdout(EXPORT_HELP);
    return EXIT.OK;
  }
  if (values.format !== undefined && values.format !== 'jsonl') throw usage(`--format must be jsonl, not "${values.format}"`);
  const now = Date.now();
  const since = values.since === undefined ? undefined : parseTime('--since', values.since, now);
  const until = values.until === undefined ? undefined : parseTime('--until', values.until, now);
  const db = values.db ?? DEFAULT_DB;
  const key = loadSigner(values['signing-key'] ?? defaultKeyPaths(db).signingKey, 'export signs its header');
  const publicKey = values.pubkey === undefined ? key.publicKey : readPublicKey(values.pubkey);
  if (keyIdOf(publicKey) !== key.signer.keyId) {
    throw usage(`--pubkey ${values.pubkey ?? ''} is key ${keyIdOf(publicKey)}, but the header is signed by ${key.signer.keyId}; give the signing key's public key, or leave --pubkey out`);
  }
  const options = { since, until, publicKey, signer: key.signer };
  if (values.out === undefined) {
    exportLog(db, io.stdout, options);
    return EXIT.OK;
  }
  const summary = exportLogToFile(db, values.out, options);
  const range = summary.fromSeq === null ? 'no rows' : `seq ${summary.fromSeq}..${summary.toSeq}`;
  io.stderr(`exported ${summary.rows.toLocaleString('en-US')} rows (${range}) and ${summary.checkpoints} checkpoints to ${values.out}\n`);
  return EXIT.OK;
}

// ---------------------------------------------------------------- prune

/**
 * The log's signing key, for a command that signs (`what`: "prune signs its anchor").
 * @throws VerdictError CONFIG_INVALID when there is no key at `keyFile`
 */
function loadSigner(keyFile: string, what: string): { signer: CheckpointSigner; publicKey: KeyObject } {
  if (!fs.existsSync(keyFile)) {
    throw new VerdictError('CONFIG_INVALID', `no signing key at ${keyFile}: ${what} with the key the server signs checkpoints with; pass --signing-key FILE`);
  }
  const privateKey = readPrivateKey(keyFile);
  const publicKey = createPublicKey(privateKey);
  return { signer: { keyId: keyIdOf(publicKey), sign: (message) => sign(null, message, privateKey) }, publicKey };
}

async function runPrune(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      help: { type: 'boolean', short: 'h' },
      db: { type: 'string' },
      before: { type: 'string' },
      export: { type: 'string' },
      'signing-key': { type: 'string' },
      pubkey: { type: 'string', multiple: true },
      'dry-run': { type: 'boolean' },
    },
    false,
  );
  if (values.help) {
    io.stdout(PRUNE_HELP);
    return EXIT.OK;
  }
  if (values.before === undefined) throw usage('--before TIME is required (e.g. --before 90d or --before 2025-01-01)');
  const before = parseTime('--before', values.before, Date.now());
  const db = values.db ?? DEFAULT_DB;
  if (!fs.existsSync(db)) throw new VerdictError('DECISION_LOG_UNAVAILABLE', `no decision log at ${db}`);
  const { signer, publicKey } = loadSigner(values['signing-key'] ?? defaultKeyPaths(db).signingKey, 'prune signs its anchor');
  const extra = ((values.pubkey as string[] | undefined) ?? []).map(readPublicKey);
  const result = await pruneLog(db, {
    before,
    signer,
    publicKeys: [publicKey, ...extra],
    ...(values.export !== undefined ? { exportTo: values.export } : {}),
    dryRun: values['dry-run'] ?? false,
  });
  const when = new Date(before).toISOString();
  if (result.refused) {
    const brk = result.verification.break;
    io.stderr(`verdict audit prune: refusing to prune ${db}: it does not verify (${brk?.kind} at seq ${brk?.seq}: ${brk?.message}); investigate first, pruning would destroy the evidence\n`);
    return EXIT.FAILED;
  }
  if (result.rows === 0) {
    io.stdout(`nothing to prune: no rows before ${when} (the log verified: ${result.verification.rows.toLocaleString('en-US')} rows)\n`);
    return EXIT.OK;
  }
  const range = `seq ${result.fromSeq}..${result.toSeq}`;
  if (values['dry-run']) {
    io.stdout(`would remove ${result.rows.toLocaleString('en-US')} rows (${range}) made before ${when}; the log verified\n`);
    return EXIT.OK;
  }
  if (result.exported !== null) io.stdout(`exported ${result.exported.rows.toLocaleString('en-US')} rows (${range}) to ${values.export}\n`);
  io.stdout(
    `removed ${result.rows.toLocaleString('en-US')} rows (${range}) made before ${when}\n` +
      `anchor: seq ${result.anchor?.seq} hash ${Buffer.from(result.anchor?.hash ?? []).toString('hex')} signed by ${signer.keyId}\n` +
      `the remaining rows verify from the anchor (verdict audit verify --db ${db}); the file shrinks only after VACUUM\n`,
  );
  return EXIT.OK;
}

// ---------------------------------------------------------------- pubkey

async function runPubkey(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseFlags(argv, { help: { type: 'boolean', short: 'h' }, db: { type: 'string' }, 'signing-key': { type: 'string' }, 'public-key': { type: 'string' } }, false);
  if (values.help) {
    io.stdout(PUBKEY_HELP);
    return EXIT.OK;
  }
  if (values['signing-key'] !== undefined && values['public-key'] !== undefined) throw usage('give --signing-key or --public-key, not both');
  const defaults = defaultKeyPaths(values.db ?? DEFAULT_DB);
  let key: KeyObject;
  if (values['signing-key'] !== undefined) key = createPublicKey(readPrivateKey(values['signing-key']));
  else if (values['public-key'] !== undefined) key = readPublicKey(values['public-key']);
  else if (fs.existsSync(defaults.publicKey)) key = readPublicKey(defaults.publicKey);
  else if (fs.existsSync(defaults.signingKey)) key = createPublicKey(readPrivateKey(defaults.signingKey));
  else throw new VerdictError('CONFIG_INVALID', `no key at ${defaults.publicKey} or ${defaults.signingKey}: the server creates them on first start; or pass --signing-key / --public-key`);
  io.stderr(`key id: ${keyIdOf(key)}\n`);
  io.stdout(publicKeyPem(key));
  return EXIT.OK;
}

// ---------------------------------------------------------------- helpers

function usage(message: string): VerdictError {
  return new VerdictError('USAGE', `${message}; see --help`);
}

function positiveInt(flag: string, text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw usage(`${flag} must be a positive integer, not "${text}"`);
  return n;
}
