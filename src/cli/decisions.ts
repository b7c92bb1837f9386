import { REASONS, type Effect, type Reason } from '../types.js';
import { VerdictError, messageOf } from '../errors.js';
import fs from 'node:fs';
import { defaultKeyPaths, loadHmacKey } from '../decisions/keys.js';
import { DEFAULT_LIMIT, DecisionReader, type DecisionFilters, type StoredDecision } from '../decisions/query.js';
import { attributeFilter } from '../decisions/sensitive.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { parseTime } from './time.js';
import { INVISIBLE_CHARACTERS } from '../invisible.js';

const DEFAULT_DB = 'data/decisions.db';

const HELP = `Usage: verdict decisions [--db FILE] [filters] [--limit N] [--json]

Lists recorded decisions from the decision log, newest first. The log is opened
read-only, so this is safe while the server is running.

Options:
  --db FILE            the decision log (default: ${DEFAULT_DB})
  --principal ID       decisions about this principal
  --resource TYPE[:ID] decisions on resources of TYPE (and this ID)
  --action A           decisions for this action
  --effect allow|deny  only allowed or only denied decisions
  --rule ID            decisions this rule took part in (among their rule ids)
  --shadow-diff        decisions the shadow policy set (serve --shadow-policies) decided
                       otherwise; --json shows its effect, reason and rules (details.shadow)
  --reason R           by reason: ${REASONS.map((r) => r.toLowerCase()).join(', ')}
  --since TIME         made at or after TIME
  --until TIME         made before TIME
  --id DECISION_ID     the one decision with this id
  --attr PATH=VALUE    request attribute equal to VALUE, e.g. principal.attributes.email=a@b.c
                       (repeatable). Attributes the server stores as HMAC (sensitiveAttributes)
                       match too: VALUE is hashed with the same key
  --hmac-key FILE      that key (default: audit-hmac.key next to the log, when it exists)
  --limit N            at most N decisions (default: ${DEFAULT_LIMIT})
  --json               one JSON object per line instead of a table
  -h, --help           this text

TIME is ISO 8601 (2025-06-01, 2025-06-01T14:30:00Z, 2025-06-01T14:30+02:00; without
an offset it is UTC, like the times printed) or a duration ago: 90s, 15m, 2h, 7d, 2w.

Examples:
  verdict decisions --principal dana --effect deny --since 1h
  verdict decisions --resource model:fraud-v3 --json | jq .reason
  verdict decisions --rule no-production-deletes --since 7d
  verdict decisions --id 0190f5c2-7a3e-7c1d-9b2f-3f1e2d4c5b6a
  verdict decisions --attr principal.attributes.email=alice@example.com

Exit codes: 0 ok (also when nothing matches), 2 usage error, 4 the log cannot be opened.
`;

