import { ApiKeyStore, statusOf, type ApiKeyInfo } from '../authn/api-keys.js';
import { KEY_ID_PATTERN } from '../authn/api-key-format.js';
import { DEFAULT_KEYS_DB } from '../authn/config.js';
import type { AttributeValue } from '../types.js';
import { VerdictError } from '../errors.js';
import { readConfigFile } from '../server/config.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { isDuration, parseDuration, parseIsoTime } from './time.js';
import { LAST_REPRESENTABLE_MS } from '../time-text.js';

const HELP = `Usage: verdict keys <create|list|revoke|rotate> [options]

Manages the API keys gateways accept (authorization: Bearer vk_... or x-api-key).
verdict stores only a SHA-256 hash of each key: a key is shown once, when it is
created or rotated, and cannot be shown again. Changes take effect on the next
request the server authenticates; no restart.

  verdict keys create --owner ID [--name TEXT] [--role R]... [--scope S]...
                      [--attr NAME=VALUE]... [--expires WHEN] [--json]
      New key for principal ID. Prints the key on standard output (and what it
      is on standard error), or everything as JSON with --json.
  verdict keys list [--owner ID] [--json]
      Ids, owners, scopes, expiry, last use and status; never secrets.
  verdict keys revoke ID [--json]
      Refuse the key from the next request on.
  verdict keys rotate ID [--grace DURATION] [--expires WHEN] [--json]
      New key with the same owner, roles, attributes and scopes; the old key is
      revoked now, or with --grace (e.g. 24h) keeps working that much longer.

Options:
  --db FILE        the key store (default: authn.apiKeys.db of --config, else ${DEFAULT_KEYS_DB})
  --config FILE    read the key store's path from the server's config file
  --expires WHEN   a duration from now (30m, 12h, 90d, 2w) or an ISO 8601 time;
                   default: no expiry (rotate: the old key's lifetime)
  --attr NAME=VALUE  a principal attribute, e.g. --attr org=acme --attr tier=pro
                   (values are strings)
  --json           machine-readable output

Exit codes: 0 ok, 2 usage error, 4 unknown key id or unreadable key store.
`;

function usage(message: string): VerdictError {
  return new VerdictError('USAGE', `${message}; see "verdict keys --help"`);
}

/** `--grace`: how much longer the replaced key keeps working. @throws VerdictError USAGE */
function parseGrace(text: string, now: number): number {
  const ms = parseDuration('--grace', text);
  if (now + ms > LAST_REPRESENTABLE_MS) throw usage(`--grace ${text} is further ahead than a time can be written (the year 275760); give a shorter duration`);
  return ms;
}

/** `--expires`: a duration from now or an ISO 8601 time in the future. @throws VerdictError USAGE */
export function parseExpiry(text: string, now: number): number {
  if (isDuration(text)) {
    const ms = now + parseDuration('--expires', text);
    if (ms > LAST_REPRESENTABLE_MS) throw usage(`--expires ${text} is further ahead than a time can be written (the year 275760); give a shorter duration`);
    return ms;
  }
  const ms = parseIsoTime(text);
  if (ms === null) throw usage(`--expires must be a duration (90d) or an ISO 8601 time (2026-01-31T00:00:00Z), not ${JSON.stringify(text)}`);
  if (ms <= now) throw usage(`--expires ${text} is in the past`);
  return ms;
}

function parseAttributes(values: readonly string[]): Record<string, AttributeValue> {
  const attributes: Record<string, AttributeValue> = {};
  for (const pair of values) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw usage(`--attr wants NAME=VALUE, not ${JSON.stringify(pair)}`);
    const name = pair.slice(0, eq);
    if (name === 'scopes') throw usage('--attr scopes=... would be overwritten by the key\'s scopes; use --scope');
    // Assigned, it would set the object's prototype and the key would be stored without it.
    if (name === '__proto__') throw usage('--attr __proto__=... cannot be an attribute name; use another name');
    // Every check of the key would be refused (see CONSTRUCTOR_KEY_PROBLEM).
    if (name === 'constructor') throw usage('--attr constructor=... cannot be an attribute name (conditions could not read the attributes holding it); use another name');
    attributes[name] = pair.slice(eq + 1);
  }
  return attributes;
}

function storePath(values: { db?: string | undefined; config?: string | undefined }): string {
  if (values.db !== undefined) return values.db;
  if (values.config !== undefined) return readConfigFile(values.config).authn?.apiKeys?.db ?? DEFAULT_KEYS_DB;
  return DEFAULT_KEYS_DB;
}

