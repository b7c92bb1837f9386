import type { CandidateFiles } from '../analysis/candidate.js';
import type { ReplayRun } from '../analysis/replay-log.js';
import type { Baseline } from '../analysis/replay-report.js';
import { startReplayThreadsFor, type ReplayThread } from '../analysis/replay-threads.js';
import type { FlipDirection } from '../analysis/replay.js';
import { VerdictError, messageOf } from '../errors.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { parseTime } from './time.js';
import type { PolicySet } from '../policy/policy-set.js';

const DEFAULT_DB = 'data/decisions.db';

/** The flip directions, by name (this module loads no replay code until the replay threads have started). */
const DIRECTIONS: Readonly<Record<FlipDirection, true>> = { ALLOW_TO_DENY: true, DENY_TO_ALLOW: true };
const FLIP_DIRECTIONS = Object.keys(DIRECTIONS) as FlipDirection[];

const HELP = `Usage: verdict replay [--db FILE | --export FILE] [--since TIME] [--until TIME]
                      [--policies DIR] [--rev GIT_REV]
                      [--against-recorded | --against DIR | --against-rev GIT_REV]
                      [--allow-flips DIRECTION]... [--allow-unreplayable-directory]
                      [--json] [--top N] [--examples N] [--workers N]

Re-evaluates recorded requests against a candidate policy set and reports the
decisions that would flip, ALLOW -> DENY and DENY -> ALLOW, grouped by rule,
principal, action and resource type, with counts and example decision ids.

The candidate:
  --policies DIR        the policy directory (default: policies)
  --rev GIT_REV         DIR as it is at this git revision (a commit, branch, tag,
                        HEAD~1), read from the repository without a checkout

Compared with:
  --against-recorded    the decision recorded for each request (the default): what
                        would change compared with what was answered then, under
                        whichever policy version answered it
  --against DIR         the answers of the set in DIR to the same recorded requests:
                        only the difference between the two sets shows
  --against-rev GIT_REV the answers of the policy directory at GIT_REV (e.g. the
                        base branch of a pull request)

The decisions:
  --db FILE             the decision log (default: ${DEFAULT_DB}), opened read-only
  --export FILE         a JSONL export (verdict audit export) instead of a log
  --since TIME          decisions made at or after TIME (ISO 8601, or a duration ago: 7d)
  --until TIME          decisions made before TIME

Not replayed, and reported apart: requests refused before the rules (invalid,
unauthenticated, rate-limited, no gateway route), Admin calls, and requests with
an attribute stored masked (sensitiveAttributes): the value the rules read is
gone, so they are counted as not replayable, never guessed.

Requests are replayed as their callers sent them: what the directory filled in
(roles, attributes; details.directory) is undone, and each set's own directory
completes the request again. A row recorded before the log kept the values the
directory replaced, whose candidate (or baseline) would need them, is counted as
"not replayable: directory facts recorded without what they replaced".

Gateway requests (ext_authz, forward-auth) are routed again by each set's own
routes from their recorded method and path: a route edit flips what it changes,
a path the candidate no longer routes is listed, and a route that reads a value
never recorded (a new header) makes the request not replayable.

Output:
  --allow-flips D       accept flips in direction D (ALLOW_TO_DENY or
                        DENY_TO_ALLOW; repeat or comma-separate): they are
                        reported but do not make the exit code 1
  --allow-unreplayable-directory
                        accept rows whose directory facts cannot be undone:
                        without it they make the exit code 1, since they may
                        hide a flip
  --json                the report as one JSON object
  --top N               groups shown per section (default: 10; --json has all)
  --examples N          example decision ids per group (default: 3)
  --workers N           threads over ranges of a large log (default: one per core, at most 4)
  -h, --help            this text

A progress bar is shown on standard error when it is a terminal.

Exit codes: 0 nothing flipped (or only accepted directions), 1 decisions flipped
(or rows not replayable for their directory facts, unless accepted),
2 usage error, 3 the candidate (or --against) policies are invalid or missing,
4 the log or export cannot be read, 5 an internal error.
`;

