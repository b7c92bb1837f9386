import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { replicaIdFromHostName } from '../../src/decisions/replica.js';
import { resolveConfig } from '../../src/server/config.js';
import { makeTempDir } from '../helpers/policies.js';
import { BIN, ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient } from '../helpers/verdict-process.js';

/**
 * The replica id, through the real binary on a real SQLite file: the log a server
 * creates is named by it, another replica's server is refused on it, and the id is
 * reported wherever an operator or a central store reads who wrote a log.
 */

function verdict(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** The server says it is replica `id` in its serving line, GetPolicyStatus and /metrics; then it is stopped. */
async function expectServedAs(server: Awaited<ReturnType<typeof startVerdict>>, id: string): Promise<void> {
  const client = verdictClient(server.grpcPort, { ownConnection: true });
  try {
    expect(server.logs.find((line) => line.msg === 'verdict serving')?.replica).toBe(id);
    expect((await client.call<{ replicaId: string }>('Admin', 'GetPolicyStatus', {})).replicaId).toBe(id);
    expect(await httpGet(server.httpPort, '/metrics')).toContain(`verdict_replica_info{replica="${id}"} 1`);
  } finally {
    client.close();
    expect(await server.stop()).toBe(0);
  }
}

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');
const POLICIES = join(ROOT, 'policies');
const CHECK = checkRequest({ principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme' } }, action: 'predict', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme' } } });

beforeAll(() => {
  ensureBuilt();
});

describe('a log created under replica alpha', () => {
  let dir: string;
  let db: string;

  beforeAll(async () => {
    dir = makeTempDir();
    db = join(dir, 'decisions.db');
    const server = await startVerdict({ policies: POLICIES, db, env: { VERDICT_REPLICA_ID: 'alpha' } });
    const client = verdictClient(server.grpcPort);
    try {
      const serving = server.logs.find((line) => line.msg === 'verdict serving');
      expect(serving?.replica).toBe('alpha');
      expect((await client.call<{ effect: string }>('Authorization', 'Check', CHECK)).effect).toBe('EFFECT_ALLOW');
      const status = await client.call<{ replicaId: string }>('Admin', 'GetPolicyStatus', {});
      expect(status.replicaId).toBe('alpha');
      const metrics = await httpGet(server.httpPort, '/metrics');
      expect(metrics).toContain('verdict_replica_info{replica="alpha"} 1');
    } finally {
      client.close();
      expect(await server.stop()).toBe(0);
    }
  }, 120_000);

  it('records the id in the log, shown by audit verify (text and --json)', () => {
    const reader = new Database(db, { readonly: true });
    expect(reader.prepare("SELECT value FROM log_meta WHERE key = 'replica_id'").pluck().get()).toBe('alpha');
    reader.close();
    const json = verdict(['audit', 'verify', '--db', db, '--json']);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, replicaId: 'alpha' });
    const text = verdict(['audit', 'verify', '--db', db]);
    expect(text.stdout).toMatch(/^ {2}replica +alpha$/m);
  });

  it('names it in the export header, and the export verifies with and without the member', () => {
    const out = join(dir, 'export.jsonl');
    const exported = verdict(['audit', 'export', '--db', db, '--out', out]);
    expect(exported.status).toBe(0);
    const lines = readFileSync(out, 'utf8').split('\n');
    const header = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(header).toMatchObject({ type: 'header', replicaId: 'alpha' });
    const verified = verdict(['audit', 'verify', '--export', out, '--json']);
    expect(verified.status).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, replicaId: 'alpha' });

    // The member is signed with the header: dropping it fails the signature. (An export of an earlier
    // release, without it, is read as unnamed: test/audit/replica-signed.test.ts.)
    const { replicaId: _dropped, ...older } = header;
    const olderFile = join(dir, 'older-export.jsonl');
    writeFileSync(olderFile, [JSON.stringify(older), ...lines.slice(1)].join('\n'));
    const olderVerified = verdict(['audit', 'verify', '--export', olderFile, '--json']);
    expect(olderVerified.status).toBe(1);
    expect(JSON.parse(olderVerified.stdout)).toMatchObject({ ok: false, replicaId: null, break: { kind: 'bad-signature' } });

    const alteredFile = join(dir, 'altered-export.jsonl');
    writeFileSync(alteredFile, [JSON.stringify({ ...header, replicaId: 'no/such id' }), ...lines.slice(1)].join('\n'));
    const altered = verdict(['audit', 'verify', '--export', alteredFile]);
    expect(altered.status).not.toBe(0);
    expect(altered.stderr).toContain('header replicaId');
  });

  it('refuses to serve as replica beta on it: says what to do, exits non-zero, leaves the log as it was', () => {
    const before = sha256(db);
    const rows = (JSON.parse(verdict(['audit', 'verify', '--db', db, '--json']).stdout) as { rows: number }).rows;
    const refused = verdict(['serve', '--policies', POLICIES, '--db', db, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--replica-id', 'beta']);
    expect(refused.stderr).toContain(`the decision log ${db} belongs to replica alpha, and this server is replica beta; give each replica its own --db, or set replicaId: alpha`);
    expect(refused.status).toBe(5);
    expect(sha256(db)).toBe(before);
    const json = verdict(['audit', 'verify', '--db', db, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, replicaId: 'alpha', rows });
  }, 120_000);

  it('a server told no id is the replica its log names: a host whose name changed keeps its log', async () => {
    expect(hostname()).not.toBe('alpha');
    const server = await startVerdict({ policies: POLICIES, db, env: { VERDICT_REPLICA_ID: undefined } });
    await expectServedAs(server, 'alpha');
    expect(JSON.parse(verdict(['audit', 'verify', '--db', db, '--json']).stdout)).toMatchObject({ ok: true, replicaId: 'alpha' });
  }, 120_000);
});

