import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ApiKeyStore } from '../../src/authn/api-keys.js';
import { ROOT, ensureBuilt, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

/** The example policy set, whose routes.yaml protects the model server's endpoints. */
export const EXAMPLE_POLICIES = join(ROOT, 'policies');

/** The principals of policies/tests/*.yaml, as API keys would carry them. */
export const PRINCIPALS = {
  dana: { roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
  carl: { roles: ['data_scientist'], attributes: { org: 'acme', employment: 'contractor' } },
  vic: { roles: ['viewer'], attributes: { org: 'acme' } },
  ada: { roles: ['admin'], attributes: { org: 'acme' } },
} as const;
export type PrincipalName = keyof typeof PRINCIPALS;

export interface GatewayVerdict {
  readonly verdict: VerdictProcess;
  readonly dir: string;
  readonly db: string;
  /** An active API key per principal. */
  readonly keys: Readonly<Record<PrincipalName, string>>;
  /** A key of dana's that has been revoked. */
  readonly revokedKey: string;
  stop(): Promise<void>;
}

/**
 * The real `verdict serve` on the example policies, authenticating gateway requests
 * with API keys (authn.apiKeys) made here in a fresh key store; forward-auth in
 * the given style (the default, nginx, when none is given).
 */
export async function startGatewayVerdict(
  options: {
    forwardAuthStyle?: 'nginx' | 'traefik' | 'caddy';
    config?: Record<string, unknown>;
    /** Policy files served beside the example policies (file name to YAML text). */
    extraPolicies?: Record<string, string>;
  } = {},
): Promise<GatewayVerdict> {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'verdict-gateway-'));
  let policies = EXAMPLE_POLICIES;
  if (options.extraPolicies !== undefined) {
    policies = join(dir, 'policies');
    cpSync(EXAMPLE_POLICIES, policies, { recursive: true });
    for (const [name, text] of Object.entries(options.extraPolicies)) writeFileSync(join(policies, name), text);
  }
  const keysDb = join(dir, 'keys.db');
  const store = ApiKeyStore.open(keysDb);
  const keys = {} as Record<PrincipalName, string>;
  for (const [name, principal] of Object.entries(PRINCIPALS) as [PrincipalName, (typeof PRINCIPALS)[PrincipalName]][]) {
    keys[name] = store.create({ owner: name, name: `${name}'s test key`, roles: principal.roles, attributes: principal.attributes }).key;
  }
  const revoked = store.create({ owner: 'dana', name: 'leaked', roles: ['data_scientist'], attributes: { org: 'acme' } });
  store.revoke(revoked.info.id);
  store.close();

  const config = join(dir, 'verdict.yaml');
  writeFileSync(
    config,
    stringify({ authn: { apiKeys: { db: keysDb } }, logLevel: 'warn', ...(options.forwardAuthStyle ? { forwardAuth: { style: options.forwardAuthStyle } } : {}), ...options.config }),
  );
  const db = join(dir, 'decisions.db');
  const verdict = await startVerdict({ policies, db, args: ['--config', config, '--no-watch', '--log-level', 'info'] });
  return {
    verdict,
    dir,
    db,
    keys,
    revokedKey: revoked.key,
    stop: async () => {
      await verdict.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What reached the upstream behind a gateway. */
/** The caller id of the gateway that asks AuthZEN about other subjects (listed in authzen.peps by startVerdictWithPep). */
export const PEP = 'api-key:model-gateway';

/** A gateway verdict (startGatewayVerdict) that lists PEP in authzen.peps, and PEP's API key. */
export async function startVerdictWithPep(): Promise<{ verdict: GatewayVerdict; pepKey: string }> {
  const verdict = await startGatewayVerdict({ config: { authzen: { peps: [PEP] } } });
  const store = ApiKeyStore.open(join(verdict.dir, 'keys.db'));
  const pepKey = store.create({ owner: 'model-gateway', name: 'the gateway asking AuthZEN' }).key;
  store.close();
  return { verdict, pepKey };
}

export interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** The upstream behind a real gateway: a tiny "model server" that records what reaches it. */
export async function startModelServer(): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
      const body = JSON.stringify({ prediction: 0.97, model: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

/** A port free on 127.0.0.1 a moment ago, for a gateway that cannot be told to pick its own. */
export async function freePort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** The nginx binary (the Debian package), or null on a machine without it; CI installs it (.ci/run). */
export const NGINX: string | null = ['/usr/sbin/nginx', 'nginx'].find((bin) => spawnSync(bin, ['-v']).status === 0) ?? null;

/** The config docs/gateways.md shows, with test ports and a temp prefix. */
export function nginxConfig(dir: string, port: number, verdictHttpPort: number, upstreamPort: number): string {
  return `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;

  upstream verdict { server 127.0.0.1:${verdictHttpPort}; }
  upstream model_server { server 127.0.0.1:${upstreamPort}; }

  # Facts about the model come from the gateway, never from the client. Keyed on
  # $request_uri: inside the auth sub-request $uri is the auth location's.
  map $request_uri $model_org {
    ~*^/v1/models/globex-  globex;
    default               acme;
  }
  map $request_uri $model_env {
    ~*^/v1/models/churn-   staging;
    default               production;
  }
  map $request_uri $model_classification {
    ~*^/v1/models/pricing- restricted;
    default               internal;
  }

  server {
    listen 127.0.0.1:${port};

    location /v1/ {
      auth_request /_verdict;
      auth_request_set $verdict_principal $upstream_http_x_verdict_principal;
      auth_request_set $verdict_decision_id $upstream_http_x_verdict_decision_id;
      proxy_set_header X-Verdict-Principal $verdict_principal;
      proxy_set_header X-Verdict-Decision-Id $verdict_decision_id;
      proxy_set_header X-Request-Id $request_id;
      add_header X-Verdict-Decision-Id $verdict_decision_id always;
      proxy_pass http://model_server;
      auth_request_set $verdict_status $upstream_status;
      auth_request_set $verdict_retry_after $upstream_http_retry_after;
      auth_request_set $verdict_ratelimit $upstream_http_ratelimit;
      auth_request_set $verdict_ratelimit_policy $upstream_http_ratelimit_policy;
      error_page 500 = @verdict_refused;
    }

    location @verdict_refused {
      if ($verdict_status = 429) {
        add_header X-Verdict-Decision-Id $verdict_decision_id always;
        add_header Retry-After $verdict_retry_after always;
        add_header RateLimit $verdict_ratelimit always;
        add_header RateLimit-Policy $verdict_ratelimit_policy always;
        return 429 '{"error":"rate limited"}';
      }
      return 500;
    }

    location = /_verdict {
      internal;
      proxy_pass http://verdict/forward-auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Request-Id $request_id;
      proxy_set_header X-Model-Org $model_org;
      proxy_set_header X-Model-Env $model_env;
      proxy_set_header X-Model-Classification $model_classification;
    }
  }
}
`;
}

export interface RunningNginx {
  /** `http://127.0.0.1:<port>` */
  readonly base: string;
  readonly port: number;
  /** Sends one request exactly as given (no URL normalisation, unlike fetch), on its own connection. */
  send(method: string, rawPath: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string> }>;
  stop(): Promise<void>;
}

/** Starts NGINX with nginxConfig in front of verdict's HTTP port and an upstream, from its own temporary prefix. */
export async function startNginx(verdictHttpPort: number, upstreamPort: number): Promise<RunningNginx> {
  if (NGINX === null) throw new Error('no nginx binary (Debian: apt-get install nginx)');
  const dir = mkdtempSync(join(tmpdir(), 'verdict-nginx-'));
  mkdirSync(join(dir, 'tmp'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, verdictHttpPort, upstreamPort));
  const nginx = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  nginx.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  nginx.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => nginx.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (nginx.exitCode !== null) throw new Error(`nginx exited ${nginx.exitCode}: ${output}\n${readIfExists(join(dir, 'error.log'))}`);
    try {
      await fetch(`${base}/`);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`nginx did not start: ${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    base,
    port,
    send: (method, rawPath, headers) => sendRaw(port, method, rawPath, headers),
    stop: async () => {
      if (nginx.exitCode === null) {
        nginx.kill('SIGQUIT');
        const timer = setTimeout(() => nginx.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readIfExists(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** One HTTP/1.1 request written byte for byte; the answer's status and headers (lower-case names, repeated ones joined). */
function sendRaw(port: number, method: string, rawPath: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const lines = [`${method} ${rawPath} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    const chunks: Buffer[] = [];
    socket.setTimeout(15_000, () => socket.destroy(new Error(`no answer to ${method} ${rawPath}`)));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const head = text.slice(0, text.indexOf('\r\n\r\n') === -1 ? text.length : text.indexOf('\r\n\r\n')).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
      const answer: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        answer[name] = answer[name] === undefined ? value : `${answer[name]}, ${value}`;
      }
      resolve({ status, headers: answer });
    });
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}
