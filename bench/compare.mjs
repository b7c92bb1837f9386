#!/usr/bin/env node
// verdict side by side with its peers, in one run on one machine:
//   servers (h2load, identical settings for each, all started at once and measured in
//   round-robin rounds so that noise from other work hits each alike): verdict with its durable decision log,
//   verdict with the async log, verdict in shadow mode (a candidate set that disagrees on
//   every check, so each row also records the shadow decision), Cerbos 0.55 with audit on (local backend) and off, Cerbos
//   with 2 actions per check (the shape of the issue's reference figures), verdict's
//   AuthZEN API over HTTP/1.1 (POST /access/v1/evaluation, one decision per request, the
//   same question; Cerbos's own AuthZEN endpoint beside it when the Cerbos binary serves
//   one), and the bare grpc-js server (the transport's ceiling);
//   engines (in process): verdict, cedar-wasm, casbin at 10 / 1,000 / 10,000 rules.
// Prints one markdown table for the servers, one for the engines, the machine, and how the
// figures stand against the goals of issue 6. Never fails on a slow figure; exits 1 only
// when a peer disagrees with verdict or a decision log misses rows.
//
//   node bench/compare.mjs            full run (about 4–6 minutes)
//   node bench/compare.mjs --quick    short run (under two minutes once the peers are installed)
//   make bench-peers [ARGS=--quick]   the same, after building dist/
//   --keep                            keep the temp dir (databases, audit stores, h2load logs)
//   --servers-only / --engines-only   one half
//   --shadow-only                     only verdict durable with and without --shadow-policies (shadow mode's cost)
//   --alerts-only                     only verdict durable with the anomaly detectors on (the default) and off
//                                     (their cost: CPU per check, paired round by round, and requests/s)
//   --authzen-only                    only verdict durable over gRPC Check beside verdict's AuthZEN over HTTP
//                                     (and Cerbos's AuthZEN endpoint, if its binary serves one)
//   --baseline DIR                    also run another build of verdict (a checkout of an older
//                                     commit with dist/ built) beside this one, durable log, as a
//                                     row of the same table: before and after, in one run
//
// Peers are installed on first use into bench/.peers/ (npm --prefix, --no-save).
// Everything binds 127.0.0.1; every child process is killed when the script ends, however it ends.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { checkRequestFrame, loadProtos, verifyAllow } from './lib/grpc-frame.mjs';
import { ensureH2load, h2loadVersion, percentile, readLatencyLog, runH2load } from './lib/h2load.mjs';
import { killAllNow, processTree, spawnTracked, stopChild, treeCpuSeconds as cpuSeconds } from './lib/procs.mjs';
import { startCeiling, startVerdict } from './lib/servers.mjs';
import { ApiKeyStore } from '../dist/authn/api-keys.js';
import { CERBOS_METHOD, cerbosCodec, checkEquivalence, dirBytes, startCerbos, toCerbosRequest, verifyCerbosGrpc } from './peers/cerbos.mjs';
import { printEngineTable, runEngines } from './peers/engines.mjs';
import { ensurePeers } from './peers/install.mjs';
import { BENCH_REQUEST, exampleCases } from './peers/verdict-cases.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const VERDICT_METHOD = '/verdict.v1.Authorization/Check';

const argv = process.argv.slice(2);
const KNOWN = ['--quick', '--keep', '--servers-only', '--engines-only', '--shadow-only', '--alerts-only', '--authzen-only', '--baseline'];
let BASELINE = null;
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i];
  if (arg === '--baseline') {
    BASELINE = argv[++i] ? path.resolve(argv[i]) : null;
    if (BASELINE === null || !fs.existsSync(path.join(BASELINE, 'dist', 'cli', 'main.js'))) {
      console.error('bench/compare.mjs: --baseline DIR needs a checkout of verdict with dist/ built (npm ci && npx tsc)');
      process.exit(2);
    }
    continue;
  }
  if (!KNOWN.includes(arg)) {
    console.error(`bench/compare.mjs: unknown argument ${arg}; use ${KNOWN.join(', ')}`);
    process.exit(2);
  }
}
const QUICK = argv.includes('--quick');
const KEEP = argv.includes('--keep');
const SERVERS = !argv.includes('--engines-only');
const SHADOW_ONLY = argv.includes('--shadow-only');
const AUTHZEN_ONLY = argv.includes('--authzen-only');
const ALERTS_ONLY = argv.includes('--alerts-only');
/** A run of only some server rows: the equivalence check, Cerbos's gRPC rows, the ceiling and the engines are left out. */
const SOME_ONLY = SHADOW_ONLY || AUTHZEN_ONLY || ALERTS_ONLY;
const ENGINES = !argv.includes('--servers-only') && !SOME_ONLY;

// The same load shapes as bench/server.mjs. Throughput: 4 connections × 32 streams = 128
// in flight, one h2load thread. Fixed rate: --rps is per client, so 4 × 500 = 2,000/s.
// Measured in round-robin rounds across the servers: throughput rounds of roundRequests,
// fixed-rate rounds of fixedRoundSeconds (latency percentiles pool every round's requests).
const SETTINGS = QUICK
  ? { rounds: 3, roundRequests: 4_000, warmUpRequests: 2_000, fixedRoundSeconds: 1, fixedWarmUpSeconds: 1 }
  : { rounds: 5, roundRequests: 20_000, warmUpRequests: 10_000, fixedRoundSeconds: 2, fixedWarmUpSeconds: 2 };
const THROUGHPUT = { clients: 4, streams: 32 };
const FIXED = { clients: 4, streams: 32, rps: 500 };

