#!/usr/bin/env node
// Several processes of each build, side by side: throughput, and where each thread's CPU goes.
//
//   node bench/processes.mjs --baseline DIR   this build and another (a checkout with dist/ built),
//                                             --processes N of each, started alternately
//   node bench/processes.mjs                  this build alone: how far its processes differ
//   --processes N                             processes per build (4)
//   --rounds N                                rounds of 20,000 checks per process (6)
//   --async                                   the async decision log in place of the durable one
//
// For a change of a few percent, `--baseline DIR --processes 1 --rounds 16` pairs the two builds
// round by round: each round's CPU per check (all threads of the process) of this build over the
// baseline's, and the median of those ratios, which the spread between rounds does not hide.
//
// One verdict process's throughput is not a build's: on the same build, one process can
// settle 10-20% slower than another for its whole life (its deciding thread spends more CPU
// per check). A comparison of one process per build, as bench/compare.mjs makes, can show
// that gap as a change's gain or loss. Here each build runs in several processes, all
// started at once on the shipped policies with their own decision log; the rounds go
// round-robin over every process (h2load -c 4 -m 32, 128 in flight, one predict check per
// request), turning direction each round. Reported per process: the median round's
// requests/s, and the CPU per check of its deciding thread, of its busiest other thread (the
// decision log's writer) and of the rest together, read from /proc/PID/task/*/schedstat
// around each round, with the time the deciding thread waited for a core. Per build: the
// mean and range of its processes' medians. Each log is checked to hold one row per check.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { benchArgs } from './lib/args.mjs';
import { checkRequestFrame, loadProtos } from './lib/grpc-frame.mjs';
import { ensureH2load, runH2load } from './lib/h2load.mjs';
import { killAllNow, stopChild } from './lib/procs.mjs';
import { startVerdict } from './lib/servers.mjs';
import { BENCH_REQUEST } from './peers/verdict-cases.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const METHOD = '/verdict.v1.Authorization/Check';
const ROUND_CHECKS = 20_000;
const WARM_UP_CHECKS = 10_000;

const log = (line = '') => process.stdout.write(`${line}\n`);

