import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTILE_CASES, writeFifo } from '../helpers/hostile-policies.js';
import { ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };

interface Reload {
  reloaded: boolean;
  error: string;
  status: { version: string; lastReloadError: string };
}

describe('a policy push of hostile files to a serving verdict', () => {
  let root: string;
  let policies: string;
  let server: VerdictProcess;
  let client: VerdictClient;
  let servingVersion: string;

  beforeAll(async () => {
    ensureBuilt();
    root = mkdtempSync(join(tmpdir(), 'verdict-hostile-push-'));
    policies = join(root, 'policies');
    cpSync(join(ROOT, 'policies'), policies, { recursive: true });
    server = await startVerdict({ policies, db: join(root, 'decisions.db') });
    client = verdictClient(server.grpcPort, { ownConnection: true });
    servingVersion = (await client.call<{ version: string }>('Admin', 'GetPolicyStatus', {})).version;
  }, 120_000);
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
    rmSync(root, { recursive: true, force: true });
  });

  const check = () => client.call<{ effect: string; policyVersion: string }>('Authorization', 'Check', checkRequest({ principal: dana, action: 'predict', resource: fraudModel }));
  const reload = () => client.call<Reload>('Admin', 'ReloadPolicies', {}, { deadline: Date.now() + 60_000 });

  for (const hostile of HOSTILE_CASES) {
    it(`keeps the last good set on ${hostile.name}, names the file:line:col, and answers checks`, async () => {
      hostile.write(policies);
      try {
        const outcome = await reload();
        expect(outcome.reloaded).toBe(false);
        expect(outcome.error).toMatch(hostile.diagnostic);
        expect(outcome.status.version).toBe(servingVersion);
        expect(outcome.status.lastReloadError).toMatch(hostile.diagnostic);
        expect(await check()).toMatchObject({ effect: 'EFFECT_ALLOW', policyVersion: servingVersion });
      } finally {
        for (const file of hostile.files) rmSync(join(policies, file), { force: true });
      }
    }, 60_000);
  }

  it('keeps the last good set on a push of more than 10,000 policy files, and answers checks', async () => {
    const many = join(policies, 'many');
    mkdirSync(many);
    try {
      for (let i = 0; i <= 10_000; i++) writeFileSync(join(many, `r${i}.yaml`), '');
      const outcome = await reload();
      expect(outcome.reloaded).toBe(false);
      expect(outcome.error).toMatch(/holds more than 10000 policy files/);
      expect(outcome.status.version).toBe(servingVersion);
      expect(await check()).toMatchObject({ effect: 'EFFECT_ALLOW', policyVersion: servingVersion });
    } finally {
      rmSync(many, { recursive: true, force: true });
    }
  }, 60_000);

  it('reloads a named pipe with a policy file name without waiting on it, and the set again once the files are gone', async () => {
    writeFifo(join(policies, 'pipe.yaml'));
    try {
      const outcome = await reload();
      expect(outcome.error).toBe('');
      expect(outcome.status.version).toBe(servingVersion);
    } finally {
      rmSync(join(policies, 'pipe.yaml'), { force: true });
    }
    expect(await check()).toMatchObject({ effect: 'EFFECT_ALLOW', policyVersion: servingVersion });
  }, 60_000);
});

describe('a policy directory whose .git/config names programs (core.fsmonitor, a clean filter)', () => {
  it('is served and reloaded with its commit as the version, and no such program runs', async () => {
    ensureBuilt();
    const root = mkdtempSync(join(tmpdir(), 'verdict-fsmonitor-'));
    const policies = join(root, 'policies');
    cpSync(join(ROOT, 'policies'), policies, { recursive: true });
    const git = (...args: string[]) =>
      execFileSync('git', ['-c', 'user.name=verdict test', '-c', 'user.email=test@verdict.invalid', '-c', 'commit.gpgsign=false', ...args], { cwd: policies, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    writeFileSync(join(policies, '.gitattributes'), '*.yaml filter=evil\n');
    git('init', '-q');
    git('add', '-A');
    git('commit', '-q', '-m', 'policies');
    const marker = join(root, 'ran');
    git('config', 'core.fsmonitor', `touch ${marker}; false`);
    git('config', 'filter.evil.clean', `touch ${marker}; cat`);
    // A file whose time changed is read again by git status, through its clean filter.
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(policies, 'roles.yaml'), later, later);
    const server = await startVerdict({ policies, db: join(root, 'decisions.db') });
    const client = verdictClient(server.grpcPort, { ownConnection: true });
    try {
      const head = git('rev-parse', 'HEAD');
      expect((await client.call<{ version: string }>('Admin', 'GetPolicyStatus', {})).version).toBe(head);
      // A reload asks git again, from the load thread.
      expect((await client.call<Reload>('Admin', 'ReloadPolicies', {}, { deadline: Date.now() + 60_000 })).status.version).toBe(head);
      expect(existsSync(marker)).toBe(false);
    } finally {
      client.close();
      expect(await server.stop()).toBe(0);
      rmSync(root, { recursive: true, force: true });
    }
  }, 120_000);
});
