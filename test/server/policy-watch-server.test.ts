import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

// Hot reload against the real server: every way an editor, a tool or Kubernetes
// replaces a policy file is seen by the file-system watcher alone (the periodic
// content check is off here, --watch-poll-ms 0), and every later edit too.

const dirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A rules file whose one rule, `id`, allows the action `id` on documents. */
const rules = (id: string): string => `kind: rules\nrules:\n  - id: ${id}\n    effect: allow\n    actions: [${id}]\n    resource:\n      type: doc\n`;

interface Served {
  readonly server: VerdictProcess;
  readonly client: VerdictClient;
}
const running: Served[] = [];
afterEach(async () => {
  for (const { server, client } of running.splice(0)) {
    client.close();
    await server.stop();
  }
});

async function serve(policies: string, args: string[] = ['--watch-poll-ms', '0']): Promise<Served> {
  const server = await startVerdict({ policies, db: join(tempDir('verdict-watch-db-'), 'decisions.db'), args });
  const served = { server, client: verdictClient(server.grpcPort) };
  running.push(served);
  return served;
}

async function ask(client: VerdictClient, action: string): Promise<{ effect: string; ruleIds: string[]; policyVersion: string }> {
  return client.call('Authorization', 'Check', checkRequest({ principal: { id: 'ann' }, action, resource: { type: 'doc', id: 'd1' } }));
}

