#!/usr/bin/env node
// Replay benchmark: how many recorded decisions a second `verdict replay` re-evaluates.
//
//   node bench/replay.mjs            1,000,000-row log
//   node bench/replay.mjs --quick    200,000 rows
//   node bench/replay.mjs --smoke    5,000 rows: checks that the script works, measures nothing
//   --keep                           keep the temp dir (the log and the candidate policies)
//
// A log of N rows is written through verdict's own writer (async mode, signed
// checkpoints): requests over 2,000 principals in three roles and two
// organisations, 60 models, five actions, each with its own context (a source
// address), recorded with what the shipped policies decide. The candidate is
// the shipped set with one rule removed. `verdict replay`, the real CLI, runs
// once to warm the page cache, then is timed with its default threads and with
// one; rows/s is rows / wall time of the whole command (start-up, policy
// compilation in each thread and the count of the window included), and rows /
// replay's own timer (from opening the log to the merged tally; the threads
// start, load and compile before it, beside the command's own start-up). On a
// busy machine the wall time mostly measures the others' load: CPU time (every
// thread's, over replay's timer and over the whole command, the latter from
// /usr/bin/time where there is one) gives rows per CPU second, which it
// disturbs much less.
//   --db FILE                        replay this log instead of writing one (it must hold the bench's rows)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'verdict.js');
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const SMOKE = argv.includes('--smoke');
const KEEP = argv.includes('--keep');
const dbAt = argv.indexOf('--db');
const GIVEN_DB = dbAt === -1 ? null : argv[dbAt + 1];
if (dbAt !== -1) argv.splice(dbAt, 2);
for (const arg of argv) {
  if (!['--quick', '--smoke', '--keep'].includes(arg)) {
    console.error(`bench/replay.mjs: unknown argument ${arg}; use --quick, --smoke or --keep`);
    process.exit(2);
  }
}
const ROWS = SMOKE ? 5_000 : QUICK ? 200_000 : 1_000_000;
const log = (line = '') => process.stdout.write(`${line}\n`);
const n = (x) => Math.round(x).toLocaleString('en-US');

async function writeLog(db) {
  const { startWriterThread } = await import('../dist/decisions/writer-thread.js');
  const { loadAudit } = await import('../dist/decisions/audit-setup.js');
  const { decisionRecord } = await import('../dist/decide/record.js');
  const CALL = { caller: 'ipv4:127.0.0.1:50000', requestId: null };
  const { loadPolicies } = await import('../dist/policy/load.js');
  const { evaluate } = await import('../dist/engine/evaluate.js');
  const loaded = loadPolicies(path.join(ROOT, 'policies'));
  if (!loaded.ok) throw new Error('the shipped policies do not load');
  const policySet = loaded.policies.policySet;
  const audit = loadAudit({ db, checkpointEveryRows: 10_000, checkpointEverySeconds: 3600, signingKey: null, publicKey: null, sensitiveAttributes: [], hmacKey: null });
  const writer = await startWriterThread({ path: db, mode: 'async', checkpoints: audit.checkpoints }, null);
  const roles = [['data_scientist'], ['analyst'], ['admin'], ['viewer']];
  const actions = ['predict', 'read', 'retrain', 'delete', 'list'];
  const start = Date.now() - ROWS;
  for (let i = 0; i < ROWS; i += 10_000) {
    const batch = [];
    for (let j = i; j < Math.min(ROWS, i + 10_000); j++) {
      const time = start + j;
      const p = j % 2000;
      const m = (j * 7) % 60;
      const request = {
        principal: { id: `user-${p}`, roles: roles[p % 4], attributes: { org: p % 5 === 0 ? 'globex' : 'acme', employment: p % 9 === 0 ? 'contractor' : 'employee' } },
        action: actions[j % 5],
        resource: { type: 'model', id: `model-${m}`, attributes: { org: m % 6 === 0 ? 'globex' : 'acme', env: m % 3 === 0 ? 'production' : 'staging', owner: `user-${m * 31 % 2000}`, classification: m % 10 === 0 ? 'restricted' : 'internal' } },
        context: { attributes: { ip: `10.${(j >> 16) & 255}.${(j >> 8) & 255}.${j & 255}`, ...(j % 50 === 0 ? { ticket: `INC-${j}` } : {}) } },
      };
      const decision = evaluate(policySet, request);
      batch.push(
        writer.append(decisionRecord(request, decision, CALL, time, 20 + (j % 50))),
      );
    }
    await Promise.all(batch);
    await writer.flush();
  }
  await writer.close();
}