/** `verdict decisions`: query the decision log. Returns the exit code; never throws. */
export async function runDecisions(argv: string[], io: CommandIO): Promise<number> {
  let dbPath: string;
  let filters: DecisionFilters;
  let json: boolean;
  try {
    const { values } = parseFlags(
      argv,
      {
        help: { type: 'boolean', short: 'h' },
        db: { type: 'string' },
        json: { type: 'boolean' },
        principal: { type: 'string' },
        resource: { type: 'string' },
        action: { type: 'string' },
        effect: { type: 'string' },
        reason: { type: 'string' },
        rule: { type: 'string' },
        'shadow-diff': { type: 'boolean' },
        since: { type: 'string' },
        until: { type: 'string' },
        id: { type: 'string' },
        attr: { type: 'string', multiple: true },
        'hmac-key': { type: 'string' },
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
    const resource = values.resource === undefined ? undefined : parseResource(values.resource);
    filters = {
      principalId: values.principal,
      resourceType: resource?.type,
      resourceId: resource?.id,
      action: values.action,
      effect: values.effect === undefined ? undefined : parseEffect(values.effect),
      reason: values.reason === undefined ? undefined : parseReason(values.reason),
      ruleId: values.rule,
      shadowDiff: values['shadow-diff'] ?? false,
      since: values.since === undefined ? undefined : parseTime('--since', values.since, now),
      until: values.until === undefined ? undefined : parseTime('--until', values.until, now),
      decisionId: values.id,
      attributes: parseAttributes((values.attr as string[] | undefined) ?? [], values['hmac-key'], dbPath),
      limit: values.limit === undefined ? DEFAULT_LIMIT : parseLimit(values.limit),
    };
  } catch (error) {
    io.stderr(`verdict decisions: ${messageOf(error)}\n`);
    // A bad flag is usage; a key file that cannot be read is input.
    return error instanceof VerdictError && error.code !== 'USAGE' ? EXIT.INPUT : EXIT.USAGE;
  }

  let decisions: StoredDecision[];
  try {
    const reader = DecisionReader.open(dbPath);
    try {
      decisions = reader.query(filters);
    } finally {
      reader.close();
    }
  } catch (error) {
    io.stderr(`verdict decisions: ${messageOf(error)}\n`);
    if (error instanceof VerdictError && error.code === 'USAGE') return EXIT.USAGE;
    return EXIT.INPUT;
  }

  if (json) {
    for (const decision of decisions) io.stdout(`${JSON.stringify(decision)}\n`);
    return EXIT.OK;
  }
  if (decisions.length === 0) {
    io.stdout('No decisions match.\n');
    return EXIT.OK;
  }
  io.stdout(formatTable(decisions));
  if (decisions.length === filters.limit) {
    io.stderr(`(the newest ${decisions.length}; use --limit or narrower filters to see others)\n`);
  }
  return EXIT.OK;
}

function usage(message: string): VerdictError {
  return new VerdictError('USAGE', `${message}; see --help`);
}

function parseResource(text: string): { type: string; id: string | undefined } {
  // Types never contain ':', ids may (urns, paths): split at the first one only.
  const colon = text.indexOf(':');
  const type = colon === -1 ? text : text.slice(0, colon);
  const id = colon === -1 ? undefined : text.slice(colon + 1);
  if (type === '' || id === '') throw usage(`--resource must be TYPE or TYPE:ID, not "${text}"`);
  return { type, id };
}

function parseEffect(text: string): Effect {
  const effect = text.toUpperCase();
  if (effect !== 'ALLOW' && effect !== 'DENY') throw usage(`--effect must be allow or deny, not "${text}"`);
  return effect;
}

function parseReason(text: string): Reason {
  const reason = REASONS.find((r) => r === text.toUpperCase().replace(/-/g, '_'));
  if (reason === undefined) throw usage(`--reason must be one of ${REASONS.map((r) => r.toLowerCase()).join(', ')}; not "${text}"`);
  return reason;
}

/** `--attr PATH=VALUE` filters; the HMAC key is read only when one is given. */
function parseAttributes(texts: readonly string[], keyFile: string | undefined, dbPath: string): DecisionFilters['attributes'] {
  if (texts.length === 0) {
    if (keyFile !== undefined) throw usage('--hmac-key only matters with --attr');
    return undefined;
  }
  const path = keyFile ?? defaultKeyPaths(dbPath).hmacKey;
  // The default key is optional (no sensitive attributes configured); a named one must exist.
  const key = keyFile !== undefined || fs.existsSync(path) ? loadHmacKey(path, false).key : null;
  return texts.map((text) => {
    const eq = text.indexOf('=');
    if (eq <= 0) throw usage(`--attr must be PATH=VALUE (e.g. principal.attributes.email=alice@example.com), not "${text}"`);
    try {
      return attributeFilter(text.slice(0, eq), text.slice(eq + 1), key);
    } catch (error) {
      throw usage(`--attr ${messageOf(error).replace(/^sensitive attribute /, '')}`);
    }
  });
}

function parseLimit(text: string): number {
  const limit = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(limit) || limit < 1) throw usage(`--limit must be a positive integer, not "${text}"`);
  return limit;
}

function isoTime(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}

// Values come from requests: never let one move the cursor or recolour the terminal
// (C0 and C1 controls become '?'), nor hide or disguise what is shown: the characters
// of invisible.ts are shown escaped, so `da\u200Bna` reads `da\u{200B}na`, never `dana`.
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/g;
const INVISIBLE = new RegExp(`[${INVISIBLE_CHARACTERS}]`, 'gu');

/** A value from the log as a table cell: controls neutralised, format characters escaped. */
export function printable(text: string): string {
  return text.replace(CONTROLS, '?').replace(INVISIBLE, (c) => `\\u{${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}}`);
}

function formatTable(decisions: readonly StoredDecision[]): string {
  const header = ['TIME', 'DECISION ID', 'PRINCIPAL', 'ACTION', 'RESOURCE', 'EFFECT', 'REASON', 'RULES'];
  const rows = decisions.map((d) =>
    [
      isoTime(d.time),
      d.decisionId,
      d.principalId,
      d.action,
      `${d.resourceType}:${d.resourceId}`,
      d.effect,
      d.reason,
      d.ruleIds.length > 0 ? d.ruleIds.join(',') : '-',
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