/** `verdict replay`: what would this policy change flip? Returns the exit code; never throws. */
export async function runReplay(argv: string[], io: CommandIO): Promise<number> {
  try {
    return await replay(argv, io);
  } catch (error) {
    io.stderr(`verdict replay: ${messageOf(error)}\n`);
    if (!(error instanceof VerdictError)) return EXIT.SERVER;
    switch (error.code) {
      case 'USAGE':
      case 'CONFIG_INVALID':
        return EXIT.USAGE;
      case 'POLICY_INVALID':
      case 'POLICY_DIR_MISSING':
        return EXIT.POLICY_INVALID;
      case 'INPUT_INVALID':
      case 'INPUT_UNREADABLE':
      case 'DECISION_LOG_UNAVAILABLE':
      case 'DECISION_LOG_CORRUPT':
      case 'NOT_FOUND':
        return EXIT.INPUT;
      default:
        return EXIT.SERVER;
    }
  }
}

function positiveInt(flag: string, text: string, min = 1): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) throw new VerdictError('USAGE', `${flag} must be an integer of at least ${min}, not ${JSON.stringify(text)}; see --help`);
  return value;
}

function flipDirections(values: readonly string[] | undefined): FlipDirection[] {
  const out = new Set<FlipDirection>();
  for (const value of values ?? []) {
    for (const part of value.split(',')) {
      const name = part.trim().toUpperCase().replace(/-/g, '_');
      if (!(FLIP_DIRECTIONS as readonly string[]).includes(name)) {
        throw new VerdictError('USAGE', `--allow-flips takes ${FLIP_DIRECTIONS.join(' or ')}, not ${JSON.stringify(part)}; see --help`);
      }
      out.add(name as FlipDirection);
    }
  }
  return [...out];
}

/** Reads a policy set and checks that it compiles; prints its diagnostics and throws POLICY_INVALID if not. */
async function checkedSet(files: CandidateFiles, io: CommandIO): Promise<{ files: CandidateFiles; version: string; policySet: PolicySet }> {
  const [{ loadCandidate }, { printDiagnostics }] = await Promise.all([import('../analysis/candidate.js'), import('./policies.js')]);
  const result = loadCandidate(files);
  if (!result.ok) {
    printDiagnostics(files.label, result.diagnostics, io);
    throw new VerdictError('POLICY_INVALID', `${files.label} has ${result.diagnostics.length} error(s); fix them (see verdict validate)`);
  }
  return { files, version: result.policies.policySet.version, policySet: result.policies.policySet };
}

