import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { VerdictError, messageOf } from '../errors.js';
import { ADMIN_TOKEN_FILE_ENV } from '../server/admin-auth.js';
import { ENVIRONMENT_KEYS } from '../server/config.js';
import { packageDefinition } from '../server/grpc/descriptors.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { parseDuration } from './time.js';

const DEFAULT_SERVER = '127.0.0.1:50051';
/** ListSuspensions' largest page: fewest calls for a long list. */
const LIST_PAGE = 1000;

const HELP = `Usage: verdict suspend <list|lift|add> [options]

Lists, lifts and makes suspensions on a running verdict server, through its
Admin API. A suspended principal's checks are denied (DENIED_BY_SUSPENSION)
until the suspension ends or is lifted. Alerts suspend principals only when
the server's config turns it on (alerts.suspend); see the README, "Alerts:
webhooks and suspension". Every call is recorded in the decision log.

  verdict suspend list [--json]
      The suspensions in force, soonest to end first (every page of them).
  verdict suspend lift PRINCIPAL [--json]
      Lift PRINCIPAL's suspension now.
  verdict suspend add PRINCIPAL --for DURATION [--note TEXT] [--json]
      Suspend PRINCIPAL now, for DURATION (90s, 15m, 2h, 1d; at most 30d).

Options:
  --server HOST:PORT  the server's gRPC address (default: $${ENVIRONMENT_KEYS.grpc}, else ${DEFAULT_SERVER})
  --token-file FILE   the admin token (default: $${ADMIN_TOKEN_FILE_ENV}); without one, the
                      server must admit this connection by itself (loopback, by default)
  --ca FILE           the server's CA certificate (PEM): connect with TLS
  --json              machine-readable output

Exit codes: 0 ok, 2 usage error or refused admin identity, 4 not suspended, 5 server unreachable.
`;

interface SuspensionMessage {
  principalId: string;
  since: { seconds: string; nanos: number } | null;
  until: { seconds: string; nanos: number } | null;
  alertId: string;
  alertType: string;
  note: string;
}

interface Suspension {
  readonly principalId: string;
  readonly since: string;
  readonly until: string;
  readonly alertId: string;
  readonly alertType: string;
  readonly note: string;
}

function usage(message: string): VerdictError {
  return new VerdictError('USAGE', `${message}; see "verdict suspend --help"`);
}

type Unary = (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: unknown) => void) => void;

