// JWT against the real server: a local JWKS HTTP server the test can stop, tokens
// through forward-auth and Envoy ext_authz. A token that lives too long or claims to
// be issued in the future is refused (401, recorded); a JWKS that cannot be reached
// is verdict's failure, answered 503 / UNAVAILABLE rather than 401, and recorded.
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { CompactSign, SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision } from '../../src/decisions/query.js';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';
import { ROOT, ensureBuilt, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

const ISSUER = 'https://id.verdict.test/';
const AUDIENCE = 'verdict';
const MAX_AGE = 3600;

let privateKey: CryptoKey;
let publicJwk: JWK;
let jwks: Server;
let jwksPort: number;
let verdict: VerdictProcess;
let db: string;
let envoy: grpc.Client;

function listenJwks(port = 0): Promise<Server> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [publicJwk] }));
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

function stopJwks(): Promise<void> {
  jwks.closeAllConnections();
  return new Promise((resolve) => jwks.close(() => resolve()));
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function token(claims: JWTPayload = {}): Promise<string> {
  const payload: JWTPayload = { sub: 'dana', iss: ISSUER, aud: AUDIENCE, iat: nowSeconds(), exp: nowSeconds() + 300, roles: ['data_scientist'], org: 'acme', employment: 'employee', ...claims };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(privateKey);
}

async function forwardAuth(bearer: string): Promise<{ status: number; body: string; decisionId: string | null }> {
  const response = await fetch(`http://127.0.0.1:${verdict.httpPort}/forward-auth`, {
    headers: {
      'x-original-method': 'GET',
      'x-original-uri': '/v1/models/fraud-detector-v3',
      authorization: `Bearer ${bearer}`,
      'x-model-org': 'acme',
      'x-model-classification': 'internal',
    },
  });
  return { status: response.status, body: await response.text(), decisionId: response.headers.get('x-verdict-decision-id') };
}

interface EnvoyResponse {
  status: { code: number; message: string };
  denied_response?: { status: { code: string } };
}

function extAuthz(bearer: string): Promise<EnvoyResponse> {
  const request = {
    attributes: {
      request: {
        http: {
          method: 'GET',
          path: '/v1/models/fraud-detector-v3',
          headers: { ':method': 'GET', ':path': '/v1/models/fraud-detector-v3', authorization: `Bearer ${bearer}`, 'x-model-org': 'acme', 'x-model-classification': 'internal' },
        },
      },
    },
  };
  return new Promise((resolve, reject) => {
    (envoy as unknown as { Check: (r: object, cb: (e: grpc.ServiceError | null, v: EnvoyResponse) => void) => void }).Check(request, (error, value) => (error ? reject(error) : resolve(value)));
  });
}

beforeAll(async () => {
  ensureBuilt();
  const pair = await generateKeyPair('ES256', { extractable: true });
  privateKey = pair.privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  jwks = await listenJwks();
  jwksPort = (jwks.address() as AddressInfo).port;
  const dir = makeTempDir();
  db = join(dir, 'd.db');
  const config = join(dir, 'verdict.yaml');
  writeFileSync(
    config,
    stringify({
      authn: {
        jwt: {
          issuer: ISSUER,
          audience: AUDIENCE,
          algorithms: ['ES256'],
          jwksUrl: `http://127.0.0.1:${jwksPort}/jwks.json`,
          clockSkewSeconds: 30,
          maxTokenAgeSeconds: MAX_AGE,
          claims: { roles: 'roles', attributes: { org: 'org', employment: 'employment' } },
        },
      },
    }),
  );
  verdict = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--config', config, '--no-watch'] });
  const definition = loadSync('envoy/service/auth/v3/external_auth.proto', { includeDirs: [fileURLToPath(new URL('../../proto', import.meta.url))], keepCase: true, defaults: true, oneofs: true, enums: String, longs: String });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { envoy: { service: { auth: { v3: { Authorization: new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client } } } } };
  envoy = new loaded.envoy.service.auth.v3.Authorization(`127.0.0.1:${verdict.grpcPort}`, grpc.credentials.createInsecure());
}, 60_000);

afterAll(async () => {
  envoy?.close();
  expect(await verdict?.stop()).toBe(0);
  if (jwks.listening) await stopJwks();
  removeTempDirs();
});

describe('an unreachable JWKS', () => {
  it('is 503 at forward-auth and UNAVAILABLE / 503 at ext_authz, recorded; once it is back, tokens are accepted again', async () => {
    // First in this file: the server has not fetched the keys yet (it does on the first token).
    await stopJwks();

    const answer = await forwardAuth(await token());
    expect(answer.status, answer.body).toBe(503);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'authentication unavailable', reason: 'DENIED_UNAUTHENTICATED' });
    const row = getDecision(db, answer.decisionId!)!;
    expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED' });
    expect(row.errors[0]!.message).toMatch(/^UNAVAILABLE: /);

    const envoyAnswer = await extAuthz(await token());
    expect(envoyAnswer.status.code).toBe(grpc.status.UNAVAILABLE);
    expect(envoyAnswer.denied_response?.status.code).toBe('ServiceUnavailable');

    // A bad token is still the caller's fault (401), reachable JWKS or not: its signature cannot be checked, but
    // a token that does not even parse is refused before any key is needed.
    expect((await forwardAuth('not-a-jwt')).status).toBe(401);

    jwks = await listenJwks(jwksPort);
    const back = await forwardAuth(await token());
    expect(back.status, back.body).toBe(200);
  }, 60_000);
});