function keyId(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw usage(`verdict keys ${command} takes one key id`);
  const id = positionals[0]!;
  // A whole key pasted by mistake would otherwise end up in an error message (and the terminal's scrollback).
  if (id.startsWith('vk_')) throw usage(`pass the key id, not the key itself (the id is the part after vk_, e.g. ${id.slice(3, 19)})`);
  if (!KEY_ID_PATTERN.test(id)) throw usage(`${JSON.stringify(id.slice(0, 40))} is not a key id (16 characters a-z, 2-7)`);
  return id;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** Shown in tables: minutes are enough, and UTC like everywhere else. */
function short(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

// Owners and names are typed by people; never let one move the cursor or recolour the terminal.
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

function asJson(info: ApiKeyInfo, now: number): Record<string, unknown> {
  return {
    id: info.id,
    owner: info.owner,
    name: info.name,
    roles: info.roles,
    scopes: info.scopes,
    attributes: info.attributes,
    createdAt: iso(info.createdAt),
    expiresAt: iso(info.expiresAt),
    lastUsedAt: iso(info.lastUsedAt),
    revokedAt: iso(info.revokedAt),
    replacedBy: info.replacedBy,
    status: statusOf(info, now),
  };
}

function describeStatus(info: ApiKeyInfo, now: number): string {
  const status = statusOf(info, now);
  if (status === 'active' && info.replacedBy !== null) return `rotated (until ${short(info.expiresAt)})`;
  return status;
}

function table(keys: readonly ApiKeyInfo[], now: number): string {
  const header = ['ID', 'OWNER', 'NAME', 'SCOPES', 'ROLES', 'CREATED', 'EXPIRES', 'LAST USED', 'STATUS'];
  const rows = keys.map((k) =>
    [
      k.id,
      k.owner,
      k.name ?? '-',
      k.scopes.length ? k.scopes.join(',') : '-',
      k.roles.length ? k.roles.join(',') : '-',
      short(k.createdAt),
      short(k.expiresAt),
      short(k.lastUsedAt),
      describeStatus(k, now),
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

function withStore<T>(path: string, create: boolean, run: (store: ApiKeyStore) => T): T {
  const store = ApiKeyStore.open(path, { create });
  try {
    return run(store);
  } finally {
    store.close();
  }
}

/** Strings of a `multiple: true` option (parseFlags types every string option as one string). */
function many(value: unknown): string[] {
  return Array.isArray(value) ? (value as string[]) : [];
}

export async function runKeys(argv: string[], io: CommandIO): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    (command === undefined ? io.stderr : io.stdout)(HELP);
    return command === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const common = {
    help: { type: 'boolean', short: 'h' },
    db: { type: 'string' },
    config: { type: 'string', short: 'c' },
    json: { type: 'boolean' },
  } as const;
  const now = Date.now();

  switch (command) {
    case 'create': {
      const { values } = parseFlags(
        rest,
        {
          ...common,
          owner: { type: 'string' },
          name: { type: 'string' },
          role: { type: 'string', multiple: true },
          scope: { type: 'string', multiple: true },
          attr: { type: 'string', multiple: true },
          expires: { type: 'string' },
        },
        false,
      );
      if (values.help) return help(io);
      if (values.owner === undefined || values.owner === '') throw usage('--owner is required: the principal id the key authenticates as');
      const input = {
        owner: values.owner,
        name: values.name ?? null,
        roles: many(values.role),
        scopes: many(values.scope),
        attributes: parseAttributes(many(values.attr)),
        expiresAt: values.expires === undefined ? null : parseExpiry(values.expires, now),
      };
      const { key, info } = withStore(storePath(values), true, (store) => store.create(input, now));
      if (values.json) {
        io.stdout(`${JSON.stringify({ key, ...asJson(info, now) }, null, 2)}\n`);
      } else {
        io.stdout(`${key}\n`);
        io.stderr(`created API key ${info.id} for ${printable(info.owner)}${info.expiresAt ? `, expires ${iso(info.expiresAt)}` : ''}; store it now: it is not shown again\n`);
      }
      return EXIT.OK;
    }
    case 'list': {
      const { values, positionals } = parseFlags(rest, { ...common, owner: { type: 'string' } }, true);
      if (values.help) return help(io);
      if (positionals.length > 0) throw usage('verdict keys list takes no arguments (filter with --owner)');
      const keys = withStore(storePath(values), false, (store) => store.list(values.owner === undefined ? {} : { owner: values.owner }));
      if (values.json) io.stdout(`${JSON.stringify(keys.map((k) => asJson(k, now)), null, 2)}\n`);
      else if (keys.length === 0) io.stderr('no API keys\n');
      else io.stdout(table(keys, now));
      return EXIT.OK;
    }
    case 'revoke': {
      const { values, positionals } = parseFlags(rest, common, true);
      if (values.help) return help(io);
      const id = keyId(positionals, 'revoke');
      const { before, after } = withStore(storePath(values), false, (store) => {
        const previous = store.get(id);
        return { before: previous, after: store.revoke(id, now) };
      });
      if (values.json) io.stdout(`${JSON.stringify(asJson(after, now), null, 2)}\n`);
      else if (before !== null && before.revokedAt !== null && before.revokedAt <= now) io.stdout(`API key ${id} was already revoked at ${iso(before.revokedAt)}\n`);
      else io.stdout(`revoked API key ${id} of ${printable(after.owner)}\n`);
      return EXIT.OK;
    }
    case 'rotate': {
      const { values, positionals } = parseFlags(rest, { ...common, grace: { type: 'string' }, expires: { type: 'string' } }, true);
      if (values.help) return help(io);
      const id = keyId(positionals, 'rotate');
      const options = {
        ...(values.grace !== undefined ? { graceMs: parseGrace(values.grace, now) } : {}),
        ...(values.expires !== undefined ? { expiresAt: parseExpiry(values.expires, now) } : {}),
      };
      const { key, info, previous } = withStore(storePath(values), false, (store) => store.rotate(id, options, now));
      if (values.json) {
        io.stdout(`${JSON.stringify({ key, ...asJson(info, now), previous: asJson(previous, now) }, null, 2)}\n`);
      } else {
        io.stdout(`${key}\n`);
        const old = previous.revokedAt !== null ? `${id} is revoked` : `${id} keeps working until ${iso(previous.expiresAt)}`;
        io.stderr(`rotated: new API key ${info.id} for ${printable(info.owner)}${info.expiresAt ? `, expires ${iso(info.expiresAt)}` : ''}; ${old}. Store the new key now: it is not shown again\n`);
      }
      return EXIT.OK;
    }
    default:
      throw usage(`unknown keys command ${JSON.stringify(command)}: expected create, list, revoke or rotate`);
  }
}

function help(io: CommandIO): number {
  io.stdout(HELP);
  return EXIT.OK;
}