/** Asks until the server allows `action` by rule `action` (it has reloaded), or fails after a generous deadline. */
async function untilAllowed(client: VerdictClient, action: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const answer = await ask(client, action);
    if (answer.effect === 'EFFECT_ALLOW' && answer.ruleIds.includes(action)) return;
    if (Date.now() > deadline) throw new Error(`the server never reloaded to allow ${action}: last answer ${JSON.stringify(answer)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function http(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

describe('hot reload of a running server sees every way a policy file is replaced', () => {
  it('reports how it watches in /readyz and the metrics; the content check interval is configurable', async () => {
    const dir = tempDir('verdict-watch-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { server } = await serve(dir, ['--watch-poll-ms', '250']);
    const ready = JSON.parse((await http(server.httpPort, '/readyz')).body) as { policyWatch: unknown };
    expect(ready.policyWatch).toEqual({ mode: 'events', pollMs: 250, lastError: null, failures: 0 });
    const metrics = (await http(server.httpPort, '/metrics')).body;
    expect(metrics).toMatch(/^verdict_policy_watch_events 1$/m);
    expect(metrics).toMatch(/^verdict_policy_watch_failures_total 0$/m);
  });

  it('refuses a content check interval out of range, naming the key', async () => {
    const dir = tempDir('verdict-watch-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    await expect(serve(dir, ['--watch-poll-ms', '5'])).rejects.toThrow(/watchPollMs: expected 0 \(off\) or 100\.\.3600000 milliseconds/);
  });

  it('a file written in place, again and again', async () => {
    const dir = tempDir('verdict-watch-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { client } = await serve(dir);
    for (const id of ['two', 'three', 'four']) {
      writeFileSync(join(dir, 'rules.yaml'), rules(id));
      await untilAllowed(client, id);
    }
  });

  it('a new version written beside it and renamed over it (how many editors save), then written in place', async () => {
    const dir = tempDir('verdict-watch-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { client } = await serve(dir);
    for (const id of ['two', 'three']) {
      writeFileSync(join(dir, '.rules.yaml.tmp'), rules(id));
      renameSync(join(dir, '.rules.yaml.tmp'), join(dir, 'rules.yaml'));
      await untilAllowed(client, id);
    }
    writeFileSync(join(dir, 'rules.yaml'), rules('four'));
    await untilAllowed(client, 'four');
  });

  it('a file moved in from another directory, then edited in place: every later edit is seen', async () => {
    const dir = tempDir('verdict-watch-');
    const drafts = tempDir('verdict-drafts-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { server, client } = await serve(dir);
    writeFileSync(join(drafts, 'rules.yaml'), rules('moved'));
    renameSync(join(drafts, 'rules.yaml'), join(dir, 'rules.yaml'));
    await untilAllowed(client, 'moved');
    for (const id of ['edited', 'edited-again', 'edited-thrice']) {
      writeFileSync(join(dir, 'rules.yaml'), rules(id));
      await untilAllowed(client, id);
    }
    const ready = JSON.parse((await http(server.httpPort, '/readyz')).body) as { lastReloadError: unknown };
    expect(ready.lastReloadError).toBeNull();
  });

  it('git checkout of another revision, back and forth: the version served is the commit', async () => {
    const dir = tempDir('verdict-watch-git-');
    const git = (...args: string[]): string =>
      execFileSync('git', ['-c', 'user.name=verdict test', '-c', 'user.email=test@verdict.invalid', '-c', 'commit.gpgsign=false', ...args], { cwd: dir, encoding: 'utf8' }).trim();
    git('init', '-q');
    writeFileSync(join(dir, 'rules.yaml'), rules('first'));
    git('add', '-A');
    git('commit', '-q', '-m', 'first');
    const first = git('rev-parse', 'HEAD');
    writeFileSync(join(dir, 'rules.yaml'), rules('second'));
    git('commit', '-q', '-am', 'second');
    const second = git('rev-parse', 'HEAD');
    const { client } = await serve(dir);
    expect((await ask(client, 'second')).policyVersion).toBe(second);
    git('checkout', '-q', first);
    await untilAllowed(client, 'first');
    expect((await ask(client, 'first')).policyVersion).toBe(first);
    git('checkout', '-q', second);
    await untilAllowed(client, 'second');
    expect((await ask(client, 'second')).policyVersion).toBe(second);
  });

  it('a Kubernetes ConfigMap volume: the ..data link swapped to a new directory, again and again', async () => {
    const dir = tempDir('verdict-watch-configmap-');
    mkdirSync(join(dir, '..2026_01_01_00_00_00.1'));
    writeFileSync(join(dir, '..2026_01_01_00_00_00.1', 'rules.yaml'), rules('v1'));
    symlinkSync('..2026_01_01_00_00_00.1', join(dir, '..data'));
    symlinkSync('..data/rules.yaml', join(dir, 'rules.yaml'));
    const { client } = await serve(dir);
    await untilAllowed(client, 'v1');
    for (const n of [2, 3, 4]) {
      // What kubelet does on an update: a new directory, a new link to it renamed over ..data, the old directory removed.
      const next = `..2026_01_01_00_00_00.${n}`;
      mkdirSync(join(dir, next));
      writeFileSync(join(dir, next, 'rules.yaml'), rules(`v${n}`));
      symlinkSync(next, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      rmSync(join(dir, `..2026_01_01_00_00_00.${n - 1}`), { recursive: true });
      await untilAllowed(client, `v${n}`);
    }
  });

  it('the whole directory replaced by another renamed into its place, then edited', async () => {
    const root = tempDir('verdict-watch-swap-');
    const dir = join(root, 'policies');
    mkdirSync(dir);
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { client } = await serve(dir);
    mkdirSync(join(root, 'policies.new'));
    writeFileSync(join(root, 'policies.new', 'rules.yaml'), rules('swapped'));
    renameSync(dir, join(root, 'policies.old'));
    renameSync(join(root, 'policies.new'), dir);
    await untilAllowed(client, 'swapped');
    writeFileSync(join(dir, 'rules.yaml'), rules('edited'));
    await untilAllowed(client, 'edited');
  });

  it('a policies symlink switched to another release directory (ln -sfn), then edited', async () => {
    const root = tempDir('verdict-watch-release-');
    for (const [release, id] of [['r1', 'one'], ['r2', 'two']] as const) {
      mkdirSync(join(root, release));
      writeFileSync(join(root, release, 'rules.yaml'), rules(id));
    }
    symlinkSync('r1', join(root, 'current'));
    const { client } = await serve(join(root, 'current'));
    await untilAllowed(client, 'one');
    symlinkSync('r2', join(root, 'current.tmp'));
    renameSync(join(root, 'current.tmp'), join(root, 'current'));
    await untilAllowed(client, 'two');
    writeFileSync(join(root, 'r2', 'rules.yaml'), rules('edited'));
    await untilAllowed(client, 'edited');
  });
});
