// This build against another, one durable server each, in paired rounds: the way to see a
// change of a few percent in the CPU a check costs, which the spread between runs (and
// between the rounds of bench/compare.mjs, where a dozen systems take turns) hides.
//
//   node bench/paired.mjs --baseline DIR              16 paired rounds, durable log
//   node bench/paired.mjs --baseline DIR --rounds 30  more rounds
//   node bench/paired.mjs --baseline DIR --async      both servers with the async log
//
// Both servers run at once on the shipped policies, each with a fresh SQLite decision log,
// and take turns: each round drives one and then the other with h2load (-c 4 -m 32 -t 1,
// 20,000 checks of one predict decision each, 128 in flight), the order flipping every
// round, so a burst of other work on the machine falls on both alike. A round's CPU is the
// server process's utime + stime over it (all its threads: the writer's included). Printed:
// each round's CPU ms per 10,000 checks and requests/s, and the median of the per-round
// ratios (this build over the baseline). Everything binds 127.0.0.1.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './lib/args.mjs';
import { encodeMessage, grpcFrame, loadProtos, toStruct, verifyAllow } from './lib/grpc-frame.mjs';
import { ensureH2load, h2loadVersion, runH2load } from './lib/h2load.mjs';
import { cpuSeconds, stopChild } from './lib/procs.mjs';
import { startVerdict } from './lib/servers.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CHECK = '/verdict.v1.Authorization/Check';
const CHECKS_PER_ROUND = 20_000;
const WARM_UP_CHECKS = 30_000;
const args = benchArgs('bench/paired.mjs', { numbers: { rounds: 16 }, switches: ['async'] });
if (args.baseline === null) {
  console.error('bench/paired.mjs: --baseline DIR is required (a checkout of verdict with dist/ built)');
  process.exit(2);
}
const mode = args.async ? 'async' : 'durable';
const log = (line = '') => process.stdout.write(`${line}\n`);

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

async function main() {
  ensureH2load(log);
  const protos = loadProtos(path.join(ROOT, 'proto'));
  const body = grpcFrame(encodeMessage(protos.CheckRequest, {
    principal: { id: 'dana', roles: ['data_scientist'], attributes: toStruct({ org: 'acme', employment: 'employee' }) },
    action: 'predict',
    resource: { type: 'model', id: 'fraud-v3', attributes: toStruct({ org: 'acme', env: 'production', owner: 'dana' }) },
  }));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-paired-'));
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const bodyFile = path.join(tmp, 'check-request.bin');
  fs.writeFileSync(bodyFile, body);

  log(`machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, node ${process.version}, ${h2loadVersion()}; load average before: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const sides = [];
  for (const [name, root] of [['baseline', args.baseline], ['this build', ROOT]]) {
    const server = await startVerdict({ mode, dbFile: path.join(tmp, `${sides.length}.db`), root });
    const url = `http://127.0.0.1:${server.grpcPort}${CHECK}`;
    await verifyAllow(protos, '127.0.0.1', server.grpcPort, CHECK, body);
    sides.push({ name, root, server, url, cpu: [], rps: [] });
  }
  try {
    for (const side of sides) await runH2load({ url: side.url, bodyFile, clients: 4, streams: 32, requests: WARM_UP_CHECKS });
    log(`${args.rounds} paired rounds of ${CHECKS_PER_ROUND.toLocaleString('en-US')} checks, ${mode} log, after ${WARM_UP_CHECKS.toLocaleString('en-US')} to warm each up`);
    for (let round = 0; round < args.rounds; round++) {
      for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
        const before = cpuSeconds(side.server.child.pid);
        const run = await runH2load({ url: side.url, bodyFile, clients: 4, streams: 32, requests: CHECKS_PER_ROUND });
        if (run.succeeded < CHECKS_PER_ROUND) throw new Error(`${side.name}: ${CHECKS_PER_ROUND - run.succeeded} checks failed in round ${round + 1}`);
        side.cpu.push(((cpuSeconds(side.server.child.pid) - before) * 1000 * 10_000) / CHECKS_PER_ROUND);
        side.rps.push(run.reqPerSec);
      }
    }
  } finally {
    for (const side of sides) await stopChild(side.server.child);
  }
  log();
  log('| server | CPU ms per 10,000 checks, round by round | median | requests/s (median) |');
  log('|---|---|--:|--:|');
  for (const side of sides) log(`| ${side.name} (${side.root}) | ${side.cpu.map((v) => v.toFixed(0)).join(' ')} | ${median(side.cpu).toFixed(0)} | ${median(side.rps).toFixed(0)} |`);
  const [baseline, current] = sides;
  const cpuRatios = current.cpu.map((v, i) => v / baseline.cpu[i]);
  const rpsRatios = current.rps.map((v, i) => v / baseline.rps[i]);
  log();
  log(`this build / baseline, per round: CPU per check ${cpuRatios.map((r) => r.toFixed(2)).join(' ')}`);
  log(`median of the rounds: CPU per check ${median(cpuRatios).toFixed(3)}×, requests/s ${median(rpsRatios).toFixed(3)}×; this build used less CPU per check in ${cpuRatios.filter((r) => r < 1).length} of ${cpuRatios.length} rounds`);
}

main().catch((error) => {
  console.error(`bench/paired.mjs: ${error.message}`);
  process.exit(1);
});
