import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplayReport } from '../../src/analysis/replay-report.js';
import { runReplay } from '../../src/cli/replay.js';
import { decisionRecord } from '../../src/decide/record.js';
import { loadAudit } from '../../src/decisions/audit-setup.js';
import { startWriterThread } from '../../src/decisions/writer-thread.js';
import { evaluate } from '../../src/engine/evaluate.js';
import type { DecisionRequest } from '../../src/types.js';
import { loadValid, makeTempDir, removeTempDirs } from '../helpers/policies.js';
import { ROOT } from '../helpers/verdict-process.js';

/** The caller every fixture decision is recorded from. */
const FIXTURE_CALL = { caller: 'ipv4:127.0.0.1:50000', requestId: null };

/**
 * A log large enough for `verdict replay` to use its threads by default
 * (started before the candidate is compiled, handed the policy files early,
 * several blocks each): their report must be the one a single thread gives.
 */
const ROWS = 60_000;

let work: string;
let db: string;
let removed: string;
/** The time of the first row, epoch ms: row j was decided at start + j. */
let start: number;

async function report(...argv: string[]): Promise<{ code: number; report: ReplayReport }> {
  let stdout = '';
  let stderr = '';
  const code = await runReplay([...argv, '--json', '--examples', '5'], { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  if (code !== 0 && code !== 1) throw new Error(`replay exited ${code}: ${stderr}`);
  return { code, report: JSON.parse(stdout) as ReplayReport };
}

/** What must be equal between two replays of the same change. */
function essence(r: ReplayReport): unknown {
  const { seconds: _t, rowsPerSecond: _r, cpuSeconds: _u, ...rest } = r;
  return rest;
}

beforeAll(async () => {
  work = makeTempDir('verdict-replay-threads-');
  db = join(work, 'decisions.db');
  const policySet = loadValid(join(ROOT, 'policies')).policySet;
  const audit = loadAudit({ db, checkpointEveryRows: 10_000, checkpointEverySeconds: 3600, signingKey: null, publicKey: null, sensitiveAttributes: [], hmacKey: null });
  const writer = await startWriterThread({ path: db, mode: 'async', checkpoints: audit.checkpoints }, null);
  const roles = [['data_scientist'], ['analyst'], ['admin'], ['viewer']];
  const actions = ['predict', 'read', 'retrain', 'delete', 'list'];
  start = Date.now() - ROWS;
  for (let i = 0; i < ROWS; i += 5_000) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < i + 5_000; j++) {
      const p = j % 300;
      const m = (j * 7) % 40;
      const request: DecisionRequest = {
        principal: { id: `user-${p}`, roles: roles[p % 4] as string[], attributes: { org: p % 5 === 0 ? 'globex' : 'acme', employment: p % 9 === 0 ? 'contractor' : 'employee' } },
        action: actions[j % 5] as string,
        resource: { type: 'model', id: `model-${m}`, attributes: { org: m % 6 === 0 ? 'globex' : 'acme', env: m % 3 === 0 ? 'production' : 'staging', owner: `user-${(m * 31) % 300}`, classification: m % 10 === 0 ? 'restricted' : 'internal' } },
        context: { attributes: { ip: `10.0.${(j >> 8) & 255}.${j & 255}` } },
      };
      const decision = evaluate(policySet, request);
      batch.push(
        writer.append(decisionRecord(request, decision, FIXTURE_CALL, start + j, 20)),
      );
    }
    await Promise.all(batch);
  }
  await writer.close();
  // The shipped set without its first rule, and without its tests (which name that rule).
  removed = join(work, 'removed');
  cpSync(join(ROOT, 'policies'), removed, { recursive: true });
  rmSync(join(removed, 'tests'), { recursive: true });
  const models = join(removed, 'models.yaml');
  const text = readFileSync(models, 'utf8');
  const from = text.indexOf('  - id: ds-read-predict-own-org');
  writeFileSync(models, text.slice(0, from) + text.slice(text.indexOf('  - id:', from + 1)));
}, 120_000);

afterAll(() => removeTempDirs());

describe('replay threads over a large log', () => {
  it('the default threads (started early, several blocks each) report exactly what one thread does', async () => {
    const one = await report('--db', db, '--policies', removed, '--workers', '1');
    expect(one.code).toBe(1);
    expect(one.report.rows).toBe(ROWS);
    expect(one.report.flips.ALLOW_TO_DENY.count).toBeGreaterThan(100);
    const byDefault = await report('--db', db, '--policies', removed);
    expect(essence(byDefault.report)).toEqual(essence(one.report));
    const three = await report('--db', db, '--policies', removed, '--workers', '3');
    expect(essence(three.report)).toEqual(essence(one.report));
    // Against a baseline too: the threads compile both sets.
    const against = await report('--db', db, '--policies', join(ROOT, 'policies'), '--against', removed, '--workers', '3');
    const againstOne = await report('--db', db, '--policies', join(ROOT, 'policies'), '--against', removed, '--workers', '1');
    expect(against.report.flips.DENY_TO_ALLOW.count).toBe(one.report.flips.ALLOW_TO_DENY.count);
    expect(essence(against.report)).toEqual(essence(againstOne.report));
  }, 120_000);

  it('threads started for a large log but not needed by a small window are stopped, and the window is replayed alone', async () => {
    const all = await report('--db', db, '--policies', removed, '--workers', '1');
    const since = new Date(start + ROWS - 10_000).toISOString();
    const recent = await report('--db', db, '--policies', removed, '--since', since);
    expect(recent.report.rows).toBe(10_000);
    expect(all.report.rows).toBe(ROWS);
    const recentOne = await report('--db', db, '--policies', removed, '--since', since, '--workers', '1');
    expect(essence(recent.report)).toEqual(essence(recentOne.report));
  }, 120_000);

  it('a candidate that does not compile stops the threads started for it and exits 3', async () => {
    const broken = join(work, 'broken');
    cpSync(removed, broken, { recursive: true });
    writeFileSync(join(broken, 'models.yaml'), 'kind: rules\nrules:\n  - id: [\n');
    let stderr = '';
    const code = await runReplay(['--db', db, '--policies', broken, '--json'], { stdout: () => {}, stderr: (s) => (stderr += s) });
    expect(code).toBe(3);
    expect(stderr).toContain('models.yaml');
  }, 60_000);
});