async function replay(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      help: { type: 'boolean', short: 'h' },
      db: { type: 'string' },
      export: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      policies: { type: 'string' },
      rev: { type: 'string' },
      'against-recorded': { type: 'boolean' },
      against: { type: 'string' },
      'against-rev': { type: 'string' },
      'allow-flips': { type: 'string', multiple: true },
      'allow-unreplayable-directory': { type: 'boolean' },
      json: { type: 'boolean' },
      top: { type: 'string' },
      examples: { type: 'string' },
      workers: { type: 'string' },
    },
    false,
  );
  if (values.help) {
    io.stdout(HELP);
    return EXIT.OK;
  }
  if (values.db !== undefined && values.export !== undefined) throw new VerdictError('USAGE', 'give --db or --export, not both; see --help');
  const againstCount = [values['against-recorded'] === true, values.against !== undefined, values['against-rev'] !== undefined].filter(Boolean).length;
  if (againstCount > 1) throw new VerdictError('USAGE', 'give one of --against-recorded, --against DIR and --against-rev GIT_REV; see --help');
  const now = Date.now();
  const since = values.since === undefined ? undefined : parseTime('--since', values.since, now);
  const until = values.until === undefined ? undefined : parseTime('--until', values.until, now);
  if (since !== undefined && until !== undefined && until <= since) throw new VerdictError('USAGE', '--until must be later than --since; see --help');
  const top = values.top === undefined ? 10 : positiveInt('--top', values.top);
  const examples = values.examples === undefined ? 3 : positiveInt('--examples', values.examples, 0);
  const workers = values.workers === undefined ? undefined : positiveInt('--workers', values.workers);
  const allowedFlips = flipDirections(values['allow-flips'] as string[] | undefined);

  // The replay threads of a large log start first: they load the policy compiler while this thread loads and compiles the candidate.
  const threads: ReplayThread[] = values.export === undefined && workers !== 1 ? startReplayThreadsFor(values.db ?? DEFAULT_DB, workers) : [];
  let run: ReplayRun;
  let source: string;
  let candidate: { files: CandidateFiles; version: string; policySet: PolicySet };
  let against: { files: CandidateFiles; version: string; policySet: PolicySet } | null = null;
  const warnings: string[] = [];
  let progress: ReturnType<typeof progressBar> | null = null;
  try {
    const { filesFromDirectory, filesFromGit } = await import('../analysis/candidate.js');
    const dir = (values.policies ?? 'policies').replace(/(.)\/+$/, '$1');
    const candidateFiles = values.rev === undefined ? filesFromDirectory(dir) : filesFromGit(dir, values.rev, warnings);
    const againstFiles =
      values.against !== undefined ? filesFromDirectory(values.against.replace(/(.)\/+$/, '$1')) : values['against-rev'] !== undefined ? filesFromGit(dir, values['against-rev'], warnings) : null;
    // The threads compile the sets while this thread checks them.
    for (const t of threads) t.prepare(candidateFiles, againstFiles);
    candidate = await checkedSet(candidateFiles, io);
    if (againstFiles !== null) against = await checkedSet(againstFiles, io);
    progress = process.stderr.isTTY === true && !values.json ? progressBar(io) : null;
    const options = { candidate: candidate.files, baseline: against?.files ?? null, since, until, examples, workers, onProgress: progress?.update, compiled: { candidate: candidate.policySet, baseline: against?.policySet ?? null } };
    const { replayLog, replayStoredRows } = await import('../analysis/replay-log.js');
    if (values.export !== undefined) {
      source = values.export;
      const { readExportFile } = await import('../audit/export-reader.js');
      run = replayStoredRows(readExportFile(values.export).rows, options);
    } else {
      source = values.db ?? DEFAULT_DB;
      // replayLog takes the threads over (and stops them when it fails).
      run = await replayLog(source, { ...options, threads: threads.splice(0) });
    }
  } finally {
    for (const t of threads) t.stop();
    progress?.done();
  }
  const baseline: Baseline = against === null ? { kind: 'recorded' } : { kind: 'policies', source: against.files.label, version: against.version };
  const { buildReport, formatReplayReport, hasUnacceptedFlips, hasUnacceptedUnreplayable } = await import('../analysis/replay-report.js');
  const report = buildReport(run.tally, {
    source,
    candidate: { source: candidate.files.label, version: candidate.version },
    baseline,
    window: { since: since ?? null, until: until ?? null },
    allowedFlips,
    allowedUnreplayableDirectory: values['allow-unreplayable-directory'] === true,
    warnings,
    seconds: run.seconds,
    cpuSeconds: run.cpuSeconds,
  });
  io.stdout(values.json ? `${JSON.stringify(report)}\n` : formatReplayReport(report, top));
  return hasUnacceptedFlips(report) || hasUnacceptedUnreplayable(report) ? EXIT.FAILED : EXIT.OK;
}

/** A one-line progress bar on standard error (a terminal), redrawn in place. */
function progressBar(io: CommandIO): { update: (done: number, total: number) => void; done: () => void } {
  let last = 0;
  let shown = false;
  return {
    update: (done, total) => {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      shown = true;
      const width = 30;
      const share = total > 0 ? Math.min(1, done / total) : 1;
      const filled = Math.round(share * width);
      io.stderr(`\rreplaying [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${Math.floor(share * 100)}%  ${done.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} rows`);
    },
    done: () => {
      if (shown) io.stderr('\r\x1b[K');
    },
  };
}
