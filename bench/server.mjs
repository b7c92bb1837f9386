#!/usr/bin/env node
// Server benchmark: drives verdict's gRPC Check with h2load and prints one table.
//
//   node bench/server.mjs            full run (a few minutes)
//   node bench/server.mjs --quick    short run (well under two minutes)
//   node bench/server.mjs --cpu-prof one durable throughput run under `node --cpu-prof`,
//                                    then the top 10 functions by self time
//   --keep                           keep the temp dir (databases, h2load logs, profiles)
//
// Runs, each verdict run against a fresh SQLite decision log:
//   verdict, durable log, 128 in flight (h2load -c 4 -m 32 -t 1 -n N)
//   verdict, async log,   128 in flight
//   verdict, durable log, fixed 2,000 req/s (-c 4 -m 32 --rps 500 -n 2000×S: S seconds)
//   bare grpc-js answering a fixed pre-encoded CheckResponse, same two h2load settings
// Latency percentiles come from h2load --log-file, requests/s from its summary,
// CPU seconds from /proc/PID/stat of the server process. After each verdict run the
// decision log's row count is checked against the requests that succeeded.
// Everything binds 127.0.0.1; every server is killed when the script ends.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { topSelfTime } from './lib/cpuprofile.mjs';
import { encodeMessage, grpcFrame, loadProtos, toStruct, verifyAllow } from './lib/grpc-frame.mjs';
import { ensureH2load, h2loadVersion, percentile, readLatencyLog, runH2load } from './lib/h2load.mjs';
import { cpuSeconds, killAllNow, stopChild } from './lib/procs.mjs';
import { startCeiling, startVerdict } from './lib/servers.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const METHOD = '/verdict.v1.Authorization/Check';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const PROFILE = argv.includes('--cpu-prof');
const KEEP = argv.includes('--keep');
for (const arg of argv) {
  if (!['--quick', '--cpu-prof', '--keep'].includes(arg)) {
    console.error(`bench/server.mjs: unknown argument ${arg}; use --quick, --cpu-prof or --keep`);
    process.exit(2);
  }
}

// Load shapes. Throughput: 4 connections × 32 streams = 128 in flight, one h2load thread.
// Fixed rate: h2load's --rps is per client, so 4 × 500 = 2,000 requests a second.
const SETTINGS = QUICK
  ? { requests: 20_000, warmUpRequests: 3_000, fixedSeconds: 4, fixedWarmUpSeconds: 1 }
  : { requests: 100_000, warmUpRequests: 10_000, fixedSeconds: 10, fixedWarmUpSeconds: 2 };
const THROUGHPUT = { clients: 4, streams: 32 };
const FIXED = { clients: 4, streams: 32, rps: 500 };

// The benchmark's request: the README's example, allowed by ds-read-predict-own-org.
const SAMPLE_REQUEST = {
  principal: { id: 'dana', roles: ['data_scientist'], attributes: toStruct({ org: 'acme', employment: 'employee' }) },
  action: 'predict',
  resource: { type: 'model', id: 'fraud-v3', attributes: toStruct({ org: 'acme', env: 'production', owner: 'dana' }) },
};

const log = (line = '') => process.stdout.write(`${line}\n`);

