import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type GenerateKeyPairResult, type JWTPayload } from 'jose';
import type { Alert, AlertType } from '../../src/analysis/alert.js';
import { openAlertReader } from '../../src/analysis/alert-store.js';
import { startServer, type RunningServer } from '../../src/server/app.js';
import { readConfigFile, resolveConfig } from '../../src/server/config.js';
import { WEBHOOK_HEADERS } from '../../src/server/webhooks.js';
import { createLogger } from '../../src/server/logger.js';
import { ROOT } from '../helpers/verdict-process.js';

/** A principal the example policies allow to predict with fraud-v3, over gRPC and forward-auth. */
export const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
export const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };

/** The example set's route for predict, as NGINX forwards it, with the caller named by trusted headers. */
export function forwardAuthHeaders(user: string): Record<string, string> {
  return {
    'x-original-method': 'POST',
    'x-original-uri': '/v1/models/fraud-v3/predict',
    'x-model-org': 'acme',
    'x-model-classification': 'internal',
    'x-user': user,
    'x-roles': 'data_scientist',
    'x-org': 'acme',
    'x-employment': 'employee',
  };
}

export interface TestServer {
  readonly server: RunningServer;
  readonly db: string;
  readonly dir: string;
  stop(): Promise<void>;
}

const dirs: string[] = [];
export function cleanUp(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/**
 * verdict on the example policies, in this process, on loopback ports; `file`
 * is the config file's content (as JSON, which is YAML), read as the server
 * reads it; `db` to reopen an earlier log.
 */
export async function startTestServer(file: Record<string, unknown> = {}, db?: string): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-alerts-'));
  dirs.push(dir);
  const path = db ?? join(dir, 'decisions.db');
  const configFile = join(dir, 'verdict.yaml');
  writeFileSync(configFile, JSON.stringify(file));
  const config = resolveConfig([
    {
      policies: join(ROOT, 'policies'),
      db: path,
      grpc: '127.0.0.1:0',
      http: '127.0.0.1:0',
      watch: false,
      trustedPrincipal: { idHeader: 'x-user', rolesHeader: 'x-roles', attributeHeaders: { org: 'x-org', employment: 'x-employment' } },
      // The gateway that asks AuthZEN questions about its users.
      authzen: { peps: ['trusted-header:model-gateway'] },
    },
    readConfigFile(configFile),
  ]);
  const server = await startServer(config, createLogger('silent'));
  return { server, db: path, dir, stop: () => server.close() };
}

let sequence = 0;
/** An alert as a detector raises it. */
export function alertAbout(principalId: string, type: AlertType = 'probing', kind: Alert['subject']['kind'] = 'principal'): Alert {
  const now = Date.now();
  sequence++;
  return {
    id: `alert-${type}-${principalId}-${sequence}`,
    type,
    subject: { kind, id: principalId },
    windowStart: now - 3_600_000,
    windowEnd: now,
    observed: 80,
    threshold: 50,
    decisionIds: ['0190e7c8-0000-7000-8000-000000000001'],
    raisedAt: now,
    summary: `${principalId}: 80% of 60 decisions denied in an hour (threshold 50%)`,
  };
}

/** One request a Receiver got. */
export interface Delivery {
  readonly alertId: string;
  readonly body: string;
  readonly signature: string | undefined;
  readonly timestamp: string | undefined;
  readonly idempotencyKey: string | undefined;
  status: number;
}

/** What a webhook delivery says of its alert, as the tests read it. */
export interface PostedAlert {
  readonly id: string;
  readonly type: string;
  readonly subject: { readonly kind: string; readonly id: string };
  readonly observed: number;
  readonly threshold: number;
}

/** An HTTP receiver whose answer to each request `answer` decides: a status, or 'hang' (never answers). */
export class Receiver {
  readonly deliveries: Delivery[] = [];
  readonly hung: ServerResponse[] = [];
  answer: (delivery: Delivery) => number | 'hang' = () => 204;
  private server: Server | null = null;
  port = 0;
  private waiters: { predicate: () => boolean; resolve: () => void }[] = [];

