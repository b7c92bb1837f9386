import { analyzeLog, WARM_UP_WINDOWS, type Analysis } from '../analysis/analyze.js';
import type { DetectorSettings } from '../analysis/detector-config.js';
import { readConfigFile } from '../server/config.js';
import { messageOf } from '../errors.js';
import { formatAlerts } from './alerts.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { parseTime } from './time.js';

const DEFAULT_DB = 'data/decisions.db';

const HELP = `Usage: verdict analyze [--since TIME] [--until TIME] [--db FILE] [--config FILE] [--json]

Runs the anomaly detectors over a time range of the decision log, in the log's
order: the same code and thresholds the server runs live, so the same decisions
give the same alerts (with the same ids) as \`verdict alerts\` lists. Decisions
from the two windows before --since are read too, so that the range's first
windows are counted as the server counted them; only alerts raised from --since
on are printed. Stores nothing. The log is opened read-only.

Options:
  --since TIME     decisions made at or after TIME (default: 24h)
  --until TIME     decisions made before TIME (default: now)
  --db FILE        the decision log (default: ${DEFAULT_DB})
  --config FILE    read the thresholds from this server configuration's alerts.detectors
                   (default: the documented defaults)
  --json           one JSON object per line instead of a table
  -h, --help       this text

TIME is ISO 8601 (2025-06-01T14:30:00Z) or a duration ago: 90s, 15m, 2h, 7d, 2w.

Examples:
  verdict analyze --since 24h
  verdict analyze --since 2026-12-01 --until 2026-12-02 --config verdict.yaml --json

Exit codes: 0 ok (also when no alert is raised), 2 usage error, 4 the log or config cannot be read.
`;

/** `verdict analyze`: the detectors over a log range. Returns the exit code; never throws. */
export async function runAnalyze(argv: string[], io: CommandIO): Promise<number> {
  let dbPath: string;
  let since: number;
  let until: number | undefined;
  let json: boolean;
  let configFile: string | undefined;
  try {
    const { values } = parseFlags(
      argv,
      {
        help: { type: 'boolean', short: 'h' },
        db: { type: 'string' },
        json: { type: 'boolean' },
        since: { type: 'string' },
        until: { type: 'string' },
        config: { type: 'string' },
      },
      false,
    );
    if (values.help) {
      io.stdout(HELP);
      return EXIT.OK;
    }
    dbPath = values.db ?? DEFAULT_DB;
    json = values.json ?? false;
    configFile = values.config;
    const now = Date.now();
    since = parseTime('--since', values.since ?? '24h', now);
    until = values.until === undefined ? undefined : parseTime('--until', values.until, now);
  } catch (error) {
    io.stderr(`verdict analyze: ${messageOf(error)}\n`);
    return EXIT.USAGE;
  }
  let analysis: Analysis;
  try {
    const detectors: DetectorSettings | undefined = configFile === undefined ? undefined : readConfigFile(configFile).alerts?.detectors;
    analysis = analyzeLog(dbPath, { since, until, detectors });
  } catch (error) {
    io.stderr(`verdict analyze: ${messageOf(error)}\n`);
    return EXIT.INPUT;
  }
  io.stdout(formatAlerts(analysis.alerts, json, 'No alerts.'));
  if (!json) {
    const warmUp = analysis.warmUpDecisions > 0 ? `, and ${analysis.warmUpDecisions} from the ${WARM_UP_WINDOWS} windows before --since to count its first windows as the server did` : '';
    io.stderr(`(${analysis.decisions} decisions read${warmUp}, ${analysis.alerts.length} alerts${analysis.evictions > 0 ? `, ${analysis.evictions} detector states evicted` : ''})\n`);
  }
  return EXIT.OK;
}
