import { execFileSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import { ROOT, ensureBuilt, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

// A leaked admin token is rotated by writing a new one to admin.tokenFile. Against a
// real `verdict serve`: the old token is refused from the next call on, over gRPC and
// at the console, streams it opened (the console's live tail, WatchAlerts) end, and a
// file removed or emptied admits no token at all — each refusal recorded.

const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as { verdict: { v1: Record<string, typeof grpc.Client> } };
type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void;

const OLD = 'old-token-0123456789abcdef0123456789abcdef';
const NEW = 'new-token-fedcba9876543210fedcba9876543210';

let dir: string;
let db: string;
let tokenFile: string;
let server: VerdictProcess;

function metadataWith(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

function admin(token: string, method: string): Promise<unknown> {
  const client = new loaded.verdict.v1.Admin!(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Record<string, Unary> & grpc.Client;
  return new Promise((resolve, reject) => {
    client[method]!.call(client, {}, metadataWith(token), { deadline: Date.now() + 10_000 }, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve(response);
    });
  });
}

function consoleGet(token: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: server.httpPort, path, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens the console's live tail; resolves once it answered 200, with a promise of its end. */
function openTail(token: string): Promise<{ status: number; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: server.httpPort, path: '/console/api/tail', headers: { authorization: `Bearer ${token}` } }, (res: IncomingMessage) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, ended: new Promise((done) => res.once('close', () => done())) });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Writes a token file the way a rotation should: a new file renamed over the old one. */
function rotateTo(text: string, mode = 0o600): void {
  const next = `${tokenFile}.next`;
  writeFileSync(next, text, { mode });
  renameSync(next, tokenFile);
}

const adminRows = () => queryDecisions(db, { resourceType: 'verdict.admin', limit: 1000 }).reverse();

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'verdict-token-rotation-'));
  db = join(dir, 'decisions.db');
  tokenFile = join(dir, 'admin.token');
  writeFileSync(tokenFile, `${OLD}\n`, { mode: 0o600 });
  server = await startVerdict({ policies: join(ROOT, 'policies'), db, args: ['--no-watch', '--admin-token-file', tokenFile] });
}, 60_000);

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
  rmSync(dir, { recursive: true, force: true });
});

describe('rotating the admin token on a running server', () => {
  it('refuses the old token from the next call, admits the new one, and ends what the old one opened', async () => {
    await expect(admin(OLD, 'GetPolicyStatus')).resolves.toBeTruthy();
    expect((await consoleGet(OLD, '/console/api/policy')).status).toBe(200);
    const tail = await openTail(OLD);
    expect(tail.status).toBe(200);
    const Admin = loaded.verdict.v1.Admin!;
    const watcher = new Admin(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const watch = (watcher as unknown as { WatchAlerts(request: unknown, metadata: grpc.Metadata): grpc.ClientReadableStream<unknown> }).WatchAlerts({ types: [] }, metadataWith(OLD));
    const watchEnded = new Promise<grpc.ServiceError>((resolve) => watch.on('error', resolve));
    watch.on('data', () => undefined);
    // The subscription is admitted (and recorded) before it can be revoked: wait for its row.
    for (let tries = 0; !adminRows().some((r) => r.action === 'WatchAlerts' && r.effect === 'ALLOW'); tries++) {
      expect(tries).toBeLessThan(200);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    rotateTo(`${NEW}\n`);

    // Checked at each call: no window in which the old token still works.
    await expect(admin(OLD, 'GetPolicyStatus')).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringContaining('the admin token was not accepted') as string });
    const refused = await consoleGet(OLD, '/console/api/policy');
    expect(refused.status).toBe(401);
    await expect(admin(NEW, 'GetPolicyStatus')).resolves.toBeTruthy();
    expect((await consoleGet(NEW, '/console/api/policy')).status).toBe(200);

    // The streams the old token opened end (the file is looked at every second between calls).
    await tail.ended;
    const error = await watchEnded;
    expect(error.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(error.details).toContain('no longer accepted');
    watcher.close();
    expect(server.logs.some((l) => l.msg.startsWith('admin token replaced'))).toBe(true);
  }, 30_000);

  it('admits no token at all while the file is missing or holds no usable token, and the next good one again', async () => {
    rmSync(tokenFile);
    await expect(admin(NEW, 'GetPolicyStatus')).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringContaining('no admin token is accepted now') as string });
    rotateTo('short\n');
    const answer = await consoleGet(NEW, '/console/api/policy');
    expect(answer.status).toBe(401);
    // Why is for the server's log; the caller learns nothing of the file.
    expect(answer.body).toContain('the admin token file cannot be used (the server log says why)');
    expect(answer.body).not.toContain(dir);
    expect(answer.body).not.toContain(NEW);
    const problems = () => server.logs.filter((l) => l.msg.startsWith('admin token file cannot be used')).map((l) => String((l as { problem?: unknown }).problem));
    expect(problems()).toEqual(expect.arrayContaining([expect.stringContaining('ENOENT'), expect.stringContaining('must hold one token of at least 32 characters')]));
    // A FIFO (or a device) in its place is refused, never waited on: a read of it would never end.
    rmSync(tokenFile);
    execFileSync('mkfifo', [tokenFile]);
    await expect(admin(NEW, 'GetPolicyStatus')).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringContaining('no admin token is accepted now') as string });
    rmSync(tokenFile);
    symlinkSync('/dev/zero', tokenFile);
    await expect(admin(NEW, 'GetPolicyStatus')).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringContaining('no admin token is accepted now') as string });
    expect(problems()).toEqual(expect.arrayContaining([expect.stringContaining('is not a regular file')]));
    rmSync(tokenFile);
    // Written without a umask of 077, the new file is readable by others: said, as at start.
    rotateTo(`${OLD}\n`, 0o644);
    await expect(admin(OLD, 'GetPolicyStatus')).resolves.toBeTruthy();
    expect(server.logs.some((l) => l.msg === 'the admin token file is readable by others; chmod 600 it' && l.mode === '0644')).toBe(true);
    await expect(admin(NEW, 'GetPolicyStatus')).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    // Every refusal is in the log, as any refused Admin call is.
    const refusals = adminRows().filter((r) => r.effect === 'DENY');
    expect(refusals.map((r) => r.errors[0]?.message ?? '')).toEqual(
      expect.arrayContaining([expect.stringContaining('no admin token is accepted now'), expect.stringContaining('the admin token was not accepted')]),
    );
  });
});
