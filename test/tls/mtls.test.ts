import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision, queryDecisions } from '../../src/decisions/query.js';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import { BIN, ROOT, checkRequest, ensureBuilt, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';
import { makeClientUnderShortLivedIntermediate, makeClientWithLookAlikeIntermediate, makeShortLivedClient, makeTestPki, type TestPki } from './certs.js';

const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as { verdict: { v1: Record<string, typeof grpc.Client> } };
const AUTHORIZATION_CHECK = (packageDefinition['verdict.v1.Authorization'] as unknown as Record<string, { requestSerialize(value: unknown): Uint8Array }>)['Check']!;

interface CheckResponse {
  effect: string;
  reason: string;
  decisionId: string;
}

const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };

/** A Check over TLS, optionally presenting a client certificate. */
function check(port: number, pki: TestPki, client: { cert: string; key: string } | null): Promise<CheckResponse> {
  const credentials = grpc.credentials.createSsl(
    readFileSync(pki.ca.cert),
    client ? readFileSync(client.key) : null,
    client ? readFileSync(client.cert) : null,
  );
  const stub = new loaded.verdict.v1.Authorization!(`127.0.0.1:${port}`, credentials) as unknown as grpc.Client & {
    Check: (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: CheckResponse) => void) => void;
  };
  return new Promise<CheckResponse>((resolve, reject) => {
    stub.Check(checkRequest({ principal: dana, action: 'predict', resource: fraudModel }), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (error, response) => {
      stub.close();
      if (error) reject(error);
      else resolve(response);
    });
  });
}

function checkPlaintext(port: number): Promise<CheckResponse> {
  const stub = new loaded.verdict.v1.Authorization!(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check: (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: CheckResponse) => void) => void;
  };
  return new Promise<CheckResponse>((resolve, reject) => {
    stub.Check(checkRequest({ principal: dana, action: 'predict', resource: fraudModel }), new grpc.Metadata(), { deadline: Date.now() + 3000 }, (error, response) => {
      stub.close();
      if (error) reject(error);
      else resolve(response);
    });
  });
}

function httpsGet(port: number, path: string, pki: TestPki, client: { cert: string; key: string } | null): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        // The certificate names localhost too; an IP address as TLS server name is deprecated (RFC 6066).
        servername: 'localhost',
        port,
        path,
        ca: readFileSync(pki.ca.cert),
        ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function httpsPost(port: number, path: string, body: string, pki: TestPki, client: { cert: string; key: string } | null): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        method: 'POST',
        host: '127.0.0.1',
        servername: 'localhost',
        port,
        path,
        headers: { 'content-type': 'application/json' },
        ca: readFileSync(pki.ca.cert),
        ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

let pki: TestPki;

beforeAll(() => {
  ensureBuilt();
  pki = makeTestPki();
}, 120_000);