describe('JWT token lifetime against the real server', () => {
  it('accepts a token within the bounds', async () => {
    const answer = await forwardAuth(await token());
    expect(answer.status, answer.body).toBe(200);
    expect(getDecision(db, answer.decisionId!)!.principalId).toBe('dana');
  });

  it('refuses exp: 1e20 (a token valid for ever once leaked), 401 and recorded', async () => {
    const answer = await forwardAuth(await token({ exp: 1e20 }));
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).detail).toContain(`more than ${MAX_AGE} s from now (authn.jwt.maxTokenAgeSeconds is ${MAX_AGE})`);
    const row = getDecision(db, answer.decisionId!)!;
    expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED' });
    expect(row.errors[0]!.message).toMatch(/^MALFORMED_CREDENTIAL: token expires at 100000000000000000000, more than 3600 s from now/);
  });

  it('refuses a mapped claim holding 1e999 (Infinity once parsed), 401 naming the claim, recorded; an unmapped one is ignored', async () => {
    // SignJWT would serialise Infinity as null: the payload is signed as written.
    const raw = async (claims: string): Promise<string> =>
      new CompactSign(new TextEncoder().encode(`{"sub": "dana", "iss": "${ISSUER}", "aud": "${AUDIENCE}", "iat": ${nowSeconds()}, "exp": ${nowSeconds() + 300}, "roles": ["data_scientist"], ${claims}}`))
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .sign(privateKey);
    for (const [claims, field] of [
      ['"org": 1e999, "employment": "employee"', 'org'],
      ['"org": "acme", "employment": {"since": [2020, -1e999]}', 'employment.since[1]'],
    ] as const) {
      const answer = await forwardAuth(await raw(claims));
      expect(answer.status, claims).toBe(401);
      expect(JSON.parse(answer.body).detail, claims).toContain(`claim ${field}: number must be finite`);
      const row = getDecision(db, answer.decisionId!)!;
      expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_UNAUTHENTICATED' });
      expect(row.errors[0]!.message).toMatch(new RegExp(`^MALFORMED_CREDENTIAL: claim ${field.replace(/[.[\]]/g, '\\$&')}: number must be finite`));
    }
    // A claim the mapping does not read never becomes an attribute, so it is not refused.
    expect((await forwardAuth(await raw('"org": "acme", "employment": "employee", "unmapped": 1e999'))).status).toBe(200);
  });

  it('refuses a mapped claim holding a `__proto__` member, as every transport refuses it, naming it, recorded', async () => {
    const raw = async (claims: string): Promise<string> =>
      new CompactSign(new TextEncoder().encode(`{"sub": "dana", "iss": "${ISSUER}", "aud": "${AUDIENCE}", "iat": ${nowSeconds()}, "exp": ${nowSeconds() + 300}, "roles": ["data_scientist"], ${claims}}`))
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .sign(privateKey);
    const answer = await forwardAuth(await raw('"org": "acme", "employment": {"__proto__": {"level": "admin"}}'));
    expect(answer.status).not.toBe(200);
    const row = getDecision(db, answer.decisionId!)!;
    expect(row).toMatchObject({ effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' });
    expect(row.errors[0]!.message).toBe('principal.attributes.employment.__proto__: cannot be an attribute name (send it under another name)');
  });

  it('refuses an exp just past the bound, and accepts one just inside it', async () => {
    expect((await forwardAuth(await token({ exp: nowSeconds() + MAX_AGE + 120 }))).status).toBe(401);
    expect((await forwardAuth(await token({ exp: nowSeconds() + MAX_AGE - 60 }))).status).toBe(200);
  });

  it('refuses iat in the future beyond the clock skew, and iat older than the maximum age', async () => {
    const future = await forwardAuth(await token({ iat: nowSeconds() + 600 }));
    expect(future.status).toBe(401);
    expect(getDecision(db, future.decisionId!)!.errors[0]!.message).toMatch(/^NOT_YET_VALID: token issued at .*, in the future \(beyond the clock skew of 30 s\)/);
    const old = await forwardAuth(await token({ iat: nowSeconds() - MAX_AGE - 600 }));
    expect(old.status).toBe(401);
    expect(getDecision(db, old.decisionId!)!.errors[0]!.message).toMatch(/^EXPIRED: token issued at .*, more than 3600 s ago/);
    // Within the skew is fine.
    expect((await forwardAuth(await token({ iat: nowSeconds() + 10 }))).status).toBe(200);
  });
});
