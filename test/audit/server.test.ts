import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig, readEnvironment } from '../../src/server/config.js';
import { auditFromFlags } from '../../src/decisions/audit-config.js';
import { BIN, ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient } from '../helpers/verdict-process.js';

const POLICIES = path.join(ROOT, 'policies');
const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee', email: 'dana@acme.test' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-audit-server-'));
  dirs.push(dir);
  return dir;
}
beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function verdict(...argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...argv], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, VERDICT_DEBUG: '' } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('audit configuration', () => {
  it('reads the keys from the file, environment and flags, flags winning', () => {
    const env = readEnvironment({
      VERDICT_CHECKPOINT_EVERY_ROWS: '500',
      VERDICT_SENSITIVE_ATTRIBUTES: 'principal.attributes.email, context.attributes.ip',
      VERDICT_SIGNING_KEY: '/etc/verdict/sign.pem',
    });
    const flags = auditFromFlags({ checkpointEverySeconds: '5', checkpointEveryRows: '50' });
    const config = resolveConfig([{ checkpointEveryRows: 7, hmacKey: '/etc/verdict/hmac.key' }, env, flags]);
    expect(config).toMatchObject({
      checkpointEveryRows: 50,
      checkpointEverySeconds: 5,
      sensitiveAttributes: ['principal.attributes.email', 'context.attributes.ip'],
      signingKey: '/etc/verdict/sign.pem',
      publicKey: null,
      hmacKey: '/etc/verdict/hmac.key',
    });
    expect(resolveConfig([])).toMatchObject({ checkpointEveryRows: 10_000, checkpointEverySeconds: 60, sensitiveAttributes: [] });
    expect(() => auditFromFlags({ checkpointEveryRows: 'lots' })).toThrow(/flags: checkpointEveryRows: /);
    expect(() => readEnvironment({ VERDICT_CHECKPOINT_EVERY_SECONDS: 'soon' })).toThrow(/environment: checkpointEverySeconds/);
    // The chain cannot be turned off: no key, variable or flag does it.
    expect(resolveConfig([])).not.toHaveProperty('auditChain');
    expect(() => resolveConfig([{ auditChain: false } as never])).toThrow(/unknown key "auditChain"/);
  });

  it('verdict serve refuses bad audit settings with one line and exit 2', () => {
    const dir = tempDir();
    const garbage = path.join(dir, 'garbage.pem');
    fs.writeFileSync(garbage, 'not a key');
    for (const [args, expected] of [
      [['--checkpoint-every-rows', '0'], /checkpointEveryRows/],
      [['--sensitive-attributes', 'principal.id'], /sensitiveAttributes\.0: expected principal\.attributes\.NAME/],
      [['--signing-key', garbage], /cannot read the signing key .*garbage\.pem/],
      [['--hmac-key', path.join(dir, 'missing.key'), '--sensitive-attributes', 'principal.attributes.email'], /no HMAC key at .*missing\.key/],
      [['--no-audit-chain'], /Unknown option '--no-audit-chain'/],
    ] as const) {
      const run = verdict('serve', '--policies', POLICIES, '--db', path.join(dir, 'd.db'), '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', ...args);
      expect(run.status, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toMatch(expected);
      expect(run.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
    }
  });
});

describe('a server with configured keys and sensitive attributes', () => {
  it('signs with the configured key, hashes the attributes, reports the audit state, and the log verifies', async () => {
    const keys = tempDir();
    const data = tempDir();
    const db = path.join(data, 'decisions.db');
    const signingKey = path.join(keys, 'sign.pem');
    // The operator made the key with openssl; verdict only reads it.
    const openssl = spawnSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', signingKey], { encoding: 'utf8' });
    expect(openssl.status, openssl.stderr).toBe(0);
    const config = path.join(keys, 'verdict.yaml');
    fs.writeFileSync(config, `signingKey: ${signingKey}\nsensitiveAttributes: [principal.attributes.email]\ncheckpointEverySeconds: 0.2\n`);
    const server = await startVerdict({ policies: POLICIES, db, args: ['--config', config], env: { VERDICT_CHECKPOINT_EVERY_ROWS: '3' } });
    const client = verdictClient(server.grpcPort);
    try {
      const trail = server.logs.find((l) => l.msg === 'audit trail');
      expect(trail).toMatchObject({ checkpointEveryRows: 3, checkpointEverySeconds: 0.2, sensitiveAttributes: ['principal.attributes.email'], publicKey: `${signingKey}.pub` });
      expect(fs.existsSync(`${signingKey}.pub`)).toBe(true);
      expect(fs.existsSync(path.join(data, 'audit-signing-key.pem'))).toBe(false);
      expect(fs.statSync(path.join(data, 'audit-hmac.key')).mode & 0o777).toBe(0o600);
      for (let i = 0; i < 4; i++) {
        await client.call('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }));
      }
      // The time-based checkpoint signs the 4th row without more traffic.
      const audit = async (): Promise<{ checkpoints: { lastSeq: number } }> =>
        ((await (await fetch(`http://127.0.0.1:${server.httpPort}/readyz`)).json()) as { decisionLog: { audit: { checkpoints: { lastSeq: number } } } }).decisionLog.audit;
      let status = await audit();
      while (status.checkpoints.lastSeq < 4) {
        await new Promise((r) => setTimeout(r, 50));
        status = await audit();
      }
      expect(status).toMatchObject({
        sensitiveAttributes: ['principal.attributes.email'],
        checkpoints: { keyId: trail?.keyId, everyRows: 3, lastSeq: 4, unsignedRows: 0 },
      });
    } finally {
      client.close();
      expect(await server.stop()).toBe(0);
    }
    expect(fs.readFileSync(db).toString('latin1')).not.toContain('dana@acme.test');
    const found = verdict('decisions', '--db', db, '--json', '--attr', 'principal.attributes.email=dana@acme.test');
    expect(found.status).toBe(0);
    expect(found.stdout.trimEnd().split('\n')).toHaveLength(4);
    expect(JSON.parse(found.stdout.split('\n')[0] ?? '{}')).toMatchObject({ request: { principal: { attributes: { email: expect.stringMatching(/^hmac-sha256:[0-9a-f]{64}$/) as string } } } });

    // The key next to the log does not exist: verify needs the configured one, and says so.
    const noKey = verdict('audit', 'verify', '--db', db);
    expect(noKey.status).toBe(4);
    expect(noKey.stderr).toMatch(/^verdict audit verify: .* has signed checkpoints but no public key was given to check them; pass --pubkey FILE\n$/);
    const verified = verdict('audit', 'verify', '--db', db, '--pubkey', `${signingKey}.pub`);
    expect(verified.status).toBe(0);
    expect(verified.stdout).toMatch(/4 rows, seq 1\.\.4 from the start \(genesis\): intact/);
    const pub = verdict('audit', 'pubkey', '--signing-key', signingKey);
    expect(pub.stdout).toBe(fs.readFileSync(`${signingKey}.pub`, 'utf8'));
  });
});

describe('verdict audit on the command line', () => {
  it('explains itself and rejects bad input with one line, never a stack trace', () => {
    const help = verdict('audit', '--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/verify\s+recompute the chain/);
    expect(verdict('audit').status).toBe(2);
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'not-a-db'), 'hello');
    for (const [args, status, expected] of [
      [['audit', 'bogus'], 2, /^verdict audit: unknown command "bogus"/],
      [['audit', 'verify', '--bogus'], 2, /^verdict audit verify: Unknown option '--bogus'/],
      [['audit', 'verify', '--db', path.join(dir, 'missing.db')], 4, /^verdict audit verify: no decision log at /],
      [['audit', 'verify', '--db', path.join(dir, 'not-a-db')], 4, /^verdict audit verify: .*not-a-db/],
      [['audit', 'verify', '--db', 'x', '--export', 'y'], 2, /give --db or --export, not both/],
      [['audit', 'verify', '--from-checkpoint', path.join(dir, 'not-a-db')], 4, /is not JSON/],
      [['audit', 'verify', '--workers', '0'], 2, /--workers must be a positive integer/],
      [['audit', 'checkpoint', '--db', path.join(dir, 'missing.db')], 4, /no decision log at/],
      [['audit', 'export', '--since', 'yesterday'], 2, /--since must be an ISO 8601 time/],
    ] as const) {
      const run = verdict(...args);
      expect(run.status, args.join(' ')).toBe(status);
      expect(run.stderr, args.join(' ')).toMatch(expected);
      expect(run.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
