import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PolicyStore, type PolicyStatus, type ReloadOutcome } from '../../src/server/policy-store.js';
import { DirectoryWatcher } from '../../src/server/policy-watcher.js';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';

afterAll(removeTempDirs);

const rules = (id: string): string => `kind: rules\nrules:\n  - id: ${id}\n    effect: allow\n    actions: [read]\n`;
const ruleIds = (store: PolicyStore): string[] => store.current.rules.map((r) => r.id);

/** A store that records its reloads, so a test can wait for the one it caused. */
async function openWatched(dir: string, options: { pollMs?: number; events?: boolean } = {}) {
  const outcomes: { outcome: ReloadOutcome; status: PolicyStatus }[] = [];
  const waiters: (() => void)[] = [];
  const store = await PolicyStore.open(dir, {
    onReload: (outcome, status) => {
      outcomes.push({ outcome, status });
      for (const wake of waiters.splice(0)) wake();
    },
  });
  store.watch({ debounceMs: 50, pollMs: options.pollMs ?? 0, events: options.events });
  stores.push(store);
  /** Resolves once the store serves a set for which `ready` holds; fails after a generous timeout. */
  const until = async (ready: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while (!ready()) {
      if (Date.now() > deadline) throw new Error(`the store never reloaded to ${what}; reloads: ${JSON.stringify(outcomes.map((o) => o.outcome))}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 500);
      });
    }
  };
  return { store, outcomes, until };
}

const stores: PolicyStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

describe('hot reload sees every way an editor, a tool or Kubernetes changes a file', () => {
  it('a file written in place, again and again', async () => {
    const dir = makeTempDir('verdict-watch-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { store, until } = await openWatched(dir);
    expect(store.watchStatus()).toMatchObject({ mode: 'events', lastError: null, failures: 0 });
    for (const id of ['two', 'three', 'four']) {
      writeFileSync(join(dir, 'rules.yaml'), rules(id));
      await until(() => ruleIds(store).includes(id), id);
    }
  });

  it('a file replaced by renaming a new version over it (how many editors save)', async () => {
    const dir = makeTempDir('verdict-watch-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { store, until } = await openWatched(dir);
    for (const id of ['two', 'three']) {
      writeFileSync(join(dir, '.rules.yaml.swp'), rules(id));
      renameSync(join(dir, '.rules.yaml.swp'), join(dir, 'rules.yaml'));
      await until(() => ruleIds(store).includes(id), id);
    }
    // ...and the replaced file is still watched when written in place afterwards.
    writeFileSync(join(dir, 'rules.yaml'), rules('four'));
    await until(() => ruleIds(store).includes('four'), 'four');
  });

  it('a file moved in from another directory, then edited in place: every edit is seen', async () => {
    const dir = makeTempDir('verdict-watch-');
    const drafts = makeTempDir('verdict-drafts-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { store, until, outcomes } = await openWatched(dir);
    writeFileSync(join(drafts, 'rules.yaml'), rules('moved-in'));
    renameSync(join(drafts, 'rules.yaml'), join(dir, 'rules.yaml'));
    await until(() => ruleIds(store).includes('moved-in'), 'moved-in');
    for (const id of ['edited-once', 'edited-twice']) {
      writeFileSync(join(dir, 'rules.yaml'), rules(id));
      await until(() => ruleIds(store).includes(id), id);
    }
    expect(outcomes.every(({ outcome }) => outcome.ok)).toBe(true);
    expect(store.status().lastReloadError).toBeNull();
  });

  it('git checkout of another revision: the files change, and the version is that commit', async () => {
    const dir = makeTempDir('verdict-watch-git-');
    const git = (...args: string[]): string =>
      execFileSync('git', ['-c', 'user.name=verdict test', '-c', 'user.email=test@verdict.invalid', '-c', 'commit.gpgsign=false', ...args], { cwd: dir, encoding: 'utf8' }).trim();
    git('init', '-q');
    writeFileSync(join(dir, 'rules.yaml'), rules('first'));
    git('add', '-A');
    git('commit', '-q', '-m', 'first');
    const first = git('rev-parse', 'HEAD');
    writeFileSync(join(dir, 'rules.yaml'), rules('second'));
    writeFileSync(join(dir, 'more.yaml'), rules('more'));
    git('add', '-A');
    git('commit', '-q', '-m', 'second');
    const second = git('rev-parse', 'HEAD');
    const { store, until } = await openWatched(dir);
    expect(store.current.version).toBe(second);
    git('checkout', '-q', first);
    await until(() => store.current.version === first, `commit ${first}`);
    expect(ruleIds(store)).toEqual(['first']);
    git('checkout', '-q', second);
    await until(() => store.current.version === second, `commit ${second}`);
    expect(ruleIds(store).sort()).toEqual(['more', 'second']);
  });

  it('a Kubernetes ConfigMap update: the ..data link swapped to a new directory', async () => {
    const dir = makeTempDir('verdict-watch-configmap-');
    // The layout kubelet writes: a timestamped directory, ..data linking to it, and each file a link through ..data.
    mkdirSync(join(dir, '..2025_01_01_00_00_00.1'));
    writeFileSync(join(dir, '..2025_01_01_00_00_00.1', 'rules.yaml'), rules('v1'));
    symlinkSync('..2025_01_01_00_00_00.1', join(dir, '..data'));
    symlinkSync('..data/rules.yaml', join(dir, 'rules.yaml'));
    const { store, until } = await openWatched(dir);
    expect(ruleIds(store)).toEqual(['v1']);
    for (const [n, id] of [[2, 'v2'], [3, 'v3']] as const) {
      // An update: a new directory, a new link to it, renamed over ..data, the old directory removed.
      const next = `..2025_01_01_00_00_00.${n}`;
      mkdirSync(join(dir, next));
      writeFileSync(join(dir, next, 'rules.yaml'), rules(id));
      symlinkSync(next, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      rmSync(join(dir, `..2025_01_01_00_00_00.${n - 1}`), { recursive: true });
      await until(() => ruleIds(store).includes(id), id);
    }
  });
});

describe('the periodic content check', () => {
  it('reloads a change no file-system event announced, and stays quiet while nothing changes', async () => {
    const dir = makeTempDir('verdict-watch-poll-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { store, until, outcomes } = await openWatched(dir, { events: false, pollMs: 100 });
    expect(store.watchStatus()).toMatchObject({ mode: 'poll', pollMs: 100 });
    writeFileSync(join(dir, 'rules.yaml'), rules('two'));
    await until(() => ruleIds(store).includes('two'), 'two');
    const reloads = outcomes.length;
    // Several polls with nothing new: no reload is reported.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(outcomes.length).toBe(reloads);
  });

  it('a broken change is reported once, and its fix is picked up', async () => {
    const dir = makeTempDir('verdict-watch-poll-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const { store, until, outcomes } = await openWatched(dir, { events: false, pollMs: 100 });
    writeFileSync(join(dir, 'rules.yaml'), 'kind: rules\nrules:\n  - id: broken\n    effect: perhaps\n    actions: [read]\n');
    await until(() => store.status().lastReloadError !== null, 'the broken change');
    expect(ruleIds(store)).toEqual(['one']);
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(outcomes.filter(({ outcome }) => !outcome.ok)).toHaveLength(1);
    writeFileSync(join(dir, 'rules.yaml'), rules('fixed'));
    await until(() => ruleIds(store).includes('fixed'), 'fixed');
    expect(store.status().lastReloadError).toBeNull();
  });
});

describe('a reload asked for while another runs', () => {
  it('is answered by a reload that began after it was asked, so a broken push is never answered "reloaded"', async () => {
    const dir = makeTempDir('verdict-reload-again-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const outcomes: ReloadOutcome[] = [];
    const store = await PolicyStore.open(dir, { onReload: (outcome) => outcomes.push(outcome) });
    stores.push(store);
    const running = store.reload();
    // Pushed while that reload runs, then asked for twice (an operator's ReloadPolicies, a SIGHUP).
    writeFileSync(join(dir, 'rules.yaml'), 'kind: rules\nrules: [\n');
    const asked = [store.reload(), store.reload()];
    await running;
    const answers = await Promise.all(asked);
    expect(outcomes).toHaveLength(2);
    for (const answer of answers) {
      expect(answer).toBe(outcomes[1]);
      expect(answer).toMatchObject({ ok: false, error: expect.stringMatching(/rules\.yaml:\d+:\d+/) });
    }
    expect(ruleIds(store)).toEqual(['one']);
  });
});

describe('a reload asked for while the store closes', () => {
  it('is answered "not run" and neither logged as a refusal nor kept as the last error', async () => {
    const dir = makeTempDir('verdict-reload-closing-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    const outcomes: ReloadOutcome[] = [];
    const store = await PolicyStore.open(dir, { onReload: (outcome) => outcomes.push(outcome) });
    writeFileSync(join(dir, 'rules.yaml'), rules('two'));
    const running = store.reload();
    // Compiling by the next turn of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
    // Queued behind the running reload, then the server stops (SIGTERM) before its turn.
    const queued = store.reload();
    const closing = store.close();
    const [first, second] = await Promise.all([running, queued]);
    await closing;
    const afterClose = await store.reload();
    expect(first).toMatchObject({ ok: true, changed: true });
    for (const answer of [second, afterClose]) expect(answer).toEqual({ ok: false, error: expect.stringMatching(/^verdict is stopping: the reload was not run/), seconds: 0 });
    expect(outcomes).toEqual([first]);
    expect(store.status().lastReloadError).toBeNull();
    expect(ruleIds(store)).toEqual(['two']);
  });
});

describe('the watcher and links out of the directory', () => {
  it('does not watch what a link to an outside directory holds (a link to / would have it walk the machine)', async () => {
    const dir = makeTempDir('verdict-watch-inside-');
    const outside = makeTempDir('verdict-watch-outside-');
    writeFileSync(join(dir, 'rules.yaml'), rules('one'));
    writeFileSync(join(outside, 'more.yaml'), rules('two'));
    let events = 0;
    const errors: string[] = [];
    const watcher = new DirectoryWatcher(dir, { onEvent: () => events++, onError: (message) => errors.push(message) });
    watcher.start();
    try {
      const settled = async (): Promise<number> => {
        for (let last = -1; last !== events; ) {
          last = events;
          await new Promise((resolve) => setTimeout(resolve, 300));
        }
        return events;
      };
      await settled();
      symlinkSync(outside, join(dir, 'shared'));
      const afterLink = await settled();
      // An edit outside: seen only if the watches followed the link.
      writeFileSync(join(outside, 'more.yaml'), rules('three'));
      writeFileSync(join(outside, 'new.yaml'), rules('four'));
      expect(await settled()).toBe(afterLink);
      // The same edit inside is seen, so the watcher was listening.
      writeFileSync(join(dir, 'rules.yaml'), rules('five'));
      expect(await settled()).toBeGreaterThan(afterLink);
      expect(errors).toEqual([]);
    } finally {
      await watcher.close();
    }
  });
});