export async function runSuspend(argv: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    { server: { type: 'string' }, 'token-file': { type: 'string' }, ca: { type: 'string' }, for: { type: 'string' }, note: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    true,
  );
  if (values.help) {
    io.stdout(HELP);
    return EXIT.OK;
  }
  const [sub, ...rest] = positionals;
  let method: string;
  let request: Record<string, unknown>;
  if (sub === 'list') {
    if (rest.length > 0) throw usage('verdict suspend list takes no principal');
    method = 'ListSuspensions';
    request = { pageSize: LIST_PAGE };
  } else if (sub === 'lift' || sub === 'add') {
    if (rest.length !== 1 || rest[0] === '') throw usage(`verdict suspend ${sub} takes one principal id`);
    if (sub === 'lift') {
      method = 'LiftSuspension';
      request = { principalId: rest[0] };
    } else {
      if (values.for === undefined) throw usage('verdict suspend add needs --for DURATION (e.g. 15m)');
      const ms = parseDuration('--for', values.for);
      method = 'SuspendPrincipal';
      request = { principalId: rest[0], duration: { seconds: Math.floor(ms / 1000), nanos: 0 }, note: values.note ?? '' };
    }
  } else {
    io.stderr(HELP);
    return EXIT.USAGE;
  }
  if (sub !== 'add' && (values.for !== undefined || values.note !== undefined)) throw usage('--for and --note go with verdict suspend add');

  const server = values.server ?? process.env[ENVIRONMENT_KEYS.grpc] ?? DEFAULT_SERVER;
  const metadata = new grpc.Metadata();
  const tokenFile = values['token-file'] ?? process.env[ADMIN_TOKEN_FILE_ENV];
  if (tokenFile !== undefined && tokenFile !== '') metadata.set('authorization', `Bearer ${readSecret(tokenFile, '--token-file')}`);
  const credentials = values.ca === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(readBytes(values.ca, '--ca'));

  const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as { verdict: { v1: { Admin: typeof grpc.Client } } };
  const client = new loaded.verdict.v1.Admin(server, credentials);
  const call = (body: Record<string, unknown>): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, Unary>)[method]!;
      fn.call(client, body, metadata, { deadline: Date.now() + 10_000 }, (error, response) => (error ? reject(error) : resolve(response)));
    });
  let answer: unknown;
  try {
    answer = await call(request);
    if (method === 'ListSuspensions') {
      // Every page, in order; a token given back twice would page for ever.
      const all: SuspensionMessage[] = [];
      const tokens = new Set<string>();
      let page = answer as { suspensions: SuspensionMessage[]; nextPageToken: string };
      all.push(...page.suspensions);
      while (page.nextPageToken !== '' && !tokens.has(page.nextPageToken)) {
        tokens.add(page.nextPageToken);
        page = (await call({ ...request, pageToken: page.nextPageToken })) as typeof page;
        all.push(...page.suspensions);
      }
      answer = { suspensions: all };
    }
  } catch (error) {
    const e = error as grpc.ServiceError;
    const detail = e.details || messageOf(error);
    if (e.code === grpc.status.NOT_FOUND) {
      io.stderr(`verdict suspend: ${detail}\n`);
      return EXIT.INPUT;
    }
    if (e.code === grpc.status.UNAUTHENTICATED || e.code === grpc.status.PERMISSION_DENIED || e.code === grpc.status.INVALID_ARGUMENT) {
      io.stderr(`verdict suspend: ${server} refused the call: ${detail}\n`);
      return EXIT.USAGE;
    }
    io.stderr(`verdict suspend: cannot reach verdict at ${server} (${grpc.status[e.code] ?? 'error'}: ${detail}); is it running, and is --server its gRPC address?\n`);
    return EXIT.SERVER;
  } finally {
    client.close();
  }

  const suspensions = method === 'ListSuspensions' ? (answer as { suspensions: SuspensionMessage[] }).suspensions.map(plain) : [plain(answer as SuspensionMessage)];
  if (values.json) {
    io.stdout(`${JSON.stringify(method === 'ListSuspensions' ? suspensions : suspensions[0])}\n`);
    return EXIT.OK;
  }
  if (method === 'LiftSuspension') io.stdout(`lifted: ${line(suspensions[0]!)}\n`);
  else if (method === 'SuspendPrincipal') io.stdout(`suspended: ${line(suspensions[0]!)}\n`);
  else if (suspensions.length === 0) io.stdout('no principal is suspended\n');
  else for (const s of suspensions) io.stdout(`${line(s)}\n`);
  return EXIT.OK;
}

function plain(m: SuspensionMessage): Suspension {
  const iso = (t: SuspensionMessage['since']): string => new Date(Number(t?.seconds ?? 0) * 1000 + Math.round((t?.nanos ?? 0) / 1e6)).toISOString();
  return { principalId: m.principalId, since: iso(m.since), until: iso(m.until), alertId: m.alertId, alertType: m.alertType, note: m.note };
}

function line(s: Suspension): string {
  const cause = s.alertId === '' ? 'manual' : `alert ${s.alertId} (${s.alertType})`;
  return `${s.principalId}  until ${s.until}  since ${s.since}  ${cause}${s.note === '' ? '' : `  ${JSON.stringify(s.note)}`}`;
}

function readBytes(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new VerdictError('INPUT_UNREADABLE', `${flag} ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`);
  }
}

function readSecret(path: string, flag: string): string {
  const token = readBytes(path, flag).toString('utf8').trim();
  if (token === '') throw new VerdictError('INPUT_INVALID', `${flag} ${path} is empty`);
  return token;
}
