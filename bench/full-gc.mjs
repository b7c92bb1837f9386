#!/usr/bin/env node
// Full collections under sustained load: how long the deciding thread stops when V8
// frees the old generation, with verdict's pacing (src/gc-pacing.ts) and with V8's own limit.
//
//   node bench/full-gc.mjs                   verdict as shipped, and the same build under
//                                            `node --heap-growing-percent=0` (V8's own limit:
//                                            an operator's flag wins over the pacing)
//   node bench/full-gc.mjs --baseline DIR    also another build of verdict (a checkout with dist/ built)
//   --rounds N                               rounds of 20,000 checks per server (30)
//   --rules N                                a synthetic set of N rules (bench/lib/synthetic.mjs, 20 files)
//                                            in place of the shipped policies, asked one of its own requests
//
// Every server starts at once under `node --trace-gc-nvp`, on the shipped policies with the
// durable log; the rounds go round-robin over them (h2load -c 4 -m 32, 128 in flight, one
// predict check per request), so a busy moment of the machine hits each alike. Reported per
// server: the median round's requests/s, server CPU per 10,000 checks, the checks' latency
// over every round (h2load --log-file), the rounds in which some check waited over 100 ms,
// and the deciding thread's full collections (count, median and longest pause).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './lib/args.mjs';
import { collectionsByIsolate } from './lib/gc-trace.mjs';
import { checkRequestFrame, loadProtos } from './lib/grpc-frame.mjs';
import { ensureH2load, percentile, readLatencyLog, runH2load } from './lib/h2load.mjs';
import { cpuSeconds, killAllNow, stopChild } from './lib/procs.mjs';
import { startVerdict } from './lib/servers.mjs';
import { BENCH_REQUEST } from './peers/verdict-cases.mjs';
import { syntheticRequests, syntheticSet } from './lib/synthetic.mjs';
import { stringify } from 'yaml';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { baseline, rounds, rules } = benchArgs('bench/full-gc.mjs', { numbers: { rounds: 30, rules: null } });
process.on('SIGINT', () => {
  killAllNow();
  process.exit(130);
});

const ROUND_CHECKS = 20_000;
const WARM_UP_CHECKS = 10_000;
const STALL_MS = 100;

ensureH2load();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-full-gc-'));
const bodyFile = path.join(tmp, 'check.bin');
let policies = path.join(ROOT, 'policies');
let request = BENCH_REQUEST;
if (rules !== null) {
  const FILES = 20;
  const set = syntheticSet(rules);
  policies = path.join(tmp, 'policies');
  fs.mkdirSync(policies);
  const per = Math.ceil(set.rules.length / FILES);
  for (let f = 0; f < FILES; f++) fs.writeFileSync(path.join(policies, `rules-${f}.yaml`), stringify({ kind: 'rules', rules: set.rules.slice(f * per, (f + 1) * per) }));
  fs.writeFileSync(path.join(policies, 'roles.yaml'), stringify({ kind: 'roles', roles: set.roles }));
  [request] = syntheticRequests(set.tenants, 1);
}
fs.writeFileSync(bodyFile, checkRequestFrame(loadProtos(path.join(ROOT, 'proto')), request));

/** The deciding thread's full-collection pauses: the isolate that allocated most (the log's writer thread is another). */
function fullPauses(output) {
  const allocated = (list) => list.reduce((sum, f) => sum + Number(f.allocated ?? 0), 0);
  const deciding = [...collectionsByIsolate(output).values()].sort((a, b) => allocated(b) - allocated(a))[0] ?? [];
  return deciding.filter((f) => f.gc === 'mc').map((f) => Number(f.pause));
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
};

const systems = [
  { label: 'verdict (30% growth)', root: ROOT, nodeArgs: [] },
  { label: "verdict under V8's own limit", root: ROOT, nodeArgs: ['--heap-growing-percent=0'] },
  ...(baseline ? [{ label: `baseline (${path.basename(baseline)})`, root: baseline, nodeArgs: [] }] : []),
];
console.log(`verdict full collections: ${os.cpus()[0]?.model.trim() ?? 'cpu'}, ${os.cpus().length} cores, node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log(`policies: ${rules === null ? 'the shipped policies/' : `${rules.toLocaleString('en-US')} synthetic rules in 20 files`}`);
console.log(`each server: ${WARM_UP_CHECKS.toLocaleString('en-US')} checks to warm up, then ${rounds} rounds of ${ROUND_CHECKS.toLocaleString('en-US')} at 128 in flight (h2load -c 4 -m 32), round-robin over the servers\n`);
try {
  for (const s of systems) {
    s.server = await startVerdict({ mode: 'durable', policies, dbFile: path.join(tmp, `${systems.indexOf(s)}.db`), root: s.root, nodeArgs: ['--trace-gc-nvp', ...s.nodeArgs] });
    s.url = `http://127.0.0.1:${s.server.grpcPort}/verdict.v1.Authorization/Check`;
    Object.assign(s, { rates: [], latencies: [], stalls: 0, cpu: 0, checks: 0 });
  }
  for (const s of systems) await runH2load({ url: s.url, bodyFile, clients: 4, streams: 32, requests: WARM_UP_CHECKS });
  for (let round = 1; round <= rounds; round++) {
    const line = [];
    for (const s of round % 2 ? systems : [...systems].reverse()) {
      const logFile = path.join(tmp, `latency-${systems.indexOf(s)}-${round}.log`);
      const cpu0 = cpuSeconds(s.server.child.pid);
      const run = await runH2load({ url: s.url, bodyFile, clients: 4, streams: 32, requests: ROUND_CHECKS, logFile });
      s.cpu += cpuSeconds(s.server.child.pid) - cpu0;
      s.checks += run.succeeded;
      s.rates.push(run.reqPerSec);
      let worst = 0;
      for (const latency of readLatencyLog(logFile).latencies) {
        s.latencies.push(latency);
        if (latency > worst) worst = latency;
      }
      fs.rmSync(logFile);
      if (worst / 1000 > STALL_MS) s.stalls += 1;
      line.push(`${s.label} ${Math.round(run.reqPerSec).toLocaleString('en-US')}/s, worst ${(worst / 1000).toFixed(0)} ms`);
    }
    console.error(`  round ${round}: ${line.join('; ')}`);
  }
} finally {
  for (const s of systems) if (s.server) await stopChild(s.server.child);
}

const fmt = (microseconds) => (microseconds / 1000).toFixed(microseconds < 10_000 ? 2 : 1);
console.log(`| server | requests/s (median round) | CPU s per 10k checks | p50 ms | p99 ms | p99.9 ms | worst ms | rounds with a check over ${STALL_MS} ms | full collections | median / longest full pause ms |`);
console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
for (const s of systems) {
  s.latencies.sort((a, b) => a - b);
  const pauses = fullPauses(s.server.child.output);
  console.log(
    `| ${s.label} | ${Math.round(median(s.rates)).toLocaleString('en-US')} | ${((s.cpu / s.checks) * 1e4).toFixed(3)} | ${fmt(percentile(s.latencies, 50))} | ${fmt(percentile(s.latencies, 99))} | ${fmt(percentile(s.latencies, 99.9))} | ${fmt(s.latencies.at(-1))} | ${s.stalls} of ${rounds} | ${pauses.length} | ${pauses.length === 0 ? '—' : `${median(pauses).toFixed(1)} / ${Math.max(...pauses).toFixed(1)}`} |`,
  );
}
fs.rmSync(tmp, { recursive: true, force: true });