async function main() {
  const verdictBin = path.join(ROOT, 'bin', 'verdict.js');
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js')))
    throw new Error('dist/ is missing: build first (`make build` or `npx tsc -p tsconfig.json`)');
  ensureH2load(log);

  const protos = loadProtos(path.join(ROOT, 'proto'));
  const body = grpcFrame(encodeMessage(protos.CheckRequest, SAMPLE_REQUEST));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-bench-'));
  const bodyFile = path.join(tmp, 'check-request.bin');
  fs.writeFileSync(bodyFile, body);
  // Also on an interrupt or a failure (process.exit skips the finally below).
  if (!KEEP) process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, node ${process.version}, ${h2loadVersion()}, ${os.type()} ${os.release()}`;
  log(`machine: ${machine}`);
  log(`load average before the runs: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (other work on this machine skews every figure)`);
  log(`request: ${body.length} bytes framed (${body.length - 5} bytes of CheckRequest); ${QUICK ? 'quick' : 'full'} mode`);
  log();

  try {
    if (PROFILE) {
      await profileRun({ protos, bodyFile, body, tmp, verdictBin });
      return;
    }
    const results = [];
    results.push(await verdictRun({ label: 'verdict, durable log, 128 in flight', mode: 'durable', shape: 'throughput', protos, body, bodyFile, tmp, verdictBin }));
    const responseBytes = results[0].responseBytes;
    results.push(await verdictRun({ label: 'verdict, async log, 128 in flight', mode: 'async', shape: 'throughput', protos, body, bodyFile, tmp, verdictBin }));
    results.push(await verdictRun({ label: 'verdict, durable log, fixed 2,000/s', mode: 'durable', shape: 'fixed', protos, body, bodyFile, tmp, verdictBin }));
    results.push(await ceilingRun({ label: 'bare grpc-js, 128 in flight', shape: 'throughput', protos, body, bodyFile, tmp, responseBytes }));
    results.push(await ceilingRun({ label: 'bare grpc-js, fixed 2,000/s', shape: 'fixed', protos, body, bodyFile, tmp, responseBytes }));

    printTable(results, machine);
    const bad = results.filter((r) => r.logCheck && !r.logCheck.ok);
    if (bad.length > 0) {
      process.exitCode = 1;
      log(`\nDECISION LOG MISMATCH in: ${bad.map((r) => r.label).join('; ')}`);
    }
  } finally {
    if (KEEP) log(`\nkept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- servers


// ---------------------------------------------------------------- runs

function h2loadOptions(shape, grpcPort, bodyFile, logFile, phase) {
  const url = `http://${HOST}:${grpcPort}${METHOD}`;
  if (shape === 'throughput') {
    const requests = phase === 'warm-up' ? SETTINGS.warmUpRequests : SETTINGS.requests;
    return { url, bodyFile, logFile, ...THROUGHPUT, requests };
  }
  // Fixed rate: a request count at the rate (4 × 500/s) rather than h2load -D, so the
  // run lasts the same time but every request that reaches the server is counted in
  // h2load's summary (with -D, requests still in flight when the clock stops reach the
  // server and the decision log but not the summary, and the row-count check fails).
  // Warm-up is a separate, shorter run at the same rate.
  const seconds = phase === 'warm-up' ? SETTINGS.fixedWarmUpSeconds : SETTINGS.fixedSeconds;
  return { url, bodyFile, logFile, ...FIXED, requests: FIXED.clients * FIXED.rps * seconds };
}

/** Warm-up, then the measured h2load run with CPU seconds of `pid` around it. */
async function drive({ label, shape, grpcPort, bodyFile, tmp, pid, slug }) {
  const warm = await runH2load(h2loadOptions(shape, grpcPort, bodyFile, undefined, 'warm-up'));
  const logFile = path.join(tmp, `${slug}.h2load.log`);
  const cpuBefore = cpuSeconds(pid);
  const run = await runH2load(h2loadOptions(shape, grpcPort, bodyFile, logFile, 'measure'));
  const cpu = cpuSeconds(pid) - cpuBefore;
  const peakRssMiB = peakRss(pid);
  const { latencies, other } = readLatencyLog(logFile);
  const result = {
    label,
    shape,
    reqPerSec: run.reqPerSec,
    p50: percentile(latencies, 50) / 1000,
    p99: percentile(latencies, 99) / 1000,
    p999: percentile(latencies, 99.9) / 1000,
    cpuPer10k: (cpu / Math.max(1, run.succeeded)) * 10_000,
    cpu,
    run,
    warm,
    peakRssMiB,
  };
  log(`  h2load ${run.args.join(' ')}`);
  log(`  warm-up: ${warm.succeeded} succeeded; measured: ${run.succeeded}/${run.total} succeeded, ${run.failed} failed, ${run.errored} errored, ${run.timeout} timeout, ${run.statusNon2xx} non-2xx; ${run.reqPerSec.toFixed(0)} req/s over ${run.seconds.toFixed(2)} s`);
  log(`  latency (log file, ${latencies.length} 2xx rows${other ? `, ${other} other` : ''}): p50 ${fmt(result.p50)} ms, p99 ${fmt(result.p99)} ms, p99.9 ${fmt(result.p999)} ms, max ${fmt(latencies.at(-1) / 1000)} ms`);
  log(`  server CPU: ${cpu.toFixed(2)} s for ${run.succeeded} checks = ${result.cpuPer10k.toFixed(3)} s per 10k; peak RSS ${peakRssMiB?.toFixed(0) ?? '?'} MiB`);
  return result;
}

function peakRss(pid) {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

let runCounter = 0;

async function verdictRun({ label, mode, shape, protos, body, bodyFile, tmp, verdictBin }) {
  log(`== ${label}`);
  const slug = `run${++runCounter}-verdict-${mode}-${shape}`;
  const dbFile = path.join(tmp, `${slug}.db`);
  const server = await startVerdict({ mode, dbFile, verdictBin });
  let result;
  let verified;
  try {
    // Once, before timing: this exact body gets grpc-status 0 and EFFECT_ALLOW.
    verified = await verifyAllow(protos, HOST, server.grpcPort, METHOD, body);
    log(`  verified: grpc-status 0, EFFECT_ALLOW, ${verified.reason}, rules [${verified.response.ruleIds.join(', ')}] (${verified.bytes.length}-byte response)`);
    result = await drive({ label, shape, grpcPort: server.grpcPort, bodyFile, tmp, pid: server.child.pid, slug });
  } finally {
    const exit = await stopChild(server.child);
    if (exit.code !== 0) log(`  verdict exited ${exit.code ?? exit.signal}${server.child.output ? `:\n${server.child.output}` : ''}`);
  }
  // After a graceful stop every async row is flushed; count what the log holds.
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  let rows;
  let byEffect;
  try {
    rows = db.prepare('SELECT count(*) AS n FROM decisions').get().n;
    byEffect = db.prepare('SELECT effect, count(*) AS n FROM decisions GROUP BY effect ORDER BY effect').all();
  } finally {
    db.close();
  }
  const expected = 1 + result.warm.succeeded + result.run.succeeded;
  result.logCheck = { rows, expected, ok: rows === expected };
  log(`  decision log: ${rows} rows (${byEffect.map((e) => `${e.effect} ${e.n}`).join(', ')}); h2load succeeded ${result.run.succeeded} measured + ${result.warm.succeeded} warm-up + 1 verification = ${expected} → ${rows === expected ? 'OK' : 'MISMATCH'}`);
  log();
  return { ...result, responseBytes: verified.bytes };
}

async function ceilingRun({ label, shape, protos, body, bodyFile, tmp, responseBytes }) {
  log(`== ${label}`);
  const slug = `run${++runCounter}-grpcjs-${shape}`;
  const server = await startCeiling(responseBytes);
  try {
    await verifyAllow(protos, HOST, server.grpcPort, METHOD, body);
    log(`  verified: grpc-status 0, EFFECT_ALLOW (answers verdict's own ${responseBytes.length}-byte response, pre-encoded)`);
    const result = await drive({ label, shape, grpcPort: server.grpcPort, bodyFile, tmp, pid: server.child.pid, slug });
    log();
    return result;
  } finally {
    await stopChild(server.child);
  }
}

async function profileRun({ protos, body, bodyFile, tmp, verdictBin }) {
  const label = 'verdict, durable log, 128 in flight, under node --cpu-prof';
  log(`== ${label}`);
  const profDir = path.join(tmp, 'cpu-prof');
  fs.mkdirSync(profDir);
  const dbFile = path.join(tmp, 'profile.db');
  const server = await startVerdict({ mode: 'durable', dbFile, verdictBin, nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profDir] });
  try {
    await verifyAllow(protos, HOST, server.grpcPort, METHOD, body);
    await drive({ label, shape: 'throughput', grpcPort: server.grpcPort, bodyFile, tmp, pid: server.child.pid, slug: 'profile' });
  } finally {
    await stopChild(server.child);
  }
  const files = fs.readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error('node --cpu-prof wrote no profile (did verdict exit cleanly?)');
  const main = files.map((f) => path.join(profDir, f)).sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0];
  const { busyMs, idleMs, functions, files: byFile } = topSelfTime(main, 10, ROOT);
  log(`\nProfile ${path.basename(main)}: ${(busyMs / 1000).toFixed(1)} s busy, ${(idleMs / 1000).toFixed(1)} s idle, over the whole process life (start-up, warm-up and the measured run). Shares are of busy time; native work is charged to its JS caller.`);
  log('\nTop 10 functions by self time:\n');
  log('| # | self ms | share | function  location |');
  log('|--:|--:|--:|---|');
  functions.forEach((r, i) => log(`| ${i + 1} | ${r.ms.toFixed(0)} | ${(r.share * 100).toFixed(1)}% | \`${r.name}\` |`));
  log('\nTop 10 source files by self time:\n');
  log('| # | self ms | share | file |');
  log('|--:|--:|--:|---|');
  byFile.forEach((r, i) => log(`| ${i + 1} | ${r.ms.toFixed(0)} | ${(r.share * 100).toFixed(1)}% | \`${r.name}\` |`));
  if (KEEP) log(`\nprofile: ${main} (open in Chrome DevTools › Performance)`);
}