function candidate(tmp) {
  const dir = path.join(tmp, 'candidate');
  fs.cpSync(path.join(ROOT, 'policies'), dir, { recursive: true });
  fs.rmSync(path.join(dir, 'tests'), { recursive: true });
  const models = path.join(dir, 'models.yaml');
  // Remove ds-read-predict-own-org: the rule is the first of the file, up to the next "  - id:".
  const text = fs.readFileSync(models, 'utf8');
  const from = text.indexOf('  - id: ds-read-predict-own-org');
  const to = text.indexOf('  - id:', from + 1);
  fs.writeFileSync(models, text.slice(0, from) + text.slice(to));
  return dir;
}

// The whole command's CPU time (start-up and every thread) comes from GNU time where there is one.
const TIME = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

function runReplay(args) {
  const command = [process.execPath, BIN, 'replay', '--json', ...args];
  const timeFile = path.join(os.tmpdir(), `verdict-bench-replay-time-${process.pid}`);
  const t0 = performance.now();
  const r = TIME === null ? spawnSync(command[0], command.slice(1), { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 28 }) : spawnSync(TIME, ['-o', timeFile, '-f', '%U %S', ...command], { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 28 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0 && r.status !== 1) throw new Error(`replay exited ${r.status}: ${r.stderr}`);
  const report = JSON.parse(r.stdout);
  let commandCpu = null;
  if (TIME !== null) {
    const [user, system] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
    fs.rmSync(timeFile, { force: true });
    commandCpu = user + system;
  }
  return { wall, report, commandCpu };
}

async function main() {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: build first (`make build` or `npx tsc -p tsconfig.json`)');
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, node ${process.version}, load average ${os.loadavg()[0].toFixed(1)} at start`;
  log(`machine: ${machine}`);
  log(`${SMOKE ? 'smoke (figures mean nothing)' : QUICK ? 'quick' : 'full'} mode`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-bench-replay-'));
  try {
    const db = GIVEN_DB ?? path.join(tmp, 'decisions.db');
    if (GIVEN_DB === null) {
      const t0 = performance.now();
      await writeLog(db);
      log(`wrote ${n(ROWS)} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${(fs.statSync(db).size / 2 ** 20).toFixed(0)} MiB`);
    }
    const dir = candidate(tmp);
    runReplay(['--db', db, '--policies', dir]);
    log('');
    log('| run | rows | flipped | wall s | rows/s (wall) | rows/s (replay\'s own timer) | CPU s (replay) | rows per CPU second (replay) | CPU s (whole command) | rows per CPU second (whole command) |');
    log('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const [label, extra] of [
      [`default threads (${Math.min(4, os.availableParallelism())})`, []],
      ['1 thread', ['--workers', '1']],
    ]) {
      const { wall, report, commandCpu } = runReplay(['--db', db, '--policies', dir, ...extra]);
      const flipped = report.flips.ALLOW_TO_DENY.count + report.flips.DENY_TO_ALLOW.count;
      const whole = commandCpu === null ? '— | —' : `${commandCpu.toFixed(2)} | ${n(report.rows / commandCpu)}`;
      log(`| ${label} | ${n(report.rows)} | ${n(flipped)} | ${wall.toFixed(2)} | ${n(report.rows / wall)} | ${n(report.rowsPerSecond)} | ${report.cpuSeconds.toFixed(2)} | ${n(report.rows / report.cpuSeconds)} | ${whole} |`);
    }
    log(`\nload average ${os.loadavg()[0].toFixed(1)} at the end`);
  } finally {
    if (KEEP) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