  async listen(port = 0): Promise<void> {
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const header = (name: string): string | undefined => req.headers[name] as string | undefined;
        const delivery: Delivery = {
          alertId: header(WEBHOOK_HEADERS.alertId) ?? '',
          body: Buffer.concat(chunks).toString('utf8'),
          signature: header(WEBHOOK_HEADERS.signature),
          timestamp: header(WEBHOOK_HEADERS.timestamp),
          idempotencyKey: header(WEBHOOK_HEADERS.idempotencyKey),
          status: 0,
        };
        this.deliveries.push(delivery);
        const answer = this.answer(delivery);
        if (answer === 'hang') this.hung.push(res);
        else {
          delivery.status = answer;
          res.writeHead(answer).end();
        }
        this.notify();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks/verdict`;
  }

  /** Stops listening: connections are refused until it listens again. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const res of this.hung.splice(0)) res.destroy();
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  /** The alert of each delivery, in the order received. */
  posted(): PostedAlert[] {
    return this.deliveries.map((d) => (JSON.parse(d.body) as { alert: PostedAlert }).alert);
  }

  /** Successful deliveries per alert id. */
  accepted(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const d of this.deliveries) if (d.status >= 200 && d.status < 300) counts.set(d.alertId, (counts.get(d.alertId) ?? 0) + 1);
    return counts;
  }

  until(predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`receiver: condition not met within ${timeoutMs} ms; ${this.deliveries.length} deliveries`)), timeoutMs);
      this.waiters.push({ predicate, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) {
      if (w.predicate()) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }
}

/** The issuer and audience of the tokens the JWT-authenticating test servers trust. */
export const TOKEN_ISSUER = 'https://id.verdict.test/';
export const TOKEN_AUDIENCE = 'verdict';
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** A token for dana's roles and attributes, valid for 5 minutes, signed with `key` (kid k1), with `claims` over them. */
export function signToken(key: CryptoKey, claims: JWTPayload): Promise<string> {
  return new SignJWT({ iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, iat: nowSeconds(), exp: nowSeconds() + 300, roles: ['data_scientist'], org: 'acme', employment: 'employee', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .sign(key);
}

/** The issuer's key, a forger's, and a JWKS file in `dir` trusting the issuer's alone. */
export async function tokenKeys(dir: string): Promise<{ issuer: GenerateKeyPairResult; forger: GenerateKeyPairResult; jwks: string }> {
  const issuer = await generateKeyPair('ES256');
  const forger = await generateKeyPair('ES256');
  const jwks = join(dir, 'jwks.json');
  writeFileSync(jwks, JSON.stringify({ keys: [{ ...(await exportJWK(issuer.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }));
  return { issuer, forger, jwks };
}

/** A server on the shipped policies, its log `db`, authenticating gateway requests with tokens the JWKS file `jwks` verifies. */
export function jwtServerSettings(db: string, jwks: string): Record<string, unknown> {
  return {
    policies: join(ROOT, 'policies'),
    db,
    grpc: '127.0.0.1:0',
    http: '127.0.0.1:0',
    watch: false,
    authn: { jwt: { issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, algorithms: ['ES256'], jwksFile: jwks, claims: { roles: 'roles', attributes: { org: 'org', employment: 'employment' } } } },
  };
}

/** A forward-auth request for model `model` with `bearer`, to the HTTP port `port`, sent from the loopback address `from`; its status. */
export function bearerForwardAuth(port: number, bearer: string, from = '127.0.0.1', model = 'fraud-detector-v3'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/forward-auth',
        localAddress: from,
        agent: false,
        headers: { 'x-original-method': 'GET', 'x-original-uri': `/v1/models/${model}`, authorization: `Bearer ${bearer}`, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The alerts table of the log `db` once it holds at least `count` alerts (the writer stores them a little after they are raised). */
export async function storedAlerts(db: string, count: number): Promise<readonly Alert[]> {
  const reader = openAlertReader(db);
  try {
    for (let tries = 0; ; tries++) {
      const stored = await reader.list({ limit: 1000 });
      if (stored.length >= count) return stored;
      if (tries > 400) throw new Error(`${stored.length} alerts stored, ${count} expected`);
      await new Promise((r) => setTimeout(r, 25));
    }
  } finally {
    reader.close();
  }
}

/** A server of jwtServerSettings and the keys its tokens are signed with; `stop` ends it and removes its directory. */
export interface JwtAlertServer {
  readonly server: RunningServer;
  readonly db: string;
  readonly issuer: GenerateKeyPairResult;
  readonly forger: GenerateKeyPairResult;
  stop(): Promise<void>;
}

/**
 * A server of jwtServerSettings in a directory of its own, whose detectors' settings are
 * `detectors` and whose alerts are POSTed to `receiver` (listening), read from a config
 * file as the server reads its --config.
 */
export async function startJwtAlertServer(detectors: Record<string, unknown>, receiver: Receiver): Promise<JwtAlertServer> {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-jwt-alerts-'));
  const { issuer, forger, jwks } = await tokenKeys(dir);
  const db = join(dir, 'decisions.db');
  const configFile = join(dir, 'verdict.yaml');
  writeFileSync(configFile, JSON.stringify({ alerts: { detectors, webhooks: [{ url: receiver.url, secret: 'whsec-test-0123456789abcdef', backoff: { initialMs: 20, maxMs: 200 } }] } }));
  const server = await startServer(resolveConfig([jwtServerSettings(db, jwks), readConfigFile(configFile)]), createLogger('silent'));
  return {
    server,
    db,
    issuer,
    forger,
    stop: async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `probe` until it gives a value (not undefined), or fails naming `what` after `timeoutMs`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not seen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