describe('--workers 2', () => {
  it('is one replica: every worker reports the id, and the one log records it', async () => {
    const db = join(makeTempDir(), 'decisions.db');
    const server = await startVerdict({ policies: POLICIES, db, args: ['--workers', '2', '--replica-id', 'gamma'] });
    await expectServedAs(server, 'gamma');
    expect(JSON.parse(verdict(['audit', 'verify', '--db', db, '--json']).stdout)).toMatchObject({ ok: true, replicaId: 'gamma' });
  }, 120_000);
});

describe('a replicaId that is not one', () => {
  it('is refused at start, naming the field and where it came from', () => {
    const dir = makeTempDir();
    const db = join(dir, 'decisions.db');
    const fromFlag = verdict(['serve', '--policies', POLICIES, '--db', db, '--replica-id', 'bad/id']);
    expect(fromFlag.status).toBe(2);
    expect(fromFlag.stderr).toContain('flags: replicaId: expected 1 to 64 characters');
    const fromEnv = verdict(['serve', '--policies', POLICIES, '--db', db], { VERDICT_REPLICA_ID: `${'r'.repeat(65)}` });
    expect(fromEnv.status).toBe(2);
    expect(fromEnv.stderr).toContain('environment: replicaId: expected 1 to 64 characters');
    const config = join(dir, 'verdict.yaml');
    writeFileSync(config, 'replicaId: -starts-with-a-dash\n');
    const fromFile = verdict(['serve', '--config', config, '--policies', POLICIES, '--db', db]);
    expect(fromFile.status).toBe(2);
    expect(fromFile.stderr).toContain(`${config}: replicaId: expected 1 to 64 characters`);
  });

  it('defaults to the host name, made into a replica id when it is not one', () => {
    expect(resolveConfig([]).replicaId).toBe(replicaIdFromHostName(hostname()));
    expect(replicaIdFromHostName('verdict-0')).toBe('verdict-0');
    expect(replicaIdFromHostName('pdp_1.internal.example.com')).toBe('pdp_1.internal.example.com');
    expect(replicaIdFromHostName('h'.repeat(80))).toBe('h'.repeat(64));
    expect(replicaIdFromHostName('-my host!')).toBe('my-host-');
    expect(replicaIdFromHostName('***')).toBe('verdict');
  });
});