/** Every thread of `pid`: CPU seconds run and seconds spent waiting for a core (Linux schedstat). */
function threadTimes(pid) {
  const threads = new Map();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const [run, wait] = fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
      threads.set(Number(tid), { run: run / 1e9, wait: wait / 1e9 });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return threads;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const fmt = (n, digits = 1) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const whole = (n) => Math.round(n).toLocaleString('en-US');

async function main() {
  const options = benchArgs('bench/processes.mjs', { numbers: { processes: 4, rounds: 6 }, switches: ['async'] });
  const mode = options.async ? 'async' : 'durable';
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: build first (`make build`)');
  if (!fs.existsSync('/proc/self/task')) throw new Error('bench/processes.mjs reads each thread from /proc: it runs on Linux only');
  ensureH2load(log);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-bench-processes-'));
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const bodyFile = path.join(tmp, 'check-request.bin');
  fs.writeFileSync(bodyFile, checkRequestFrame(loadProtos(path.join(ROOT, 'proto')), BENCH_REQUEST));

  const builds = [{ label: 'this build', root: ROOT }];
  if (options.baseline !== null) builds.push({ label: `baseline (${path.basename(options.baseline)})`, root: options.baseline });
  log(`# ${options.processes} verdict process${options.processes > 1 ? 'es' : ''} per build, ${mode} decision log`);
  log(`machine: ${os.cpus()[0]?.model.trim()}, ${os.cpus().length} cores; node ${process.version}; load average before: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  log(`h2load -c 4 -m 32 -t 1: ${WARM_UP_CHECKS.toLocaleString('en-US')} warm-up checks per process, then ${options.rounds} rounds of ${ROUND_CHECKS.toLocaleString('en-US')}, round-robin over every process`);

  const servers = [];
  try {
    // Started alternately, so that no build gets the machine's quieter moments.
    for (let i = 0; i < options.processes; i++) {
      for (const build of builds) {
        const dbFile = path.join(tmp, `${servers.length}.db`);
        const server = await startVerdict({ mode, dbFile, root: build.root });
        servers.push({ ...server, build, dbFile, name: `p${servers.length}`, url: `http://127.0.0.1:${server.grpcPort}${METHOD}`, rates: [], roundCpuPerCheck: [], checks: 0, succeeded: 0, threads: new Map() });
      }
    }
    for (const s of servers) s.succeeded += (await runH2load({ url: s.url, bodyFile, clients: 4, streams: 32, requests: WARM_UP_CHECKS })).succeeded;
    for (let round = 1; round <= options.rounds; round++) {
      const line = [];
      for (const s of round % 2 === 1 ? servers : [...servers].reverse()) {
        const before = threadTimes(s.child.pid);
        const run = await runH2load({ url: s.url, bodyFile, clients: 4, streams: 32, requests: ROUND_CHECKS });
        const after = threadTimes(s.child.pid);
        let roundCpu = 0;
        for (const [tid, end] of after) roundCpu += end.run - (before.get(tid)?.run ?? 0);
        s.roundCpuPerCheck.push(roundCpu / run.succeeded);
        s.rates.push(run.reqPerSec);
        s.checks += run.succeeded;
        s.succeeded += run.succeeded;
        for (const [tid, end] of after) {
          const start = before.get(tid);
          if (start === undefined) continue;
          const sum = s.threads.get(tid) ?? { run: 0, wait: 0 };
          sum.run += end.run - start.run;
          sum.wait += end.wait - start.wait;
          s.threads.set(tid, sum);
        }
        line.push(`${s.name} ${whole(run.reqPerSec)}`);
      }
      log(`  round ${round}: ${line.join(', ')} req/s`);
    }
  } finally {
    for (const s of servers) await stopChild(s.child);
  }

  log('');
  log('| process | build | requests/s (median round) | deciding thread µs/check | waited for a core µs/check | writer thread µs/check | other threads µs/check | log rows |');
  log('|---|---|--:|--:|--:|--:|--:|---|');
  for (const s of servers) {
    const perCheck = (seconds) => (seconds / s.checks) * 1e6;
    const deciding = s.threads.get(s.child.pid) ?? { run: 0, wait: 0 };
    const others = [...s.threads].filter(([tid]) => tid !== s.child.pid).map(([, t]) => t.run).sort((a, b) => b - a);
    const writer = others[0] ?? 0;
    const rest = others.slice(1).reduce((a, b) => a + b, 0);
    const db = new Database(s.dbFile, { readonly: true });
    const rows = db.prepare('SELECT count(*) AS n FROM decisions').get().n;
    db.close();
    s.rowsComplete = rows === s.succeeded;
    log(`| ${s.name} | ${s.build.label} | ${whole(median(s.rates))} | ${fmt(perCheck(deciding.run))} | ${fmt(perCheck(deciding.wait))} | ${fmt(perCheck(writer))} | ${fmt(perCheck(rest))} | ${rows.toLocaleString('en-US')} of ${s.succeeded.toLocaleString('en-US')}${s.rowsComplete ? '' : ' INCOMPLETE'} |`);
  }
  log('');
  const means = new Map();
  for (const build of builds) {
    const medians = servers.filter((s) => s.build === build).map((s) => median(s.rates));
    const mean = medians.reduce((a, b) => a + b, 0) / medians.length;
    means.set(build, mean);
    log(`- ${build.label}: mean of the processes' medians ${whole(mean)} req/s (${whole(Math.min(...medians))}–${whole(Math.max(...medians))})`);
  }
  if (builds.length === 2) {
    log(`- this build against the baseline: ${(means.get(builds[0]) / means.get(builds[1])).toFixed(2)}×`);
    // Round by round, each build's CPU per check (mean over its processes), this build over the baseline.
    const meanCpu = (build, round) => {
      const own = servers.filter((s) => s.build === build);
      return own.reduce((sum, s) => sum + s.roundCpuPerCheck[round], 0) / own.length;
    };
    const ratios = Array.from({ length: options.rounds }, (_, round) => meanCpu(builds[0], round) / meanCpu(builds[1], round));
    log(`- CPU per check (all threads), this build over the baseline, round by round: ${ratios.map((r) => r.toFixed(2)).join(' ')}`);
    log(`  median ${median(ratios).toFixed(3)}×; this build used less in ${ratios.filter((r) => r < 1).length} of ${ratios.length} rounds`);
  }
  if (servers.some((s) => !s.rowsComplete)) {
    log('- a decision log does not hold one row per answered check: see the table');
    process.exitCode = 1;
  }
}

main().catch((error) => {
  killAllNow();
  process.stderr.write(`${error.message}\n`);
  process.exitCode = 1;
});