// ---------------------------------------------------------------- table

function fmt(ms) {
  if (!Number.isFinite(ms)) return '—';
  return ms < 10 ? ms.toFixed(2) : ms.toFixed(1);
}

function printTable(results, machine) {
  const ceiling = Object.fromEntries(results.filter((r) => r.label.startsWith('bare grpc-js')).map((r) => [r.shape, r]));
  log(`Server benchmark (${QUICK ? 'quick' : 'full'}): h2load -c 4 -m 32 -t 1, ${SETTINGS.requests.toLocaleString('en-US')} requests for throughput (after ${SETTINGS.warmUpRequests.toLocaleString('en-US')} warm-up); fixed rate -c 4 -m 32 --rps 500 -n ${(FIXED.clients * FIXED.rps * SETTINGS.fixedSeconds).toLocaleString('en-US')} (${SETTINGS.fixedSeconds} s at 2,000/s, after ${SETTINGS.fixedWarmUpSeconds} s warm-up). One request: predict on a model, allowed.`);
  log();
  log('| system / mode | requests/s | p50 ms | p99 ms | p99.9 ms | CPU s per 10k checks | vs bare grpc-js |');
  log('|---|--:|--:|--:|--:|--:|--:|');
  for (const r of results) {
    const base = ceiling[r.shape];
    let ratio = '—';
    if (base && base !== r) {
      ratio = r.shape === 'throughput' ? `${(r.reqPerSec / base.reqPerSec).toFixed(2)}× req/s` : `${(r.p99 / base.p99).toFixed(2)}× p99`;
    } else if (base === r) {
      ratio = '1.00 (ceiling)';
    }
    log(`| ${r.label} | ${Math.round(r.reqPerSec).toLocaleString('en-US')} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.p999)} | ${r.cpuPer10k.toFixed(2)} | ${ratio} |`);
  }
  log();
  log(`Machine: ${machine}; load average after the runs ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}.`);
  log('Throughput rows compare requests/s with the bare grpc-js server at 128 in flight; fixed-rate rows compare p99 with it at the same rate.');
}

main().catch((error) => {
  console.error(`\nbench/server.mjs failed: ${error?.stack ?? error}`);
  killAllNow();
  process.exit(1);
});
