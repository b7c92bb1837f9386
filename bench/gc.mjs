#!/usr/bin/env node
// What each check leaves to the garbage collector on the thread that decides.
//
//   node bench/gc.mjs                   verdict with the durable log, then the async log
//   node bench/gc.mjs --baseline DIR    the same for another build of verdict (a checkout
//                                       with dist/ built), alternating with this one
//   --rounds N                          runs of each (2)
//
// Each run starts `node --trace-gc-nvp bin/verdict.js serve` on the shipped policies,
// sends one predict check per request at a fixed 2,000/s (h2load -c 4 -m 32 --rps 500),
// 3 s to warm up, then 6 s measured, and sums over the deciding thread's young-generation
// collections of the measured 6 s: bytes allocated and promoted (survived into the old
// generation) per check, and the mean and longest pause. Promoted bytes per check are the number to watch: each
// promoted byte is copied twice by the collections that pause checks, and fills the old
// generation whose collections pause them longer.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './lib/args.mjs';
import { checkRequestFrame, loadProtos } from './lib/grpc-frame.mjs';
import { collectionsByIsolate } from './lib/gc-trace.mjs';
import { ensureH2load, runH2load } from './lib/h2load.mjs';
import { killAllNow, stopChild } from './lib/procs.mjs';
import { startVerdict } from './lib/servers.mjs';
import { BENCH_REQUEST } from './peers/verdict-cases.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { baseline, rounds } = benchArgs('bench/gc.mjs', { numbers: { rounds: 2 } });
process.on('SIGINT', () => {
  killAllNow();
  process.exit(130);
});

const WARM_UP_SECONDS = 3;
const SECONDS = 6;
const RATE = 2000;

ensureH2load();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-gc-'));
const protos = loadProtos(path.join(ROOT, 'proto'));
const body = checkRequestFrame(protos, BENCH_REQUEST);
const bodyFile = path.join(tmp, 'check.bin');
fs.writeFileSync(bodyFile, body);

/**
 * The deciding thread's young-generation collections since `before` (each isolate's
 * count then). Worker threads (the decision log's writer, the console's audit thread)
 * print under their own addresses, and the writer can collect more often than the
 * deciding thread; the deciding thread is the one that allocated most meanwhile
 * (each check allocates tens of kilobytes there).
 */
function decidingThreadSince(output, before) {
  const allocatedIn = (list) => list.reduce((sum, f) => sum + Number(f.allocated ?? 0), 0);
  const since = [...collectionsByIsolate(output)].map(([isolate, list]) => list.slice(before.get(isolate) ?? 0).filter((f) => f.gc === 's'));
  return since.sort((a, b) => allocatedIn(b) - allocatedIn(a))[0] ?? [];
}

const settle = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function run(label, root, mode) {
  const server = await startVerdict({ mode, dbFile: path.join(tmp, `${label.replace(/\W+/g, '-')}-${mode}-${Date.now()}.db`), root, nodeArgs: ['--trace-gc-nvp'] });
  const url = `http://127.0.0.1:${server.grpcPort}/verdict.v1.Authorization/Check`;
  const load = { url, bodyFile, clients: 4, streams: 32, rps: RATE / 4 };
  await runH2load({ ...load, duration: WARM_UP_SECONDS });
  await settle(300);
  const before = new Map([...collectionsByIsolate(server.child.output)].map(([isolate, list]) => [isolate, list.length]));
  const result = await runH2load({ ...load, duration: SECONDS });
  await settle(300);
  const rows = decidingThreadSince(server.child.output, before);
  await stopChild(server.child);
  const checks = result.succeeded;
  if (checks === 0) throw new Error(`bench/gc.mjs: no check succeeded against ${label} (${mode}); h2load said:\n${result.output}`);
  const sum = (key) => rows.reduce((total, f) => total + Number(f[key] ?? 0), 0);
  const pauses = rows.map((f) => Number(f.pause));
  return {
    label,
    mode,
    scavenges: rows.length,
    allocated: sum('allocated') / checks,
    promoted: sum('promoted') / checks,
    meanPause: pauses.length ? pauses.reduce((a, b) => a + b, 0) / pauses.length : NaN,
    maxPause: pauses.length ? Math.max(...pauses) : NaN,
  };
}

const builds = [{ label: 'this build', root: ROOT }, ...(baseline ? [{ label: `baseline (${path.basename(baseline)})`, root: baseline }] : [])];
console.log(`verdict GC per check: ${os.cpus()[0]?.model.trim() ?? 'cpu'}, ${os.cpus().length} cores, node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log(`each run: ${RATE}/s (h2load -c 4 -m 32 --rps ${RATE / 4}), ${WARM_UP_SECONDS} s to warm up, then the young-generation collections of the deciding thread over ${SECONDS} s\n`);
const results = [];
for (let round = 1; round <= rounds; round++) {
  for (const mode of ['durable', 'async']) {
    for (const build of builds) {
      const r = await run(build.label, build.root, mode);
      results.push(r);
      console.error(`  round ${round}: ${build.label}, ${mode}: promoted ${r.promoted.toFixed(0)} B/check, mean pause ${r.meanPause.toFixed(2)} ms`);
    }
  }
}
console.log('| build | log | run | scavenges | allocated B/check | promoted B/check | mean pause ms | longest pause ms |');
console.log('|---|---|--:|--:|--:|--:|--:|--:|');
const runOf = new Map();
for (const r of results) {
  const key = `${r.label}/${r.mode}`;
  runOf.set(key, (runOf.get(key) ?? 0) + 1);
  console.log(`| ${r.label} | ${r.mode} | ${runOf.get(key)} | ${r.scavenges} | ${r.allocated.toFixed(0)} | ${r.promoted.toFixed(0)} | ${r.meanPause.toFixed(2)} | ${r.maxPause.toFixed(2)} |`);
}
fs.rmSync(tmp, { recursive: true, force: true });
