import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, expect } from 'vitest';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import { jsonToStruct } from '../../src/server/grpc/convert/struct.js';
import { makeTempDir, removeTempDirs } from './policies.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'verdict.js');

/**
 * Servers started by this test file and not yet exited. A test that times out never reaches
 * its own stop(); its server is killed when the file ends rather than left running. The hook
 * is registered first, so it runs after the file's own afterAll hooks (vitest runs them as a stack).
 */
const running = new Set<ChildProcess>();
afterAll(() => {
  for (const child of running) child.kill('SIGKILL');
});

/** The real binary needs dist/, which test/global-setup.ts builds once before any test runs. */
export function ensureBuilt(): void {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run the tests through vitest (its global setup builds), or `make build`');
}

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

export interface VerdictProcess {
  readonly child: ChildProcess;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly logs: LogLine[];
  readonly stderr: string[];
  /** Resolves with the exit code once the process ends. */
  readonly exited: Promise<number | null>;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `verdict serve` on free loopback ports and waits until it serves. */
export async function startVerdict(options: {
  policies: string;
  db: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
  /** The process's limit on open files (`ulimit -n`), when a test needs a low one. */
  openFiles?: number;
  /** Flags for node itself, before the script (e.g. --trace-gc-nvp: its lines arrive in `logs` as text). */
  nodeArgs?: string[];
  /** Called with each log line as it arrives, from the first (to act while the server starts). */
  onLine?: (line: LogLine, child: ChildProcess) => void;
}): Promise<VerdictProcess> {
  const argv = [...(options.nodeArgs ?? []), BIN, 'serve', '--policies', options.policies, '--db', options.db, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', ...(options.args ?? [])];
  const [command, args] = options.openFiles === undefined ? [process.execPath, argv] : ['/bin/sh', ['-c', `ulimit -n ${options.openFiles} && exec "$0" "$@"`, process.execPath, ...argv]];
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const logs: LogLine[] = [];
  const stderr: string[] = [];
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { level: 0, msg: text };
    }
    logs.push(line);
    options.onLine?.(line, child);
    for (const w of [...waiters]) {
      if (w.predicate(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  createInterface({ input: child.stderr! }).on('line', (text) => stderr.push(text));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> => {
    const found = logs.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such log line within ${timeoutMs} ms; logs: ${JSON.stringify(logs)} stderr: ${stderr.join('\n')}`)), timeoutMs);
      waiters.push({ predicate, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      void exited.then(() => setTimeout(() => reject(new Error(`verdict exited; stderr: ${stderr.join('\n')}`)), 100));
    });
  };
  // Generous by default: on a loaded machine, --workers N forks N processes that each load the policies.
  const serving = await waitForLog((l) => l.msg === 'verdict serving', options.startTimeoutMs ?? 30_000);
  const port = (address: unknown): number => Number(String(address).split(':').pop());
  return {
    child,
    grpcPort: port(serving.grpc),
    httpPort: port(serving.http),
    logs,
    stderr,
    exited,
    waitForLog,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

type Unary = (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: unknown) => void) => grpc.ClientUnaryCall;

export interface VerdictClient {
  call<T = Record<string, unknown>>(service: 'Authorization' | 'Admin', method: string, request: unknown, options?: grpc.CallOptions): Promise<T>;
  close(): void;
}

const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as {
  verdict: { v1: Record<string, typeof grpc.Client> };
};

/** A plain grpc-js client over the same descriptors the server serves. */
export function verdictClient(port: number, options: { ownConnection?: boolean } = {}): VerdictClient {
  const address = `127.0.0.1:${port}`;
  // grpc-js shares one connection among clients of the same target unless told otherwise.
  const channelOptions = options.ownConnection ? { 'grpc.use_local_subchannel_pool': 1 } : {};
  const clients = {
    Authorization: new loaded.verdict.v1.Authorization!(address, grpc.credentials.createInsecure(), channelOptions),
    Admin: new loaded.verdict.v1.Admin!(address, grpc.credentials.createInsecure(), channelOptions),
  };
  return {
    call: (service, method, request, options = {}) =>
      new Promise((resolve, reject) => {
        const client = clients[service] as unknown as Record<string, Unary>;
        const fn = client[method];
        if (!fn) throw new Error(`no method ${service}.${method}`);
        fn.call(client, request, new grpc.Metadata(), { deadline: Date.now() + 10_000, ...options }, (error, response) =>
          error ? reject(error) : resolve(response as never),
        );
      }),
    close: () => {
      clients.Authorization.close();
      clients.Admin.close();
    },
  };
}

/**
 * The pid of the process serving each connection to `port` on 127.0.0.1, by the
 * client's port (`ss`): with `--workers N`, which worker a connection reached.
 */
export function workersByClientPort(port: number): Map<number, number> {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  const byPort = new Map<number, number>();
  for (const line of out.split('\n')) {
    const match = /\S+:\d+\s+\S+:(\d+)\s+users:\(\("[^"]*",pid=(\d+)/.exec(line);
    if (match) byPort.set(Number(match[1]), Number(match[2]));
  }
  return byPort;
}

/** A CheckRequest message from plain JSON-shaped parts. */
export function checkRequest(parts: {
  principal: { id: string; roles?: string[]; attributes?: Record<string, unknown> };
  action: string;
  resource: { type: string; id?: string; attributes?: Record<string, unknown> };
  context?: Record<string, unknown>;
  requestId?: string;
}): Record<string, unknown> {
  return {
    principal: { id: parts.principal.id, roles: parts.principal.roles ?? [], attributes: jsonToStruct(parts.principal.attributes ?? {}) },
    action: parts.action,
    resource: { type: parts.resource.type, id: parts.resource.id ?? '', attributes: jsonToStruct(parts.resource.attributes ?? {}) },
    context: { attributes: jsonToStruct(parts.context ?? {}) },
    requestId: parts.requestId ?? '',
  };
}

/** The grpc.health.v1 status the server reports for `service` ('' for the server as a whole). */
export async function healthStatus(port: number, service: string): Promise<string> {
  const health = loaded as unknown as { grpc: { health: { v1: { Health: typeof grpc.Client } } } };
  const client = new health.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as {
    check(req: unknown, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void;
    close(): void;
  };
  try {
    return await new Promise((resolve, reject) => client.check({ service }, (e, r) => (e ? reject(e) : resolve(r.status))));
  } finally {
    client.close();
  }
}

/**
 * A `verdict serve` on the shipped policies with a fresh decision log, started before
 * the tests of the describe block that calls this and stopped after them (it must
 * exit 0). Read `server` and `db` inside the tests, once the block has started.
 */
export function useShippedServer(): { readonly server: VerdictProcess; readonly db: string } {
  const shipped: { server?: VerdictProcess; db?: string } = {};
  beforeAll(async () => {
    ensureBuilt();
    shipped.db = join(makeTempDir(), 'd.db');
    shipped.server = await startVerdict({ policies: join(ROOT, 'policies'), db: shipped.db });
  }, 60_000);
  afterAll(async () => {
    expect(await shipped.server?.stop()).toBe(0);
    removeTempDirs();
  });
  return {
    get server(): VerdictProcess {
      if (shipped.server === undefined) throw new Error('the shipped server has not started: read it inside a test');
      return shipped.server;
    },
    get db(): string {
      if (shipped.db === undefined) throw new Error('the shipped server has not started: read it inside a test');
      return shipped.db;
    },
  };
}

/** One sample of `/metrics` on `httpPort`: the value of the line `name{labels}`, NaN when absent. */
export async function metricValue(httpPort: number, line: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return Number(new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
}

/** A CheckRequest the shipped policies allow (dana reads fraud-v3), with `context` if given. */
export function shippedAllowedRequest(context?: Record<string, unknown>): Record<string, unknown> {
  return checkRequest({
    principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
    action: 'read',
    resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } },
    ...(context === undefined ? {} : { context }),
  });
}

/** The effect of one Check the shipped policies allow (dana reads fraud-v3), on a connection of its own. */
export async function shippedAllowedCheck(grpcPort: number): Promise<string> {
  const client = verdictClient(grpcPort, { ownConnection: true });
  try {
    return (await client.call<{ effect: string }>('Authorization', 'Check', shippedAllowedRequest())).effect;
  } finally {
    client.close();
  }
}

/**
 * For `startVerdict`'s onLine: makes `policies` slow to load cold (a directory of
 * 100,000 principals: seconds), then, when a process logs `loading policies`, adds a
 * deny on every prediction (rule `freeze-predictions`) and sends the server SIGHUP, once.
 */
export function signalWhileLoading(policies: string): (line: LogLine, child: ChildProcess) => void {
  writeFileSync(join(policies, 'people.json'), JSON.stringify({ kind: 'principals', principals: Array.from({ length: 100_000 }, (_, i) => ({ id: `person-${i}`, roles: ['viewer'] })) }));
  let signalled = false;
  return (line, child) => {
    if (line.msg !== 'loading policies' || signalled) return;
    signalled = true;
    writeFileSync(join(policies, 'freeze.yaml'), 'kind: rules\nrules:\n  - id: freeze-predictions\n    effect: deny\n    actions: [predict]\n    resource: { type: model }\n');
    child.kill('SIGHUP');
  };
}