describe('mTLS on the gRPC port (flags)', () => {
  let server: VerdictProcess;
  let db: string;

  beforeAll(async () => {
    db = join(mkdtempSync(join(tmpdir(), 'verdict-tls-')), 'decisions.db');
    server = await startVerdict({
      policies: join(ROOT, 'policies'),
      db,
      args: ['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-client-ca', pki.ca.cert, '--no-watch'],
    });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it('says at start that TLS is on and client certificates are required', () => {
    const serving = server.logs.find((l) => l.msg === 'verdict serving')!;
    expect(serving.tls).toMatchObject({ subject: 'CN=verdict-server', clientCertificates: 'required', http: false });
  });

  it('answers a client with a valid certificate and records its URI SAN as the caller', async () => {
    const res = await check(server.grpcPort, pki, pki.spiffeClient);
    expect(res.effect).toBe('EFFECT_ALLOW');
    const record = getDecision(db, res.decisionId);
    expect(record?.caller).toBe('uri:spiffe://verdict.test/ns/edge/sa/gateway');
  });

  it('records the subject CN for a certificate without SANs', async () => {
    const res = await check(server.grpcPort, pki, pki.cnClient);
    expect(getDecision(db, res.decisionId)?.caller).toBe('cn:nginx-edge');
  });

  it('refuses the handshake without a client certificate', async () => {
    await expect(check(server.grpcPort, pki, null)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it('refuses a client certificate from another CA, even with the same names', async () => {
    await expect(check(server.grpcPort, pki, pki.strangerClient)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it('refuses plaintext', async () => {
    await expect(checkPlaintext(server.grpcPort)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it('keeps the operator HTTP port plain unless asked', async () => {
    const res = await fetch(`http://127.0.0.1:${server.httpPort}/healthz`);
    expect(res.status).toBe(200);
  });
});

describe('mTLS from the config file and the environment, HTTP port over TLS', () => {
  let server: VerdictProcess;
  let db: string;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-tls-'));
    const config = join(dir, 'verdict.yaml');
    // The certificate and CA from the file, the key and the HTTPS switch from the environment.
    writeFileSync(config, `tls:\n  cert: ${pki.server.cert}\n  clientCa: ${pki.ca.cert}\n  requireClientCert: true\nauthzen:\n  peps: ['uri:spiffe://verdict.test/ns/edge/sa/gateway']\n`);
    db = join(dir, 'decisions.db');
    server = await startVerdict({
      policies: join(ROOT, 'policies'),
      db,
      args: ['--config', config, '--no-watch'],
      env: { VERDICT_TLS_KEY: pki.server.key, VERDICT_TLS_HTTP: 'true' },
    });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it('serves gRPC to a client with a certificate', async () => {
    const res = await check(server.grpcPort, pki, pki.cnClient);
    expect(res.effect).toBe('EFFECT_ALLOW');
  });

  it('answers AuthZEN to a client certificate alone when no credential method is configured, recording its identity as the caller', async () => {
    const body = JSON.stringify({ subject: { type: 'user', id: 'dana', properties: { roles: dana.roles, ...dana.attributes } }, action: { name: 'predict' }, resource: { type: 'model', id: 'fraud-v3', properties: fraudModel.attributes } });
    const answer = await httpsPost(server.httpPort, '/access/v1/evaluation', body, pki, pki.spiffeClient);
    expect(answer.status).toBe(200);
    const decision = JSON.parse(answer.body) as { decision: boolean; context: { decision_id: string } };
    expect(decision.decision).toBe(true);
    expect(getDecision(db, decision.context.decision_id)).toMatchObject({ principalId: 'dana', caller: 'uri:spiffe://verdict.test/ns/edge/sa/gateway' });
    await expect(httpsPost(server.httpPort, '/access/v1/evaluation', body, pki, null)).rejects.toThrow();
  });

  it('ends an HTTPS connection when its client certificate expires, a request half sent included, and resumes no TLS session', async () => {
    // Listed in authzen.peps: while valid it may ask about any subject.
    const short = makeShortLivedClient(pki, 'short-lived-pep', 'spiffe://verdict.test/ns/edge/sa/gateway', 3_000);
    // One connection for every request: its handshake is the only time TLS looks at the dates.
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: readFileSync(pki.ca.cert), cert: readFileSync(short.cert), key: readFileSync(short.key), servername: 'localhost' });
    const body = JSON.stringify({ subject: { type: 'user', id: 'dana', properties: { roles: dana.roles, ...dana.attributes } }, action: { name: 'predict' }, resource: { type: 'model', id: 'fraud-v3', properties: fraudModel.attributes } });
    const ask = (path: string, method = 'POST'): Promise<{ status: number; body: string; reused: boolean }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest({ method, host: '127.0.0.1', port: server.httpPort, path, agent, headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end(method === 'POST' ? body : undefined);
      });
    // A PEP's question whose headers go out while the certificate is valid and whose body follows after it expired.
    const halfSent = tlsConnect({ host: '127.0.0.1', port: server.httpPort, ca: readFileSync(pki.ca.cert), cert: readFileSync(short.cert), key: readFileSync(short.key), servername: 'localhost' });
    let halfSentReply = '';
    halfSent.on('data', (chunk: Buffer) => (halfSentReply += chunk.toString('latin1')));
    halfSent.on('error', () => undefined);
    const halfSentClosed = new Promise<void>((resolve) => halfSent.once('close', () => resolve()));
    try {
      const before = await ask('/access/v1/evaluation');
      expect(before.status).toBe(200);
      expect((JSON.parse(before.body) as { decision: boolean }).decision).toBe(true);
      await new Promise<void>((resolve) => (halfSent.readyState === 'open' && halfSent.authorized ? resolve() : halfSent.once('secureConnect', () => resolve())));
      halfSent.write(`POST /access/v1/evaluation HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, short.validTo.getTime() - Date.now()) + 300));
      if (!halfSent.destroyed) halfSent.write(body);
      await halfSentClosed;
      expect(halfSentReply).not.toMatch(/^HTTP\/1\.1 200/);
      // The kept-alive connection ended too. The agent offers its TLS session again (a resumed handshake would look
      // at no certificate, so it would succeed with the expired one); the server makes a full handshake, which fails.
      await expect(ask('/access/v1/evaluation')).rejects.toThrow();
      expect(server.logs.some((l) => l.msg.startsWith('ended an HTTPS connection, or refused its request: the client certificate it was opened with, or one in its chain, has expired'))).toBe(true);
    } finally {
      halfSent.destroy();
      agent.destroy();
    }
  }, 30_000);

  it('ends a gRPC connection when its client certificate expires, a call half sent included, so its checks stop being answered', async () => {
    const short = makeShortLivedClient(pki, 'short-lived-gateway', 'spiffe://verdict.test/ns/edge/sa/gateway', 3_000);
    const client = new loaded.verdict.v1.Authorization!(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createSsl(readFileSync(pki.ca.cert), readFileSync(short.key), readFileSync(short.cert)), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as grpc.Client & {
      Check: (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: CheckResponse) => void) => void;
    };
    const ask = (): Promise<{ error: grpc.ServiceError | null; response: CheckResponse | undefined }> =>
      new Promise((resolve) => client.Check(checkRequest({ principal: dana, action: 'predict', resource: fraudModel }), new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (error, response) => resolve({ error, response })));
    // A Check whose headers go out while the certificate is valid and whose message follows after it expired.
    const session = http2Connect(`https://127.0.0.1:${server.grpcPort}`, { ca: readFileSync(pki.ca.cert), cert: readFileSync(short.cert), key: readFileSync(short.key), servername: 'localhost' });
    session.on('error', () => undefined);
    const halfSent = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc', te: 'trailers' }, { endStream: false });
    halfSent.on('error', () => undefined);
    let grpcStatus: string | null = null;
    halfSent.on('trailers', (trailers) => (grpcStatus = String(trailers['grpc-status'])));
    halfSent.on('response', (headers) => (grpcStatus ??= headers['grpc-status'] === undefined ? null : String(headers['grpc-status'])));
    const halfSentClosed = new Promise<void>((resolve) => halfSent.once('close', () => resolve()));
    const message = Buffer.from(AUTHORIZATION_CHECK.requestSerialize(checkRequest({ principal: dana, action: 'predict', resource: fraudModel })));
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), message]);
    frame.writeUInt32BE(message.length, 1);
    try {
      expect((await ask()).response?.effect).toBe('EFFECT_ALLOW');
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, short.validTo.getTime() - Date.now()) + 300));
      if (!halfSent.destroyed) halfSent.end(frame);
      await halfSentClosed;
      expect(grpcStatus).not.toBe('0');
      const after = await ask();
      expect(after.response).toBeUndefined();
      expect(after.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(server.logs.some((l) => l.msg.startsWith('closed a gRPC connection: the client certificate it was opened with, or one in its chain, has expired'))).toBe(true);
    } finally {
      session.destroy();
      client.close();
    }
  }, 30_000);

  it('ends connections when an intermediate CA of the client certificate expires before it', async () => {
    // The client certificate is good for two days; the intermediate that vouches for it, for five seconds.
    const chained = makeClientUnderShortLivedIntermediate(pki, 'chained-pep', 'spiffe://verdict.test/ns/edge/sa/gateway', 5_000);
    const credentials = { ca: readFileSync(pki.ca.cert), cert: readFileSync(chained.cert), key: readFileSync(chained.key) };
    // One kept-alive connection for every request: its handshake is the only time TLS looks at the dates.
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ...credentials, servername: 'localhost' });
    const body = JSON.stringify({ subject: { type: 'user', id: 'dana', properties: { roles: dana.roles, ...dana.attributes } }, action: { name: 'predict' }, resource: { type: 'model', id: 'fraud-v3', properties: fraudModel.attributes } });
    const evaluate = (): Promise<{ status: number; body: string; reused: boolean }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest({ method: 'POST', host: '127.0.0.1', port: server.httpPort, path: '/access/v1/evaluation', agent, headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const client = new loaded.verdict.v1.Authorization!(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createSsl(credentials.ca, credentials.key, credentials.cert), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as grpc.Client & {
      Check: (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: CheckResponse) => void) => void;
    };
    const check = (): Promise<{ error: grpc.ServiceError | null; response: CheckResponse | undefined }> =>
      new Promise((resolve) => client.Check(checkRequest({ principal: dana, action: 'predict', resource: fraudModel }), new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (error, response) => resolve({ error, response })));
    try {
      expect((await evaluate()).status).toBe(200);
      expect((await check()).response?.effect).toBe('EFFECT_ALLOW');
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, chained.validTo.getTime() - Date.now()) + 300));
      // The kept-alive connection was cut (still open, it would have answered 200); a new one fails its handshake.
      await expect(evaluate()).rejects.toThrow();
      const checkAfter = await check();
      expect(checkAfter.response).toBeUndefined();
      expect(checkAfter.error?.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      agent.destroy();
      client.close();
    }
  }, 30_000);

  it('resumes no TLS session on either port, so every connection shows its whole chain', async () => {
    for (const [port, alpn] of [[server.httpPort, ['http/1.1']], [server.grpcPort, ['h2']]] as const) {
      const connect = (session: Buffer | undefined): Promise<{ reused: boolean; session: Buffer | undefined }> =>
        new Promise((resolve, reject) => {
          let offered: Buffer | undefined;
          const socket = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.spiffeClient.cert), key: readFileSync(pki.spiffeClient.key), servername: 'localhost', ALPNProtocols: [...alpn], ...(session ? { session } : {}) });
          socket.on('session', (ticket: Buffer) => (offered = ticket));
          socket.on('error', reject);
          socket.once('secureConnect', () => {
            const reused = socket.isSessionReused();
            // A TLS 1.3 ticket comes after the handshake, if at all.
            setTimeout(() => {
              socket.destroy();
              resolve({ reused, session: offered });
            }, 300);
          });
        });
      const first = await connect(undefined);
      const second = await connect(first.session);
      expect({ port, reused: [first.reused, second.reused] }).toEqual({ port, reused: [false, false] });
    }
  });

  it('refuses, as lapsed, a connection whose chain goes through a look-alike intermediate with distant dates', async () => {
    const client = makeClientWithLookAlikeIntermediate(pki, 'look-alike-pep', 'spiffe://verdict.test/ns/edge/sa/gateway');
    const body = JSON.stringify({ subject: { type: 'user', id: 'dana', properties: { roles: dana.roles, ...dana.attributes } }, action: { name: 'predict' }, resource: { type: 'model', id: 'fraud-v3', properties: fraudModel.attributes } });
    const evaluate = (cert: string): Promise<{ status: number; body: string }> => httpsPost(server.httpPort, '/access/v1/evaluation', body, pki, { cert, key: client.key });
    const check = (cert: string): Promise<{ error: grpc.ServiceError | null; response: CheckResponse | undefined }> => {
      const grpcClient = new loaded.verdict.v1.Authorization!(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createSsl(readFileSync(pki.ca.cert), readFileSync(client.key), readFileSync(cert)), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as grpc.Client & {
        Check: (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: CheckResponse) => void) => void;
      };
      return new Promise((resolve) =>
        grpcClient.Check(checkRequest({ principal: dana, action: 'predict', resource: fraudModel }), new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (error, response) => {
          grpcClient.close();
          resolve({ error, response });
        }),
      );
    };
    // The same client certificate with its honest chain is answered: TLS accepts both chains.
    expect((await evaluate(client.honestCert)).status).toBe(200);
    expect((await check(client.honestCert)).response?.effect).toBe('EFFECT_ALLOW');
    // With the look-alike, node names an issuer the real chain does not go through, whose dates say nothing.
    const refused = await evaluate(client.cert);
    expect(refused.status).toBe(401);
    expect(refused.body).toContain('open a new connection with a valid certificate');
    const refusedCheck = await check(client.cert);
    expect(refusedCheck.response).toBeUndefined();
    expect(refusedCheck.error?.code).toBe(grpc.status.UNAUTHENTICATED);
  }, 30_000);

  it('serves /healthz over HTTPS to a client with a certificate, and refuses one without', async () => {
    expect(await httpsGet(server.httpPort, '/healthz', pki, pki.cnClient)).toMatchObject({ status: 200 });
    await expect(httpsGet(server.httpPort, '/healthz', pki, null)).rejects.toThrow();
    await expect(httpsGet(server.httpPort, '/healthz', pki, pki.strangerClient)).rejects.toThrow();
  });
});

describe('a client certificate that expires while its connection waits for a late timer', () => {
  // A timer fires late when the machine is paused or the thread busy; the expiry cut must not be the only guard.
  // This server's timers of two seconds or more run three seconds late (a module preloaded with NODE_OPTIONS).
  const LATE_TIMERS = `const onTime = globalThis.setTimeout;
globalThis.setTimeout = (fn, ms, ...args) => onTime(fn, typeof ms === 'number' && ms >= 2000 ? ms + 3000 : ms, ...args);
`;
  let late: VerdictProcess;
  let lateDb: string;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-late-timer-'));
    const preload = join(dir, 'late-timers.mjs');
    writeFileSync(preload, LATE_TIMERS);
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, `tls:\n  cert: ${pki.server.cert}\n  key: ${pki.server.key}\n  clientCa: ${pki.ca.cert}\n  requireClientCert: true\n  http: true\nauthzen:\n  peps: ['uri:spiffe://verdict.test/ns/edge/sa/gateway']\n`);
    lateDb = join(dir, 'decisions.db');
    late = await startVerdict({ policies: join(ROOT, 'policies'), db: lateDb, args: ['--config', config, '--no-watch'], env: { NODE_OPTIONS: `--import=${preload}` } });
  });
  afterAll(async () => {
    expect(await late?.stop()).toBe(0);
  });

  it('answers no request that arrives whole after the expiry, before the expiry timer fired: HTTPS, gRPC and gzip gRPC alike', async () => {
    const short = makeShortLivedClient(pki, 'paused-pep', 'spiffe://verdict.test/ns/edge/sa/gateway', 6_000);
    const credentials = { ca: readFileSync(pki.ca.cert), cert: readFileSync(short.cert), key: readFileSync(short.key), servername: 'localhost' };
    const body = JSON.stringify({ subject: { type: 'user', id: 'dana', properties: { roles: dana.roles, ...dana.attributes } }, action: { name: 'predict' }, resource: { type: 'model', id: 'fraud-v3', properties: fraudModel.attributes } });
    const https = tlsConnect({ host: '127.0.0.1', port: late.httpPort, ...credentials });
    let httpsReply = '';
    https.on('data', (chunk: Buffer) => (httpsReply += chunk.toString('latin1')));
    https.on('error', () => undefined);
    const httpsClosed = new Promise<void>((resolve) => https.once('close', () => resolve()));
    const session = http2Connect(`https://127.0.0.1:${late.grpcPort}`, credentials);
    session.on('error', () => undefined);
    const message = Buffer.from(AUTHORIZATION_CHECK.requestSerialize(checkRequest({ principal: dana, action: 'predict', resource: fraudModel })));
    // The direct lane reads all three, the gzip ones inflated in their turn.
    // The last sends its whole message while the certificate is valid, and ends the stream only after it expired.
    const calls = [
      { encoding: 'identity', flag: 0, payload: message, early: false },
      { encoding: 'gzip', flag: 1, payload: gzipSync(message), early: false },
      { encoding: 'gzip', flag: 1, payload: gzipSync(message), early: true },
    ].map(({ encoding, flag, payload, early }) => {
      const stream = session.request({ ':method': 'POST', ':path': '/verdict.v1.Authorization/Check', 'content-type': 'application/grpc', te: 'trailers', 'grpc-encoding': encoding }, { endStream: false });
      stream.on('error', () => undefined);
      const call = { stream, early, status: null as string | null, frame: Buffer.concat([Buffer.from([flag, 0, 0, 0, 0]), payload]), closed: new Promise<void>((resolve) => stream.once('close', () => resolve())) };
      call.frame.writeUInt32BE(payload.length, 1);
      stream.on('trailers', (trailers) => (call.status = String(trailers['grpc-status'])));
      stream.on('response', (headers) => (call.status ??= headers['grpc-status'] === undefined ? null : String(headers['grpc-status'])));
      return call;
    });
    try {
      const decidedBefore = queryDecisions(lateDb).length;
      await new Promise<void>((resolve) => (https.readyState === 'open' && https.authorized ? resolve() : https.once('secureConnect', () => resolve())));
      https.write(`POST /access/v1/evaluation HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`);
      for (const call of calls) if (call.early) call.stream.write(call.frame);
      // Every request's headers reach the server while the certificate is valid.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(Date.now()).toBeLessThan(short.validTo.getTime() - 1_000);
      // The bodies arrive past the expiry, while the server's expiry timers have not fired (they run late here).
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, short.validTo.getTime() - Date.now()) + 300));
      https.write(body);
      for (const call of calls) call.stream.end(call.early ? undefined : call.frame);
      await Promise.all([httpsClosed, ...calls.map((call) => call.closed)]);
      expect(httpsReply).not.toMatch(/^HTTP\/1\.1 200/);
      expect(calls.map((call) => call.status)).not.toContain('0');
      // Nothing was decided for them: the log holds only the check made before.
      expect(queryDecisions(lateDb).length).toBe(decidedBefore);
      expect(late.logs.some((l) => l.msg.startsWith('ended an HTTPS connection, or refused its request: the client certificate it was opened with, or one in its chain, has expired'))).toBe(true);
      // The lane answers its calls UNAUTHENTICATED and leaves the connection to the expiry timer, which closes it when it fires (late here).
      const closedByTimer = (): boolean => late.logs.some((l) => l.msg.startsWith('closed a gRPC connection: the client certificate it was opened with, or one in its chain, has expired'));
      for (let waited = 0; !closedByTimer() && waited < 10_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(closedByTimer()).toBe(true);
      expect(calls.map((call) => call.status)).toEqual(['16', '16', '16']);
    } finally {
      https.destroy();
      session.destroy();
    }
  }, 30_000);

});

