import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
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
export async function startGatewayVerdict(options: { forwardAuthStyle?: 'nginx' | 'traefik' | 'caddy' } = {}): Promise<GatewayVerdict> {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'verdict-gateway-'));
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
    stringify({ authn: { apiKeys: { db: keysDb } }, logLevel: 'warn', ...(options.forwardAuthStyle ? { forwardAuth: { style: options.forwardAuthStyle } } : {}) }),
  );
  const db = join(dir, 'decisions.db');
  const verdict = await startVerdict({ policies: EXAMPLE_POLICIES, db, args: ['--config', config, '--no-watch', '--log-level', 'info'] });
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
