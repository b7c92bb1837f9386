import type { Alert, AlertQuery, AlertType } from '../analysis/alert.js';
import { listAlerts } from '../analysis/alert-store.js';
import { ALERT_TYPES } from '../analysis/detectors.js';
import { openReadOnly } from '../decisions/schema.js';
import { VerdictError, messageOf } from '../errors.js';
import { printable } from './decisions.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { parseTime } from './time.js';

const DEFAULT_DB = 'data/decisions.db';
const DEFAULT_LIMIT = 100;

const HELP = `Usage: verdict alerts [--db FILE] [--since TIME] [--until TIME] [--type TYPE] [--principal ID] [--limit N] [--json]

Lists the anomaly alerts the server raised and stored beside its decisions,
newest first. The log is opened read-only, so this is safe while the server runs.

Options:
  --db FILE        the decision log (default: ${DEFAULT_DB})
  --since TIME     raised at or after TIME
  --until TIME     raised before TIME
  --type TYPE      one type: ${ALERT_TYPES.join(', ')}
  --principal ID   alerts about this subject (a principal, an API key id, a source address)
  --limit N        at most N alerts (default: ${DEFAULT_LIMIT}, at most 10000)
  --json           one JSON object per line instead of a table
  -h, --help       this text

TIME is ISO 8601 (2025-06-01T14:30:00Z) or a duration ago: 90s, 15m, 2h, 7d, 2w.

Examples:
  verdict alerts --since 24h
  verdict alerts --type extraction --json | jq .summary
  verdict decisions --id "$(verdict alerts --principal svc-batch --json | jq -r '.decisionIds[0]' | head -1)"

Exit codes: 0 ok (also when nothing matches), 2 usage error, 4 the log cannot be opened.
`;

/** `verdict alerts`: list stored alerts. Returns the exit code; never throws. */
export async function runAlerts(argv: string[], io: CommandIO): Promise<number> {
  let dbPath: string;
  let query: AlertQuery;
  let json: boolean;
  try {
    const { values } = parseFlags(
      argv,
      {
        help: { type: 'boolean', short: 'h' },
        db: { type: 'string' },
        json: { type: 'boolean' },
        since: { type: 'string' },
        until: { type: 'string' },
        type: { type: 'string' },
        principal: { type: 'string' },
        limit: { type: 'string' },
      },
      false,
    );
    if (values.help) {
      io.stdout(HELP);
      return EXIT.OK;
    }
    dbPath = values.db ?? DEFAULT_DB;
    json = values.json ?? false;
    const now = Date.now();
    query = {
      since: values.since === undefined ? undefined : parseTime('--since', values.since, now),
      until: values.until === undefined ? undefined : parseTime('--until', values.until, now),
      type: values.type === undefined ? undefined : parseAlertType(values.type),
      subjectId: values.principal,
      limit: values.limit === undefined ? DEFAULT_LIMIT : parseLimit(values.limit),
    };
  } catch (error) {
    io.stderr(`verdict alerts: ${messageOf(error)}\n`);
    return EXIT.USAGE;
  }
  let alerts: Alert[];
  try {
    const db = openReadOnly(dbPath);
    try {
      alerts = listAlerts(db, query);
    } finally {
      db.close();
    }
  } catch (error) {
    io.stderr(`verdict alerts: ${messageOf(error)}\n`);
    return EXIT.INPUT;
  }
  io.stdout(formatAlerts(alerts, json, 'No alerts match.'));
  return EXIT.OK;
}

/** `--type`: one of the alert types. @throws VerdictError USAGE */
export function parseAlertType(text: string): AlertType {
  const type = ALERT_TYPES.find((t) => t === text.toLowerCase());
  if (type === undefined) throw new VerdictError('USAGE', `--type must be one of ${ALERT_TYPES.join(', ')}; not "${text}"`);
  return type;
}

function parseLimit(text: string): number {
  const limit = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new VerdictError('USAGE', `--limit must be a positive integer, not "${text}"; see --help`);
  return limit;
}

/** Alerts as JSON lines or as a table (values from requests made printable). */
export function formatAlerts(alerts: readonly Alert[], json: boolean, none: string): string {
  if (json) return alerts.map((a) => `${JSON.stringify(a)}\n`).join('');
  if (alerts.length === 0) return `${none}\n`;
  const header = ['RAISED', 'TYPE', 'SUBJECT', 'WINDOW', 'OBSERVED', 'THRESHOLD', 'ALERT ID'];
  const rows = alerts.map((a) =>
    [
      new Date(a.raisedAt).toISOString(),
      a.type,
      `${a.subject.kind}:${a.subject.id}${a.resource ? ` on ${a.resource.type}:${a.resource.id}` : ''}`,
      `${new Date(a.windowStart).toISOString()}/${(a.windowEnd - a.windowStart) / 60_000}m`,
      String(a.observed),
      a.baseline === undefined ? String(a.threshold) : `${a.threshold} (usual ${a.baseline})`,
      a.id,
    ].map(printable),
  );
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[header, ...rows].map(line).join('\n')}\n`;
}
