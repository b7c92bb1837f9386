import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { ReplayReport } from '../../src/analysis/replay-report.js';
import { runAudit } from '../../src/cli/audit.js';
import { runReplay } from '../../src/cli/replay.js';
import { queryDecisions, type StoredDecision } from '../../src/decisions/query.js';
import { loadValid, makeTempDir, removeTempDirs } from '../helpers/policies.js';
import { checkRequest, ensureBuilt, ROOT, startVerdict, verdictClient } from '../helpers/verdict-process.js';

/**
 * Replay against a log a real server made: the shipped policies, their test
 * cases sent over gRPC, gateway requests through forward-auth, refusals, an
 * Admin call, and requests carrying a sensitive attribute.
 */

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function replay(...argv: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runReplay(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

async function report(...argv: string[]): Promise<{ code: number; report: ReplayReport }> {
  const run = await replay(...argv, '--json', '--examples', '1000');
  if (run.code !== 0 && run.code !== 1) throw new Error(`replay exited ${run.code}: ${run.stderr}`);
  return { code: run.code, report: JSON.parse(run.stdout) as ReplayReport };
}

/** The decision ids a report names as flipped in one direction (every one, with --examples large enough). */
function flipped(r: ReplayReport, direction: 'ALLOW_TO_DENY' | 'DENY_TO_ALLOW'): string[] {
  return [...r.flips[direction].examples].sort();
}

/** What must be equal between two replays of the same change. */
function essence(r: ReplayReport): unknown {
  const { source: _s, seconds: _t, rowsPerSecond: _r, cpuSeconds: _u, candidate: _c, baseline: _b, warnings: _w, ...rest } = r;
  return rest;
}

function forwardAuth(port: number, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/forward-auth', method: 'GET', headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

let work: string;
let base: string;
let db: string;
let decisions: StoredDecision[];

/**
 * A copy of the shipped policies with `edit` applied to the text of each file,
 * without their tests (which name the rules a change removes).
 */
function variant(name: string, edit: (file: string, text: string) => string | null): string {
  const dir = join(work, name);
  cpSync(base, dir, { recursive: true });
  rmSync(join(dir, 'tests'), { recursive: true });
  for (const file of readdirSync(dir)) {
    if (!file.endsWith('.yaml')) continue;
    const next = edit(file, readFileSync(join(dir, file), 'utf8'));
    if (next === null) rmSync(join(dir, file));
    else writeFileSync(join(dir, file), next);
  }
  return dir;
}

/** models.yaml without the rule `id`. */
function withoutRule(id: string): (file: string, text: string) => string {
  return (file, text) => {
    if (file !== 'models.yaml') return text;
    const doc = parseYaml(text) as { kind: string; rules: Array<{ id: string }> };
    return JSON.stringify({ ...doc, rules: doc.rules.filter((r) => r.id !== id) }, null, 2);
  };
}

beforeAll(async () => {
  ensureBuilt();
  work = makeTempDir('verdict-replay-');
  base = join(work, 'base');
  cpSync(join(ROOT, 'policies'), base, { recursive: true });
  db = join(work, 'decisions.db');
  const config = join(work, 'verdict.yaml');
  writeFileSync(
    config,
    'trustedPrincipal:\n  idHeader: x-auth-request-user\n  rolesHeader: x-auth-request-groups\n  attributeHeaders: { org: x-auth-request-org, employment: x-auth-request-employment }\n',
  );
  const server = await startVerdict({ policies: base, db, args: ['--config', config, '--sensitive-attributes', 'principal.attributes.email'] });
  const client = verdictClient(server.grpcPort);
  try {
    // Every case of the shipped tests that is a request (not an HTTP one), twice.
    const cases = loadValid(base).tests.filter((c) => c.http === undefined);
    expect(cases.length).toBeGreaterThan(10);
    for (let round = 0; round < 2; round++) {
      for (const c of cases) {
        await client.call('Authorization', 'Check', checkRequest({
          principal: { id: c.request.principal.id, roles: [...c.request.principal.roles], attributes: c.request.principal.attributes },
          action: c.request.action,
          resource: { type: c.request.resource.type, id: c.request.resource.id, attributes: c.request.resource.attributes },
          context: c.request.context.attributes,
        }));
      }
    }
    // A principal whose email is sensitive: stored as an HMAC, so not replayable.
    for (const id of ['mia', 'max']) {
      await client.call('Authorization', 'Check', checkRequest({
        principal: { id, roles: ['data_scientist'], attributes: { org: 'acme', email: `${id}@acme.example` } },
        action: 'predict',
        resource: { type: 'model', id: 'fraud-detector-v3', attributes: { org: 'acme' } },
      }));
    }
    // An invalid request (no principal id) is refused before the rules.
    await client.call('Authorization', 'Check', checkRequest({ principal: { id: '' }, action: 'predict', resource: { type: 'model', id: 'm' } })).catch(() => null);
    // An Admin call (loopback) is a row of its own kind.
    await client.call('Admin', 'GetPolicyStatus', {});
    // Gateway requests: allowed, denied by a rule, unauthenticated, and no route.
    const gateway = { 'x-auth-request-user': 'gwen', 'x-auth-request-groups': 'data_scientist', 'x-auth-request-org': 'acme', 'x-auth-request-employment': 'employee', 'x-model-org': 'acme', 'x-model-classification': 'internal' };
    expect(await forwardAuth(server.httpPort, { ...gateway, 'x-original-method': 'POST', 'x-original-uri': '/v1/models/fraud-detector-v3/predict' })).toBe(200);
    expect(await forwardAuth(server.httpPort, { ...gateway, 'x-model-org': 'globex', 'x-original-method': 'POST', 'x-original-uri': '/v1/models/globex-ranker/predict' })).toBe(403);
    expect(await forwardAuth(server.httpPort, { 'x-original-method': 'POST', 'x-original-uri': '/v1/models/fraud-detector-v3/predict' })).toBe(401);
    expect(await forwardAuth(server.httpPort, { ...gateway, 'x-original-method': 'GET', 'x-original-uri': '/nowhere' })).toBe(403);
  } finally {
    client.close();
    expect(await server.stop()).toBe(0);
  }
  decisions = queryDecisions(db, { limit: 100_000 });
}, 120_000);

afterAll(() => removeTempDirs());

describe('verdict replay on a log of the shipped policies', () => {
  it('replays the log against the very set that made it: nothing flips, refusals and masked rows apart', async () => {
    const { code, report: r } = await report('--db', db, '--policies', base);
    expect(code).toBe(0);
    expect(r.rows).toBe(decisions.length);
    expect(r.flips.ALLOW_TO_DENY.count + r.flips.DENY_TO_ALLOW.count).toBe(0);
    const refused = Object.fromEntries(r.refused.map((g) => [g.key, g.count]));
    expect(refused).toEqual({ DENIED_INVALID_REQUEST: 1, DENIED_UNAUTHENTICATED: 1, NO_ROUTE: 1 });
    expect(r.admin.count).toBe(1);
    expect(r.notReplayable.masked.count).toBe(2);
    expect(r.notReplayable.masked.paths).toEqual({ 'principal.attributes.email': 2 });
    expect(r.notReplayable.unreadable.count).toBe(0);
    // The two gateway requests that reached the rules are replayed with the question their route made.
    expect(r.gateway).toBe(2);
    expect(r.replayed).toBe(r.rows - 3 - 1 - 2);
    expect(r.unchanged).toBe(r.replayed);
  });

  it('removing a rule flips exactly the decisions it alone allowed', async () => {
    const removed = variant('removed', withoutRule('ds-read-predict-own-org'));
    const { code, report: r } = await report('--db', db, '--policies', removed);
    expect(code).toBe(1);
    // The oracle, from the log itself: replayable allows whose only deciding rule was the one removed.
    const masked = new Set(r.notReplayable.masked.examples);
    const expected = decisions
      .filter((d) => d.effect === 'ALLOW' && d.ruleIds.length === 1 && d.ruleIds[0] === 'ds-read-predict-own-org' && !JSON.stringify(d.request).includes('hmac-sha256:'))
      .map((d) => d.decisionId)
      .sort();
    expect(expected.length).toBeGreaterThan(2);
    expect(flipped(r, 'ALLOW_TO_DENY')).toEqual(expected);
    expect(r.flips.DENY_TO_ALLOW.count).toBe(0);
    expect(expected.some((id) => masked.has(id))).toBe(false);
    expect(r.flips.ALLOW_TO_DENY.byRule.map((g) => [g.rule, g.role, g.count])).toEqual([['ds-read-predict-own-org', 'no longer allows', expected.length]]);
    expect(r.flips.ALLOW_TO_DENY.byAction.map((g) => g.key)).toEqual(['predict']);
    // Accepting the direction makes it exit 0; the flips are still reported.
    const accepted = await replay('--db', db, '--policies', removed, '--allow-flips', 'ALLOW_TO_DENY');
    expect(accepted.code).toBe(0);
    expect(accepted.stdout).toContain(`ALLOW → DENY: ${expected.length} (accepted: --allow-flips)`);
    expect((await replay('--db', db, '--policies', removed, '--allow-flips', 'DENY_TO_ALLOW')).code).toBe(1);
  });

  it('a change that only reformats (YAML rewritten as JSON, keys reordered, comments gone) flips nothing', async () => {
    const reformatted = variant('reformatted', (_file, text) => {
      const docs = text.split(/^---$/m).map((d) => parseYaml(d) as Record<string, unknown>);
      return docs.map((d) => JSON.stringify(Object.fromEntries(Object.entries(d).reverse()))).join('\n---\n');
    });
    const { code, report: r } = await report('--db', db, '--policies', reformatted);
    expect(code).toBe(0);
    expect(r.flips.ALLOW_TO_DENY.count + r.flips.DENY_TO_ALLOW.count).toBe(0);
    expect(r.unchanged).toBe(r.replayed);
  });

  it('adding a deny flips the allows it matches, and only those', async () => {
    const denied = variant('denied', (file, text) =>
      file === 'models.yaml'
        ? `${text}\n  - id: freeze-fraud-models\n    effect: deny\n    actions: ["*"]\n    resource:\n      type: model\n      id: { glob: "fraud-*" }\n`
        : text,
    );
    const { code, report: r } = await report('--db', db, '--policies', denied);
    expect(code).toBe(1);
    const expected = decisions
      .filter((d) => d.effect === 'ALLOW' && d.resourceType === 'model' && d.resourceId.startsWith('fraud-') && !JSON.stringify(d.request).includes('hmac-sha256:'))
      .map((d) => d.decisionId)
      .sort();
    expect(expected.length).toBeGreaterThan(2);
    expect(flipped(r, 'ALLOW_TO_DENY')).toEqual(expected);
    expect(r.flips.DENY_TO_ALLOW.count).toBe(0);
    expect(r.flips.ALLOW_TO_DENY.byRule.map((g) => [g.rule, g.role])).toEqual([['freeze-fraud-models', 'denies']]);
    expect(r.flips.ALLOW_TO_DENY.byResourceType).toEqual([expect.objectContaining({ key: 'model', count: expected.length })]);
    // The gateway's allowed predict is among them, replayed from its recorded request.
    const gatewayAllow = decisions.find((d) => d.principalId === 'gwen' && d.effect === 'ALLOW');
    expect(gatewayAllow?.details?.http).toEqual({ method: 'POST', path: '/v1/models/fraud-detector-v3/predict' });
    expect(flipped(r, 'ALLOW_TO_DENY')).toContain(gatewayAllow?.decisionId);
  });

  it('the text report names each group with counts and example ids', async () => {
    const run = await replay('--db', db, '--policies', variant('removed-text', withoutRule('ds-read-predict-own-org')), '--examples', '1');
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^ALLOW → DENY: \d+$/m);
    expect(run.stdout).toMatch(/^ {4}ds-read-predict-own-org \(no longer allows\) +\d+  e\.g\. [0-9a-f-]{36}$/m);
    expect(run.stdout).toContain('masked attributes         2 (principal.attributes.email 2;');
    expect(run.stdout).toContain('refused before the rules  3 (DENIED_INVALID_REQUEST 1, DENIED_UNAUTHENTICATED 1, NO_ROUTE 1)');
    expect(run.stderr).toBe('');
  });

  it('threads over ranges of the log give the same report as one thread', async () => {
    const removed = variant('removed-threads', withoutRule('ds-read-predict-own-org'));
    const one = await report('--db', db, '--policies', removed, '--workers', '1');
    const two = await report('--db', db, '--policies', removed, '--workers', '2');
    expect(essence(two.report)).toEqual(essence(one.report));
  });

  it('an export replays as the log does', async () => {
    const file = join(work, 'sample.jsonl');
    const out = await runAudit(['export', '--db', db, '--out', file], { stdout: () => {}, stderr: () => {} });
    expect(out).toBe(0);
    const removed = variant('removed-export', withoutRule('ds-read-predict-own-org'));
    const fromLog = await report('--db', db, '--policies', removed);
    const fromExport = await report('--export', file, '--policies', removed);
    expect(essence(fromExport.report)).toEqual(essence(fromLog.report));
    // The window applies to an export too.
    const none = await report('--export', file, '--policies', removed, '--until', '2000-01-01');
    expect(none.report.rows).toBe(0);
    expect(none.code).toBe(0);
  });

  it('--against compares two sets on the recorded requests: only their difference shows', async () => {
    const removed = variant('removed-against', withoutRule('ds-read-predict-own-org'));
    const both = variant('both', withoutRule('ds-read-predict-own-org'));
    // The same set as candidate and baseline: nothing, though both differ from what was recorded.
    const same = await report('--db', db, '--policies', removed, '--against', both);
    expect(same.code).toBe(0);
    // Baseline: the removed set; candidate: the shipped one. The flips are the removal's, reversed.
    const back = await report('--db', db, '--policies', base, '--against', removed);
    const forward = await report('--db', db, '--policies', removed);
    expect(back.code).toBe(1);
    expect(flipped(back.report, 'DENY_TO_ALLOW')).toEqual(flipped(forward.report, 'ALLOW_TO_DENY'));
    expect(back.report.flips.DENY_TO_ALLOW.byRule.map((g) => [g.rule, g.role])).toEqual([['ds-read-predict-own-org', 'allows']]);
    expect(back.report.baseline).toEqual({ kind: 'policies', source: removed, version: expect.stringMatching(/^sha256:/) });
  });

  it('--rev reads the policy directory from git without a checkout, and equals the same files on disk', async () => {
    const repo = join(work, 'repo');
    const git = (...args: string[]): string => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'commit.gpgsign=false', ...args], { cwd: repo, encoding: 'utf8' });
    cpSync(base, join(repo, 'policies'), { recursive: true });
    git('init', '-q', '-b', 'main');
    git('add', '.');
    git('commit', '-q', '-m', 'shipped');
    const removed = variant('removed-rev', withoutRule('ds-read-predict-own-org'));
    cpSync(join(removed, 'models.yaml'), join(repo, 'policies', 'models.yaml'));
    git('rm', '-q', '-r', 'policies/tests');
    git('commit', '-q', '-am', 'remove a rule');
    const head = git('rev-parse', 'HEAD').trim();
    // The work tree now holds something else again, uncommitted: --rev must not read it.
    writeFileSync(join(repo, 'policies', 'models.yaml'), 'kind: rules\nrules: []\n');
    writeFileSync(join(repo, 'policies', 'extra.yaml'), 'kind: rules\nrules:\n  - { id: deny-all, effect: deny, actions: ["*"] }\n');

    const policies = join(repo, 'policies');
    const fromGit = await report('--db', db, '--policies', policies, '--rev', 'HEAD');
    const fromDisk = await report('--db', db, '--policies', removed);
    expect(fromGit.code).toBe(1);
    expect(essence(fromGit.report)).toEqual(essence(fromDisk.report));
    expect(fromGit.report.candidate).toEqual({ source: `${policies}@HEAD`, version: head });
    // The parent commit is the shipped set: nothing flips.
    expect((await report('--db', db, '--policies', policies, '--rev', 'HEAD~1')).code).toBe(0);
    // A pull request's change alone: the base revision against the head.
    const pr = await report('--db', db, '--policies', policies, '--rev', 'HEAD', '--against-rev', 'main~1');
    expect(flipped(pr.report, 'ALLOW_TO_DENY')).toEqual(flipped(fromDisk.report, 'ALLOW_TO_DENY'));
    // A revision that does not exist is a usage error naming it.
    const bad = await replay('--db', db, '--policies', policies, '--rev', 'no-such-branch');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--rev no-such-branch: no such revision');
    // A directory the revision does not have.
    const missing = await replay('--db', db, '--policies', join(repo, 'elsewhere'), '--rev', 'HEAD');
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('does not exist at HEAD');
  });

  it('says what is wrong, with the exit code of the README table', async () => {
    const broken = variant('broken', (file, text) => (file === 'models.yaml' ? text.replace('effect: deny', 'effect: maybe') : text));
    const invalid = await replay('--db', db, '--policies', broken);
    expect(invalid.code).toBe(3);
    expect(invalid.stderr).toMatch(/models\.yaml:\d+:\d+: .*effect/);
    const noLog = await replay('--db', join(work, 'absent.db'), '--policies', base);
    expect(noLog.code).toBe(4);
    expect(noLog.stderr).toContain('absent.db');
    const usage = await replay('--db', db, '--policies', base, '--allow-flips', 'SIDEWAYS');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--allow-flips takes ALLOW_TO_DENY or DENY_TO_ALLOW');
    expect((await replay('--db', db, '--export', 'x.jsonl')).code).toBe(2);
    expect((await replay('--against', base, '--against-recorded', '--db', db)).code).toBe(2);
    const notExport = join(work, 'not-an-export.jsonl');
    writeFileSync(notExport, 'hello\n');
    const badExport = await replay('--export', notExport, '--policies', base);
    expect(badExport.code).toBe(4);
    expect(badExport.stderr).toContain('not-an-export.jsonl:1');
  });
});