describe('TLS configuration errors stop the start with the file named', () => {
  const serve = (args: string[]): { status: number | null; stderr: string } => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-tls-'));
    const result = spawnSync(process.execPath, [BIN, 'serve', '--policies', join(ROOT, 'policies'), '--db', join(dir, 'd.db'), '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'silent', ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 20_000,
    });
    return { status: result.status, stderr: result.stderr };
  };

  it('a key that does not belong to the certificate', () => {
    const { status, stderr } = serve(['--tls-cert', pki.server.cert, '--tls-key', pki.cnClient.key]);
    expect(status).toBe(2);
    expect(stderr).toContain(`tls.key: ${pki.cnClient.key} is not the private key of the certificate`);
  });

  it('a certificate without its key', () => {
    const { status, stderr } = serve(['--tls-cert', pki.server.cert]);
    expect(status).toBe(2);
    expect(stderr).toContain('tls.key is missing');
  });

  it('requiring client certificates without a CA to check them against', () => {
    const { status, stderr } = serve(['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-require-client-cert']);
    expect(status).toBe(2);
    expect(stderr).toContain('tls.requireClientCert needs tls.clientCa');
  });

  it('a missing file', () => {
    const { status, stderr } = serve(['--tls-cert', join(pki.dir, 'nope.crt'), '--tls-key', pki.server.key]);
    expect(status).toBe(2);
    expect(stderr).toContain('tls.cert: cannot read');
    expect(stderr).toContain('ENOENT');
  });
});