const log = (line = '') => process.stdout.write(`${line}\n`);
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;

async function main() {
  const cpus = os.cpus();
  log(`# verdict vs peers${QUICK ? ' (--quick)' : ''}`);
  log();
  const versions = ensurePeers(log);
  if (SERVERS) ensureH2load(log);
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: build first (`make build`)');
  const machine = [
    `${cpus[0]?.model?.trim() ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `${os.type()} ${os.release()}`,
    `node ${process.version}`,
    SERVERS ? h2loadVersion() : null,
    `cerbos ${versions['@cerbos/cerbos-linux-x64']}`,
    `cedar-wasm ${versions['@cedar-policy/cedar-wasm']}`,
    `casbin ${versions.casbin}`,
  ].filter(Boolean).join('; ');
  log(`machine: ${machine}`);
  log(`load average before: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (other work on this machine skews every figure; compare ratios within one run)`);
  log();

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-compare-'));
  if (!KEEP) process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  let servers = null;
  let engines = null;
  let failed = false;
  try {
    if (SERVERS) {
      servers = await serverRuns(tmp);
      failed ||= servers.problems.length > 0;
    }
    if (ENGINES) {
      log(`== engines (${elapsed()})`);
      engines = await runEngines({ quick: QUICK, log: (l) => log(l) });
      failed ||= engines.sizes.some((s) => s.equivalence.some((e) => e.mismatches.length > 0));
      log();
    }
  } finally {
    if (KEEP) log(`kept ${tmp}`);
  }

  // ------------------------------------------------------------ the report
  log(`## Results (${QUICK ? 'quick' : 'full'} run, ${elapsed()})`);
  log();
  log(`Machine: ${machine}. Load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}.`);
  log();
  if (servers) printServerTable(servers);
  if (engines) {
    log(`### Engines: µs per decision (median of ${engines.sizes[0].rounds} interleaved rounds of ${engines.sizes[0].roundMs} ms after warm-up)`);
    log();
    printEngineTable(engines, log);
    log();
  }
  printGoals(servers, engines);
  if (failed) {
    process.exitCode = 1;
    log('\nPROBLEMS (see above): ' + [...(servers?.problems ?? []), ...(engines ? engineProblems(engines) : [])].join('; '));
  }
}

function engineProblems(engines) {
  return engines.sizes.flatMap((s) => s.equivalence.filter((e) => e.mismatches.length > 0).map((e) => `${e.engine} disagrees with verdict on ${e.mismatches.length} of ${e.sample} requests at ${s.size} rules`));
}

// ---------------------------------------------------------------- servers

/** The shadow set of the shadow-mode row: the shipped policies (without their tests) and a rule that denies every check. */
function shadowCandidate(tmp) {
  const dir = path.join(tmp, 'shadow-policies');
  fs.cpSync(path.join(ROOT, 'policies'), dir, { recursive: true });
  fs.rmSync(path.join(dir, 'tests'), { recursive: true, force: true });
  fs.writeFileSync(path.join(dir, 'shadow-deny-everything.yaml'), 'kind: rules\nrules:\n  - id: shadow-deny-everything\n    effect: deny\n    actions: ["*"]\n');
  return dir;
}

/** The example policies plus a limit on the benchmark request that never refuses, and a redis-server (when installed) for the Redis row. */
function limitedSetup(tmp) {
  const policies = path.join(tmp, 'policies-limited');
  fs.cpSync(path.join(ROOT, 'policies'), policies, { recursive: true });
  fs.writeFileSync(path.join(policies, 'bench-limit.yaml'), 'kind: limits\nlimits:\n  - id: bench-per-principal\n    actions: [predict]\n    rate: 1000000000/second\n');
  const bin = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((b) => fs.existsSync(b));
  if (!bin) return { policies, redis: null };
  const port = 20000 + Math.floor(Math.random() * 20000);
  const dir = fs.mkdtempSync(path.join(tmp, 'redis-'));
  const child = spawnTracked(bin, ['--port', String(port), '--bind', HOST, '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { cwd: dir });
  const redisConfig = path.join(tmp, 'verdict-redis.yaml');
  fs.writeFileSync(redisConfig, `limits:\n  backend: redis\n  redis:\n    url: redis://${HOST}:${port}\n`);
  const ready = new Promise((resolve) => setTimeout(resolve, 500));
  return { policies, redis: { child, ready }, redisConfig };
}

async function serverRuns(tmp) {
  const problems = [];
  const protos = loadProtos(path.join(ROOT, 'proto'));
  const verdictBody = checkRequestFrame(protos, BENCH_REQUEST);
  const codec = await cerbosCodec();
  const bodies = {
    verdict: verdictBody,
    cerbos1: codec.frame(toCerbosRequest(BENCH_REQUEST, ['predict'])),
    cerbos2: codec.frame(toCerbosRequest(BENCH_REQUEST, ['predict', 'read'])),
  };
  const bodyFiles = {};
  for (const [name, body] of Object.entries(bodies)) {
    bodyFiles[name] = path.join(tmp, `${name}.bin`);
    fs.writeFileSync(bodyFiles[name], body);
  }
  log(`request: "may dana (data_scientist, org acme) predict on model fraud-v3 (org acme)?", allowed by every system; framed bodies: verdict ${verdictBody.length} B, Cerbos ${bodies.cerbos1.length} B (1 action) / ${bodies.cerbos2.length} B (2 actions)`);
  log(`h2load, identical for every server: throughput -c ${THROUGHPUT.clients} -m ${THROUGHPUT.streams} -t 1, ${SETTINGS.rounds} rounds of -n ${SETTINGS.roundRequests.toLocaleString('en-US')} after -n ${SETTINGS.warmUpRequests.toLocaleString('en-US')} warm-up; fixed rate -c ${FIXED.clients} -m ${FIXED.streams} --rps ${FIXED.rps} (2,000/s), ${SETTINGS.rounds} rounds of ${SETTINGS.fixedRoundSeconds} s after ${SETTINGS.fixedWarmUpSeconds} s warm-up`);
  log('All servers run at once (idle while another is measured) and the rounds go round-robin over them, so a burst of other work on this machine hits every system alike.');
  log();

  // Once, before timing: Cerbos and verdict agree on the benchmark requests and every example case.
  const cases = await exampleCases();
  const systems = [];
  let redisChild = null;
  try {
    if (!SOME_ONLY) {
    const eqServer = await startCerbos({ tmp, audit: false, slug: 'cerbos-equivalence' });
    let equivalence;
    try {
      equivalence = await checkEquivalence({ httpPort: eqServer.httpPort, cases });
    } finally {
      await stopChild(eqServer.child);
    }
    log(`equivalence (Cerbos HTTP /api/check/resources vs verdict's engine on policies/): ${equivalence.agree}/${equivalence.total} agree — the 2 benchmark requests (predict, read) and ${equivalence.total - 2} cases of policies/tests (${cases.filter((c) => c.verdict === 'ALLOW').length} allow, ${cases.filter((c) => c.verdict === 'DENY').length} deny)`);
    for (const m of equivalence.mismatches) {
      log(`  MISMATCH ${m.name}: verdict ${m.verdict}, Cerbos ${m.cerbos}`);
      problems.push(`Cerbos disagrees with verdict on "${m.name}"`);
    }
    log();
    }

    // ---- start everything, verify each once with the exact body it will be sent
    let responseBytes = null;
    const verdictRuns = [
      { mode: 'durable', workers: 1, label: 'verdict, durable decision log', key: 'verdict-durable' },
      { mode: 'async', workers: 1, label: 'verdict, async decision log', key: 'verdict-async' },
      { mode: 'durable', workers: 2, label: 'verdict --workers 2, durable decision log', key: 'verdict-workers2' },
      // Shadow mode's worst case: the candidate (the shipped set plus a deny-everything rule) disagrees on every check.
      { mode: 'durable', workers: 1, label: 'verdict --shadow-policies (disagrees on every check), durable decision log', key: 'verdict-shadow', extraArgs: ['--shadow-policies', shadowCandidate(tmp)] },
      // The anomaly detectors are on by default (every row above); this row turns them off.
      { mode: 'durable', workers: 1, label: 'verdict, durable decision log, alerts off', key: 'verdict-noalerts', config: 'alerts:\n  enabled: false\n' },
      ...(BASELINE ? [{ mode: 'durable', workers: 1, label: `baseline verdict (${path.basename(BASELINE)}), durable decision log`, key: 'baseline-durable', root: BASELINE }] : []),
    ];
    // A rate limit in the path (it applies to the benchmark request, and never refuses): in memory, and in Redis on loopback.
    const limited = limitedSetup(tmp);
    verdictRuns.push({ mode: 'durable', workers: 1, label: 'verdict, durable log, a limit in memory', key: 'verdict-limit-memory', policies: limited.policies });
    if (limited.redis) {
      redisChild = limited.redis.child;
      await limited.redis.ready;
      verdictRuns.push({ mode: 'durable', workers: 1, label: 'verdict, durable log, a limit in Redis (loopback)', key: 'verdict-limit-redis', policies: limited.policies, extraArgs: ['--config', limited.redisConfig] });
    } else {
      log('redis-server not found: no Redis row (Debian package redis-server)');
    }
    // A focused run keeps the --baseline row, so that any of them is a before/after in one run.
    const focused = SHADOW_ONLY ? ['verdict-durable', 'verdict-shadow'] : AUTHZEN_ONLY ? ['verdict-durable'] : ALERTS_ONLY ? ['verdict-durable', 'verdict-noalerts'] : null;
    const onlyKeys = focused === null ? null : [...focused, 'baseline-durable'];
    for (const { mode, workers, label, key, root, policies, extraArgs, config } of verdictRuns.filter((r) => onlyKeys === null || onlyKeys.includes(r.key))) {
      const dbFile = path.join(tmp, `${key}.db`);
      const configFile = config === undefined ? null : path.join(tmp, `${key}.yaml`);
      if (configFile !== null) fs.writeFileSync(configFile, config);
      const server = await startVerdict({ mode, dbFile, workers, configFile, ...(root ? { verdictBin: path.join(root, 'bin', 'verdict.js'), root } : {}), ...(policies ? { policies } : {}), ...(extraArgs ? { extraArgs } : {}) });
      const system = { label, key, child: server.child, port: server.grpcPort, method: VERDICT_METHOD, bodyFile: bodyFiles.verdict, fixed: true, dbFile };
      systems.push(system);
      const verified = await verifyAllow(protos, HOST, server.grpcPort, VERDICT_METHOD, verdictBody);
      responseBytes ??= verified.bytes;
      log(`${system.label}: verified over gRPC: EFFECT_ALLOW, ${verified.reason}, rules [${verified.response.ruleIds.join(', ')}]`);
    }
    // AuthZEN over HTTP: the same question as one evaluation per POST, to a server whose callers authenticate with an API key.
    if (!SHADOW_ONLY && !ALERTS_ONLY) {
      const authzen = await startVerdictAuthzen(tmp);
      const system = { label: 'verdict AuthZEN, POST /access/v1/evaluation over HTTP/1.1, durable decision log', key: 'verdict-authzen', child: authzen.child, port: authzen.httpPort, method: AUTHZEN_PATH, bodyFile: authzen.bodyFile, http: { h1: true, headers: authzen.headers, throughput: AUTHZEN_THROUGHPUT, fixed: AUTHZEN_FIXED }, fixed: true, dbFile: authzen.dbFile };
      systems.push(system);
      const verified = await verifyAuthzen(authzen.httpPort, authzen.headers, authzen.body);
      log(`${system.label}: verified over HTTP: decision true, ${verified.context?.reason_admin?.en ?? 'no reason'}; ${authzen.body.length}-byte JSON body`);
    }
    const cerbosRuns = SOME_ONLY ? [] : [
      { label: 'Cerbos, audit on (local backend)', key: 'cerbos-audit', audit: true, body: 'cerbos1', actions: ['predict'], fixed: true },
      { label: 'Cerbos, audit off', key: 'cerbos-noaudit', audit: false, body: 'cerbos1', actions: ['predict'], fixed: true },
      { label: 'Cerbos, audit on, 2 actions per check', key: 'cerbos-audit-2', audit: true, body: 'cerbos2', actions: ['predict', 'read'], fixed: false },
    ];
    for (const run of cerbosRuns) {
      const cerbos = await startCerbos({ tmp, audit: run.audit, slug: run.key });
      systems.push({ label: run.label, key: run.key, child: cerbos.child, port: cerbos.grpcPort, method: CERBOS_METHOD, bodyFile: bodyFiles[run.body], fixed: run.fixed, auditDir: run.audit ? cerbos.auditDir : null });
      const verified = await verifyCerbosGrpc({ codec, grpcPort: cerbos.grpcPort, body: bodies[run.body], actions: run.actions });
      log(`${run.label}: verified over gRPC: ${Object.entries(verified.effects).map(([a, e]) => `${a} ${e}`).join(', ')}`);
    }
    // Cerbos's own AuthZEN endpoint, when the Cerbos binary of the benchmark serves one (asked, not assumed).
    if (!SHADOW_ONLY && !ALERTS_ONLY) {
      const cerbos = await startCerbos({ tmp, audit: true, slug: 'cerbos-authzen' });
      const probe = await probeCerbosAuthzen(cerbos.httpPort);
      if (probe.ok) {
        systems.push({ label: 'Cerbos AuthZEN, POST /access/v1/evaluation over HTTP/1.1, audit on', key: 'cerbos-authzen', child: cerbos.child, port: cerbos.httpPort, method: AUTHZEN_PATH, bodyFile: probe.bodyFile(tmp), http: { h1: true, headers: AUTHZEN_HEADERS, throughput: AUTHZEN_THROUGHPUT, fixed: AUTHZEN_FIXED }, fixed: true, auditDir: cerbos.auditDir });
        log(`Cerbos AuthZEN: verified over HTTP: decision true`);
      } else {
        await stopChild(cerbos.child);
        log(`Cerbos AuthZEN: no row — ${probe.reason}`);
      }
    }
    if (!SOME_ONLY) {
      const server = await startCeiling(responseBytes);
      systems.push({ label: 'bare grpc-js (fixed response)', key: 'ceiling', child: server.child, port: server.grpcPort, method: VERDICT_METHOD, bodyFile: bodyFiles.verdict, fixed: true });
      await verifyAllow(protos, HOST, server.grpcPort, VERDICT_METHOD, verdictBody);
      log(`bare grpc-js: verified: answers verdict's own ${responseBytes.length}-byte CheckResponse, pre-encoded`);
    }
    log();

    // ---- throughput: warm-up each, then round-robin rounds
    for (const s of systems) {
      s.url = `http://${HOST}:${s.port}${s.method}`;
      s.load = s.http ? { h1: s.http.h1, headers: s.http.headers } : {};
      s.tpShape = { ...THROUGHPUT, ...(s.http?.throughput ?? {}) };
      s.fxShape = { ...FIXED, ...(s.http?.fixed ?? {}) };
      s.succeeded = 1; // the verification call
      s.tp = { rates: [], cpu: 0, ok: 0, total: 0, rss: 0, latencies: [], cpuPerCheck: [] };
      s.fx = { rates: [], cpu: 0, ok: 0, total: 0, latencies: [] };
    }
    log(`== throughput, 128 in flight (${elapsed()})`);
    for (const s of systems) s.succeeded += (await runH2load({ url: s.url, bodyFile: s.bodyFile, ...s.load, ...s.tpShape, requests: SETTINGS.warmUpRequests })).succeeded;
    for (let round = 1; round <= SETTINGS.rounds; round++) {
      const line = [];
      // Every other round in reverse order, so no system always follows the same one.
      for (const s of round % 2 === 0 ? [...systems].reverse() : systems) {
        const logFile = path.join(tmp, `${s.key}-tp-${round}.log`);
        const cpu0 = cpuSeconds(s.child.pid);
        const { run, rssMiB } = await loadWithRss({ url: s.url, bodyFile: s.bodyFile, ...s.load, logFile, ...s.tpShape, requests: SETTINGS.roundRequests }, s.child.pid);
        const cpu = cpuSeconds(s.child.pid) - cpu0;
        s.tp.cpu += cpu;
        s.tp.cpuPerCheck.push(cpu / Math.max(1, run.succeeded));
        s.tp.ok += run.succeeded;
        s.tp.total += run.total;
        s.tp.rss = Math.max(s.tp.rss, rssMiB);
        s.tp.rates.push(run.reqPerSec);
        s.tp.latencies.push(...readLatencyLog(logFile).latencies);
        s.succeeded += run.succeeded;
        line.push(`${s.key} ${Math.round(run.reqPerSec).toLocaleString('en-US')}`);
      }
      log(`  round ${round}: ${line.join(', ')} req/s`);
    }

    // ---- fixed rate: warm-up each, then round-robin rounds
    const fixedSystems = systems.filter((s) => s.fixed);
    log(`== fixed 2,000/s (${elapsed()})`);
    for (const s of fixedSystems) s.succeeded += (await runH2load({ url: s.url, bodyFile: s.bodyFile, ...s.load, ...s.fxShape, requests: FIXED.clients * FIXED.rps * SETTINGS.fixedWarmUpSeconds })).succeeded;
    for (let round = 1; round <= SETTINGS.rounds; round++) {
      const line = [];
      for (const s of round % 2 === 0 ? [...fixedSystems].reverse() : fixedSystems) {
        const logFile = path.join(tmp, `${s.key}-fx-${round}.log`);
        const cpu0 = cpuSeconds(s.child.pid);
        const run = await runH2load({ url: s.url, bodyFile: s.bodyFile, ...s.load, logFile, ...s.fxShape, requests: FIXED.clients * FIXED.rps * SETTINGS.fixedRoundSeconds });
        s.fx.cpu += cpuSeconds(s.child.pid) - cpu0;
        s.fx.ok += run.succeeded;
        s.fx.total += run.total;
        s.fx.rates.push(run.reqPerSec);
        const { latencies } = readLatencyLog(logFile);
        s.fx.latencies.push(...latencies);
        s.succeeded += run.succeeded;
        latencies.sort((x, y) => x - y);
        line.push(`${s.key} ${fmt(ms(percentile(latencies, 99)))}`);
      }
      log(`  round ${round}: p99 ms ${line.join(', ')}`);
    }
  } finally {
    // Graceful stops (verdict flushes its log), every process, even after a failure.
    for (const s of systems) {
      const exit = await stopChild(s.child);
      s.exit = exit;
      if (exit.code !== 0 && exit.signal !== 'SIGTERM') log(`  ${s.label} exited ${exit.code ?? exit.signal}: ${s.child.output.slice(-1500)}`);
    }
    if (redisChild) await stopChild(redisChild);
  }

  // ---- figures and the log checks
  const rows = [];
  for (const s of systems) {
    s.tp.latencies.sort((x, y) => x - y);
    s.fx.latencies.sort((x, y) => x - y);
    const row = {
      label: s.label,
      key: s.key,
      reqPerSec: median(s.tp.rates),
      rateRange: [Math.min(...s.tp.rates), Math.max(...s.tp.rates)],
      tpP50: ms(percentile(s.tp.latencies, 50)),
      tpP99: ms(percentile(s.tp.latencies, 99)),
      cpuPer10k: (s.tp.cpu / Math.max(1, s.tp.ok)) * 10_000,
      cpuPerCheckRounds: s.tp.cpuPerCheck,
      rssMiB: s.tp.rss,
      failed: s.tp.total - s.tp.ok + (s.fx.total - s.fx.ok),
    };
    if (s.fixed) {
      Object.assign(row, {
        fixedRate: median(s.fx.rates),
        p50: ms(percentile(s.fx.latencies, 50)),
        p99: ms(percentile(s.fx.latencies, 99)),
        p999: ms(percentile(s.fx.latencies, 99.9)),
        max: ms(s.fx.latencies.at(-1)),
        cpuPer10kFixed: (s.fx.cpu / Math.max(1, s.fx.ok)) * 10_000,
        latencySamples: s.fx.latencies.length,
      });
    }
    if (row.failed > 0) problems.push(`${s.label}: ${row.failed} requests did not succeed`);
    if (s.dbFile) {
      try {
        const db = new Database(s.dbFile, { readonly: true, fileMustExist: true });
        const count = db.prepare('SELECT count(*) AS n FROM decisions').get().n;
        // The shadow row must really have compared: every decision carries the candidate's disagreement.
        const shadowRows = s.key === 'verdict-shadow' ? db.prepare(`SELECT count(*) AS n FROM decisions WHERE json_extract(details, '$.shadow.effect') = 'DENY'`).get().n : null;
        db.close();
        if (shadowRows !== null && shadowRows !== count) problems.push(`${s.label}: ${shadowRows} of ${count} rows carry the shadow decision`);
        row.logCheck = `decision log ${count.toLocaleString('en-US')} rows for ${s.succeeded.toLocaleString('en-US')} decisions${count === s.succeeded ? ' (complete)' : ' — MISMATCH'}`;
        if (count !== s.succeeded) problems.push(`${s.label}: ${count} log rows, expected ${s.succeeded}`);
      } catch (error) {
        row.logCheck = `decision log: could not count rows: ${error.message}`;
      }
    }
    if (s.auditDir) row.logCheck = `audit store ${(dirBytes(s.auditDir) / 2 ** 20).toFixed(1)} MiB after ${s.succeeded.toLocaleString('en-US')} checks`;
    rows.push(row);
  }
  log();
  return { rows, problems };
}

// ---------------------------------------------------------------- AuthZEN

const AUTHZEN_PATH = '/access/v1/evaluation';
const AUTHZEN_HEADERS = ['content-type: application/json'];
// HTTP/1.1 answers one request at a time per connection (pipelined requests wait their
// turn), so the same 128 in flight are 128 connections of one request each, and 2,000/s
// is 40 connections of 50/s: what a PEP's connection pool does.
const AUTHZEN_THROUGHPUT = { clients: 128, streams: 1 };
const AUTHZEN_FIXED = { clients: 40, streams: 1, rps: 50 };

/** The benchmark question as an AuthZEN evaluation (verdict's mapping: roles in subject.properties.roles). */
function authzenBody() {
  const { principal, action, resource } = BENCH_REQUEST;
  return Buffer.from(
    JSON.stringify({
      subject: { type: 'user', id: principal.id, properties: { roles: principal.roles, ...principal.attributes } },
      action: { name: action },
      resource: { type: resource.type, id: resource.id, properties: resource.attributes },
    }),
  );
}

/** verdict serving AuthZEN, durable log, its callers authenticating with an API key made for the run. */
async function startVerdictAuthzen(tmp) {
  const keysDb = path.join(tmp, 'authzen-keys.db');
  const store = ApiKeyStore.open(keysDb);
  let key;
  try {
    ({ key } = store.create({ owner: 'bench-pep', name: 'compare.mjs AuthZEN row' }));
  } finally {
    store.close();
  }
  const configFile = path.join(tmp, 'verdict-authzen.yaml');
  fs.writeFileSync(configFile, `authn:\n  apiKeys: { db: ${JSON.stringify(keysDb)} }\nauthzen:\n  peps: [api-key:bench-pep]\n`);
  const dbFile = path.join(tmp, 'verdict-authzen.db');
  const server = await startVerdict({ mode: 'durable', dbFile, configFile });
  const body = authzenBody();
  const bodyFile = path.join(tmp, 'authzen.json');
  fs.writeFileSync(bodyFile, body);
  return { child: server.child, httpPort: server.httpPort, dbFile, body, bodyFile, headers: [...AUTHZEN_HEADERS, `authorization: Bearer ${key}`] };
}

async function verifyAuthzen(port, headers, body) {
  const response = await fetch(`http://${HOST}:${port}${AUTHZEN_PATH}`, { method: 'POST', headers: Object.fromEntries(headers.map((h) => h.split(/:\s*/, 2))), body });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`verdict AuthZEN answered ${response.status}: ${text.slice(0, 300)}`);
  const answer = JSON.parse(text);
  if (answer.decision !== true) throw new Error(`verdict AuthZEN answered ${text.slice(0, 300)}, expected decision true`);
  return answer;
}

/** Whether Cerbos serves AuthZEN: its metadata document, then the benchmark question answered true. */
async function probeCerbosAuthzen(httpPort) {
  const base = `http://${HOST}:${httpPort}`;
  try {
    const meta = await fetch(`${base}/.well-known/authzen-configuration`);
    if (meta.status !== 200) return { ok: false, reason: `this Cerbos answers ${meta.status} at /.well-known/authzen-configuration (no AuthZEN endpoint in this version)` };
    const body = authzenBody();
    const answer = await fetch(`${base}${AUTHZEN_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const text = await answer.text();
    if (answer.status !== 200) return { ok: false, reason: `its ${AUTHZEN_PATH} answered ${answer.status}: ${text.slice(0, 200)}` };
    if (JSON.parse(text).decision !== true) return { ok: false, reason: `its ${AUTHZEN_PATH} answered ${text.slice(0, 200)} to the benchmark question (allowed over gRPC)` };
    return {
      ok: true,
      bodyFile: (tmp) => {
        const file = path.join(tmp, 'cerbos-authzen.json');
        fs.writeFileSync(file, body);
        return file;
      },
    };
  } catch (error) {
    return { ok: false, reason: `asking its AuthZEN endpoint failed: ${error.message}` };
  }
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};


function statusKiB(pid, field) {
  try {
    const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** Runs h2load while sampling the server's VmRSS every 100 ms; returns the run and the largest sample. */
async function loadWithRss(options, pid) {
  let maxRss = 0;
  // The whole process tree: a cluster's primary and its workers.
  const sample = () => (maxRss = Math.max(maxRss, processTree(pid).reduce((sum, p) => sum + (statusKiB(p, 'VmRSS') ?? 0), 0)));
  const timer = setInterval(sample, 100);
  try {
    const run = await runH2load(options);
    sample();
    return { run, rssMiB: maxRss / 1024 };
  } finally {
    clearInterval(timer);
  }
}

const ms = (micros) => micros / 1000;

// ---------------------------------------------------------------- report

function fmt(value) {
  if (value === undefined || !Number.isFinite(value)) return '—';
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

function printServerTable({ rows }) {
  const cerbos = rows.find((r) => r.key === 'cerbos-audit');
  const ceiling = rows.find((r) => r.key === 'ceiling');
  const target = FIXED.clients * FIXED.rps;
  log(`### Servers: requests/s at 128 in flight (median round); latency at a fixed 2,000 requests/s (h2load --log-file, all rounds pooled); server CPU from /proc`);
  log();
  log('| system | requests/s | p50 ms | p99 ms | p99.9 ms | CPU s per 10,000 checks | CPU s per 10k at 2,000/s | RSS under load | × Cerbos (audit on) | × bare grpc-js |');
  log('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  let shortfall = false;
  for (const r of rows) {
    const vsCerbos = cerbos === undefined ? '—' : r === cerbos ? '1.00' : `${(r.reqPerSec / cerbos.reqPerSec).toFixed(2)}`;
    const vsCeiling = ceiling === undefined ? '—' : r === ceiling ? '1.00' : `${(r.reqPerSec / ceiling.reqPerSec).toFixed(2)}`;
    const short = r.fixedRate !== undefined && r.fixedRate < 0.95 * target;
    shortfall ||= short;
    const mark = short ? ` (at ${Math.round(r.fixedRate).toLocaleString('en-US')}/s)†` : '';
    log(`| ${r.label} | ${Math.round(r.reqPerSec).toLocaleString('en-US')} | ${fmt(r.p50)}${mark} | ${fmt(r.p99)} | ${fmt(r.p999)} | ${r.cpuPer10k.toFixed(2)} | ${r.cpuPer10kFixed === undefined ? '—' : r.cpuPer10kFixed.toFixed(2)} | ${r.rssMiB.toFixed(0)} MiB | ${vsCerbos} | ${vsCeiling} |`);
  }
  log();
  if (shortfall) log('- † the server could not keep up 2,000/s on this machine during the run: its latency is that of an overloaded server, at the rate shown.');
  log('- One request everywhere: may dana (data_scientist, org acme) predict on model fraud-v3 of org acme; allowed. Cerbos rows check 1 action per request, like verdict\'s Check, except the "2 actions" row (predict + read in one CheckResources: the shape of the issue\'s reference figures), which runs the throughput shape only.');
  log('- Ratios are of requests/s at 128 in flight. CPU is the server process\'s user + system time over the measured h2load runs, all threads (Cerbos\'s Go runtime uses both cores; node\'s main thread one, plus libuv/SQLite threads); h2load runs on the same 2 cores.');
  if (rows.some((r) => r.key === 'verdict-authzen')) log('- AuthZEN rows: h2load --h1; HTTP/1.1 answers one request at a time per connection, so the same 128 in flight are -c 128 -m 1, and 2,000/s is -c 40 -m 1 --rps 50; the body is the same question as JSON (subject.properties.roles, properties → attributes), with the API key in `Authorization: Bearer`.');
  log('- RSS is the largest VmRSS sampled every 100 ms during the throughput rounds. Cerbos\'s audit (local backend: Badger, batched in the background) is not written synchronously per decision; verdict\'s durable log commits every decision before it answers, the async log batches.');
  for (const r of rows) {
    const extra = r.logCheck ? `; ${r.logCheck}` : '';
    log(`- ${r.label}: rounds ${Math.round(r.rateRange[0]).toLocaleString('en-US')}–${Math.round(r.rateRange[1]).toLocaleString('en-US')} req/s; p50 ${fmt(r.tpP50)} / p99 ${fmt(r.tpP99)} ms at 128 in flight${r.latencySamples ? `; ${r.latencySamples.toLocaleString('en-US')} fixed-rate samples, max ${fmt(r.max)} ms` : ''}${extra}`);
  }
  log();
}

function printGoals(servers, engines) {
  log('### Against the goals of issue 6');
  log();
  const verdict = (ok) => (ok ? 'met' : 'MISSED');
  if (servers) {
    const by = (k) => servers.rows.find((r) => r.key === k);
    const durable = by('verdict-durable');
    const cerbos = by('cerbos-audit');
    const ceiling = by('ceiling');
    const workers = by('verdict-workers2');
    const authzen = by('verdict-authzen');
    if (authzen) {
      const cerbosAuthzen = by('cerbos-authzen');
      log(
        `- AuthZEN over HTTP/1.1 (one evaluation per POST, API key checked, durable log) against gRPC Check (durable): ${(authzen.reqPerSec / durable.reqPerSec).toFixed(2)}× the requests/s (${Math.round(authzen.reqPerSec).toLocaleString('en-US')} vs ${Math.round(durable.reqPerSec).toLocaleString('en-US')}), ${(authzen.cpuPer10k / durable.cpuPer10k).toFixed(2)}× the CPU per decision` +
          (cerbosAuthzen ? `; Cerbos's AuthZEN endpoint: ${Math.round(cerbosAuthzen.reqPerSec).toLocaleString('en-US')} req/s (verdict ${(authzen.reqPerSec / cerbosAuthzen.reqPerSec).toFixed(2)}× it)` : '; Cerbos: no AuthZEN row (see the log above)'),
      );
    }
    if (AUTHZEN_ONLY) return;
    if (ALERTS_ONLY) {
      printAlertsCost(durable, by('verdict-noalerts'), verdict);
      return;
    }
    const shadow = by('verdict-shadow');
    const shadowCost = 1 - shadow.reqPerSec / durable.reqPerSec;
    const shadowLine = `- Shadow mode (a candidate that disagrees on every check, so every row also carries details.shadow) against the same server without it, both durable: ${(100 * shadowCost).toFixed(1)}% fewer requests/s (${Math.round(shadow.reqPerSec).toLocaleString('en-US')} vs ${Math.round(durable.reqPerSec).toLocaleString('en-US')}), ${(shadow.cpuPer10k / durable.cpuPer10k).toFixed(2)}× the CPU per check — goal under 10%: ${verdict(shadowCost < 0.1)}`;
    log(shadowLine);
    if (SHADOW_ONLY) return;
    for (const r of [durable, workers]) {
      const x = r.reqPerSec / cerbos.reqPerSec;
      log(`- Throughput, ${r.label}, ≥ 2× Cerbos with audit on: ${x.toFixed(2)}× (${Math.round(r.reqPerSec).toLocaleString('en-US')} vs ${Math.round(cerbos.reqPerSec).toLocaleString('en-US')} req/s) — ${verdict(x >= 2)}${x < 2 ? `; needs ${Math.round(2 * cerbos.reqPerSec).toLocaleString('en-US')} req/s, ${(2 / x).toFixed(2)}× this figure` : ''}`);
      const c = r.reqPerSec / ceiling.reqPerSec;
      log(`- Throughput, ${r.label}, ≥ 80% of the bare grpc-js ceiling: ${(100 * c).toFixed(0)}% (${Math.round(ceiling.reqPerSec).toLocaleString('en-US')} req/s ceiling) — ${verdict(c >= 0.8)}${c < 0.8 ? `; needs ${Math.round(0.8 * ceiling.reqPerSec).toLocaleString('en-US')} req/s` : ''}`);
    }
    log(`- --workers 2 against one process, both durable: ${(workers.reqPerSec / durable.reqPerSec).toFixed(2)}× the requests/s, ${(workers.cpuPer10k / durable.cpuPer10k).toFixed(2)}× the CPU per check; h2load's 4 connections are spread over the 2 workers, and h2load itself shares the 2 cores`);
    const two = by('cerbos-audit-2');
    log(`- For scale, the issue's figures from a quiet machine: Cerbos audit on, 2 actions per check, 6,100–6,700 req/s, bare grpc-js about 20,000; this run: ${Math.round(two.reqPerSec).toLocaleString('en-US')} and ${Math.round(ceiling.reqPerSec).toLocaleString('en-US')} req/s (load average ${os.loadavg()[1].toFixed(1)} on ${os.cpus().length} cores over the last 5 minutes)`);
    const p99ok = durable.p99 <= cerbos.p99;
    const p999ok = durable.p999 <= cerbos.p999;
    const target = FIXED.clients * FIXED.rps;
    const held = (r) => (r.fixedRate >= 0.95 * target ? '' : ` (held only ${Math.round(r.fixedRate).toLocaleString('en-US')}/s)`);
    log(`- Latency at 2,000/s, p99 and p99.9 ≤ Cerbos's (audit on): verdict durable p99 ${fmt(durable.p99)} / p99.9 ${fmt(durable.p999)} ms${held(durable)} vs Cerbos ${fmt(cerbos.p99)} / ${fmt(cerbos.p999)} ms${held(cerbos)} — p99 ${verdict(p99ok)}, p99.9 ${verdict(p999ok)}; the issue's reference for Cerbos on a quiet machine: p50 0.81, p99 2.2, p99.9 4.5 ms`);
    const noAlerts = by('verdict-noalerts');
    if (noAlerts) printAlertsCost(durable, noAlerts, verdict);
    log(`- Memory under load: verdict durable ${durable.rssMiB.toFixed(0)} MiB, --workers 2 ${workers.rssMiB.toFixed(0)} MiB (primary and workers), async ${by('verdict-async').rssMiB.toFixed(0)} MiB; Cerbos audit on ${cerbos.rssMiB.toFixed(0)} MiB, off ${by('cerbos-noaudit').rssMiB.toFixed(0)} MiB (reported, no goal)`);
  }
  if (engines) {
    const cells = engines.sizes.map((s) => {
      const v = s.figures.verdict.us;
      const c = s.figures['cedar-wasm'].us;
      const k = s.figures.casbin.us;
      return `${s.size.toLocaleString('en-US')} rules: verdict ${fmt(v)} µs vs cedar-wasm ${fmt(c)} µs (${verdict(v <= c)}), casbin ${fmt(k)} µs`;
    });
    log(`- Engine µs/decision ≤ cedar-wasm's (preparsed) and far below casbin's: ${cells.join('; ')}`);
    const mem = engines.memory.find((m) => m.engine === 'verdict');
    if (mem) log(`- verdict's engine with 10,000 rules: RSS ${mem.rssMiB.toFixed(0)} MiB in a fresh process (+${mem.setMiB.toFixed(0)} MiB for the set; V8 heap in use ${mem.heapUsedMiB.toFixed(0)} MiB after GC)`);
  }
}

/**
 * The anomaly detectors' cost, on (the default) against off (issue 14's goal: under 5% apart):
 * server CPU per check, over every throughput round and as the median of the rounds' ratios (each
 * round measures both back to back, so a burst of other work hits both), and requests/s.
 */
function printAlertsCost(on, off, verdict) {
  const pct = (x) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`;
  const cpu = on.cpuPer10k / off.cpuPer10k - 1;
  const paired = median(on.cpuPerCheckRounds.map((c, i) => c / off.cpuPerCheckRounds[i])) - 1;
  const rate = (off.reqPerSec - on.reqPerSec) / off.reqPerSec;
  log(
    `- Anomaly detectors on (default) vs off, durable, one process (goal of issue 14: under 5% apart): server CPU ${on.cpuPer10k.toFixed(3)} vs ${off.cpuPer10k.toFixed(3)} s per 10,000 checks, ${pct(cpu)}` +
      ` (median of the ${on.cpuPerCheckRounds.length} rounds' ratios ${pct(paired)}) — ${verdict(Math.abs(cpu) < 0.05)};` +
      ` requests/s ${Math.round(on.reqPerSec).toLocaleString('en-US')} vs ${Math.round(off.reqPerSec).toLocaleString('en-US')}, ${(100 * rate).toFixed(1)}% fewer with them on — ${verdict(Math.abs(rate) < 0.05)}`,
  );
}

main().catch((error) => {
  console.error(`\nbench/compare.mjs failed: ${error?.stack ?? error}`);
  killAllNow();
  process.exit(1);
});
