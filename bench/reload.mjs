#!/usr/bin/env node
// Reload benchmark: how long a check waits while the policies are reloaded. A real
// `verdict serve` holds a 10,000-rule set (bench/lib/synthetic.mjs, written as 20 rules
// files and a roles file); a prober (bench/lib/h2load-prober.mjs, h2load in a process of
// its own) sends 200 checks/s over one HTTP/2 connection, as a gateway would, on a fixed
// schedule (a check is sent every 5 ms whether or not the last one was answered, so a
// stall shows in every check it holds up). In one run: the
// latency at rest, during reloads of one changed file (a rule id changed, picked up by
// the watcher), and during reloads of every file changed at once; and, since the worst of
// n checks grows with n, the worst check of each window as long as a one-file reload's,
// at rest and during those reloads. The decision log is in
// async mode, so that the disk's fsync times do not hide what a reload costs (with the
// durable default, every figure also carries the fsync of the check's group commit).
//
//   node bench/reload.mjs              full run (about a minute and a half)
//   node bench/reload.mjs --quick      fewer reloads
//   node bench/reload.mjs --workers 2  the same against --workers 2
//   node bench/reload.mjs --server-node-flags '--v8-pool-size=1'   the server under those node flags
//   node bench/reload.mjs --server-log FILE   keep the server's output (its reload lines, --trace-gc lines) in FILE
//
// Needs the build (dist/): `make bench` builds first. Never fails on a slow figure: the
// goals (one file: at most 10 ms added to the worst check; every file: at most 50 ms)
// are printed beside the figures.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { checkRequestFrame, loadProtos, verifyAllow } from './lib/grpc-frame.mjs';
import { freePort, spawnTracked, stopChild, waitForHttp200 } from './lib/procs.mjs';
import { startH2loadProber } from './lib/h2load-prober.mjs';
import { ensureH2load } from './lib/h2load.mjs';
import { syntheticRequests, syntheticSet } from './lib/synthetic.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const QUICK = process.argv.includes('--quick');
const WORKERS = Number(process.argv[process.argv.indexOf('--workers') + 1]) || 1;
/** Node flags for the server's process, e.g. --server-node-flags '--v8-pool-size=1' (README, Policy reloads). */
const SERVER_NODE_FLAGS = process.argv.includes('--server-node-flags') ? String(process.argv[process.argv.indexOf('--server-node-flags') + 1] ?? '').split(' ').filter(Boolean) : [];
/** Where the server's output goes at the end (--server-log FILE), to read each reload's line beside its collections. */
const SERVER_LOG = process.argv.includes('--server-log') ? String(process.argv[process.argv.indexOf('--server-log') + 1]) : null;
const RULES = 10_000;
const FILES = 20;
const INTERVAL_MS = 5;
const REST_SECONDS = QUICK ? 5 : 15;
const ONE_FILE_RELOADS = QUICK ? 3 : 8;
const ALL_FILE_RELOADS = QUICK ? 2 : 4;
/** After a reload is logged, the prober keeps counting a moment longer: a check sent during the reload may still be in flight. */
const SETTLE_MS = 500;
const CHECK_PATH = '/verdict.v1.Authorization/Check';

const protos = loadProtos(path.join(ROOT, 'proto'));

function writeSet(dir) {
  const { rules, roles, tenants } = syntheticSet(RULES);
  const per = Math.ceil(rules.length / FILES);
  const texts = [];
  for (let f = 0; f < FILES; f++) {
    texts.push(stringify({ kind: 'rules', rules: rules.slice(f * per, (f + 1) * per) }));
    writeFileSync(fileOf(dir, f), texts[f]);
  }
  writeFileSync(path.join(dir, 'roles.yaml'), stringify({ kind: 'roles', roles }));
  return { texts, tenants, firstIds: Array.from({ length: FILES }, (_, f) => rules[f * per].id) };
}

const fileOf = (dir, f) => path.join(dir, `rules-${String(f).padStart(2, '0')}.yaml`);

async function startServer(dir, db) {
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const args = [path.join(ROOT, 'bin', 'verdict.js'), 'serve', '--policies', dir, '--db', db, '--grpc', `${HOST}:${grpcPort}`, '--http', `${HOST}:${httpPort}`, '--decision-log', 'async'];
  if (WORKERS > 1) args.push('--workers', String(WORKERS));
  const child = spawnTracked(process.execPath, [...SERVER_NODE_FLAGS, ...args], { cwd: ROOT });
  // A cold start of 10,000 rules takes seconds; on a machine shared with other work, many more.
  await waitForHttp200(child, `http://${HOST}:${httpPort}/readyz`, 'verdict serve', 180_000);
  return { child, grpcPort, httpPort };
}

/** The 'policies reloaded' lines logged so far (one per process that reloaded). */
const reloadLines = (child) =>
  child.output
    .split('\n')
    .filter((line) => line.includes('"msg":"policies reloaded"'))
    .map((line) => JSON.parse(line));

async function waitForReloads(child, count, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (reloadLines(child).filter((l) => l.changed).length < count) {
    if (Date.now() > deadline) throw new Error(`no reload within ${timeoutMs} ms; output:\n${child.output.slice(-2000)}`);
    if (child.exitCode !== null) throw new Error(`verdict exited:\n${child.output.slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** verdict_decisions_total summed over its labels (for the whole cluster under --workers). */
async function decisionsAnswered(httpPort) {
  const text = await fetch(`http://${HOST}:${httpPort}/metrics`).then((r) => r.text());
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith('verdict_decisions_total{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const within = (samples, from, to) => samples.filter((s) => s.sent >= from && s.sent <= to).map((s) => s.ms).sort((a, b) => a - b);

async function main() {
  ensureH2load();
  // The policies and the decision log (with the keys the server creates beside it) in one directory, removed at the end.
  const work = mkdtempSync(path.join(os.tmpdir(), 'verdict-bench-reload-'));
  const dir = path.join(work, 'policies');
  const db = path.join(work, 'decisions.db');
  mkdirSync(dir);
  try {
    const { texts, tenants, firstIds } = writeSet(dir);
    const [request] = syntheticRequests(tenants, 1);
    const body = checkRequestFrame(protos, request);
    const started = performance.now();
    const server = await startServer(dir, db);
    const coldSeconds = (performance.now() - started) / 1000;
    // Any answer will do for the timing; the first check must succeed, whatever its effect.
    await verifyAllow(protos, HOST, server.grpcPort, CHECK_PATH, body).catch((error) => {
      if (!/effect/.test(String(error.message))) throw error;
    });
    const bodyFile = path.join(work, 'check.bin');
    writeFileSync(bodyFile, body);
    const decisionsBefore = await decisionsAnswered(server.httpPort);
    const prober = await startH2loadProber({ url: `http://${HOST}:${server.grpcPort}${CHECK_PATH}`, bodyFile, intervalMs: INTERVAL_MS, logFile: path.join(work, 'probes.log') });
    // Windows are absolute times, as the prober's samples are (h2load logs each check's start in µs since the epoch).
    const clock = () => performance.timeOrigin + performance.now();
    const windows = { rest: [], one: [], all: [] };
    let generation = 0;
    let reloadsSeen = 0;
    const current = [...texts];
    const reloadWith = async (kind, files) => {
      generation++;
      const from = clock();
      for (const f of files) {
        current[f] = current[f].replace(`id: ${firstIds[f]}`, `id: ${firstIds[f]}-g${generation}`);
        firstIds[f] = `${firstIds[f]}-g${generation}`;
        writeFileSync(fileOf(dir, f), current[f]);
      }
      reloadsSeen += WORKERS;
      await waitForReloads(server.child, reloadsSeen);
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      windows[kind].push([from, clock()]);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    };

    await new Promise((resolve) => setTimeout(resolve, 2000)); // warm-up, not counted
    const restFrom = clock();
    await new Promise((resolve) => setTimeout(resolve, REST_SECONDS * 1000));
    windows.rest.push([restFrom, clock()]);
    for (let i = 0; i < ONE_FILE_RELOADS; i++) await reloadWith('one', [i % FILES]);
    for (let i = 0; i < ALL_FILE_RELOADS; i++) await reloadWith('all', Array.from({ length: FILES }, (_, f) => f));
    // The last window ended a second ago: every check sent in it has been answered.
    const probed = await prober.stop();
    // h2load sees HTTP statuses; a gRPC error is a 200 too. Every answered check must be a decision.
    const decisions = (await decisionsAnswered(server.httpPort)) - decisionsBefore;
    const notDecisions = Math.max(0, probed.samples.length - decisions);
    const lines = reloadLines(server.child).filter((l) => l.changed);
    const status = await fetch(`http://${HOST}:${server.httpPort}/readyz`).then((r) => r.json());
    await stopChild(server.child);
    if (SERVER_LOG !== null) writeFileSync(SERVER_LOG, server.child.output);

    const rest = windows.rest.flatMap(([a, b]) => within(probed.samples, a, b)).sort((a, b) => a - b);
    const restP50 = quantile(rest, 0.5);
    const row = (label, kind, goal) => {
      const perReload = windows[kind].map(([a, b]) => within(probed.samples, a, b));
      const all = perReload.flat().sort((a, b) => a - b);
      const worst = all[all.length - 1];
      const reloadSeconds = kind === 'rest' ? [] : lines.slice(kind === 'one' ? 0 : ONE_FILE_RELOADS * WORKERS, kind === 'one' ? ONE_FILE_RELOADS * WORKERS : undefined).map((l) => l.seconds);
      const blocks = kind === 'rest' ? [] : lines.slice(kind === 'one' ? 0 : ONE_FILE_RELOADS * WORKERS, kind === 'one' ? ONE_FILE_RELOADS * WORKERS : undefined).map((l) => l.longestBlockMs);
      return {
        label,
        reloads: kind === 'rest' ? '-' : String(perReload.length),
        checks: all.length,
        p50: quantile(all, 0.5).toFixed(2),
        p99: quantile(all, 0.99).toFixed(2),
        worst: worst.toFixed(2),
        added: kind === 'rest' ? '-' : (worst - restP50).toFixed(1),
        overRestWorst: kind === 'rest' ? '-' : (worst - rest[rest.length - 1]).toFixed(1),
        reload: reloadSeconds.length ? `${Math.min(...reloadSeconds).toFixed(2)}-${Math.max(...reloadSeconds).toFixed(2)}` : '-',
        block: blocks.length ? Math.max(...blocks).toFixed(1) : '-',
        goal,
      };
    };
    const rows = [row('at rest', 'rest', '-'), row('one file changed', 'one', 'added <= 10 ms'), row(`all ${FILES} files changed`, 'all', 'added <= 50 ms')];
    const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
    console.log(`\nverdict reload benchmark: ${RULES.toLocaleString('en')} rules in ${FILES} files + roles, ${WORKERS > 1 ? `--workers ${WORKERS}, ` : ''}${SERVER_NODE_FLAGS.length > 0 ? `server run with node ${SERVER_NODE_FLAGS.join(' ')}, ` : ''}one check every ${INTERVAL_MS} ms over one HTTP/2 connection`);
    console.log(`cold start ${coldSeconds.toFixed(1)} s; ${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), node ${process.version}, load average ${load}; failed checks: ${probed.failures}, answered without a decision: ${notDecisions}`);
    console.log('\n| during | reloads | checks | p50 ms | p99 ms | worst ms | worst − rest p50, ms | worst − rest worst, ms | reload s | longest block ms (server) | goal |');
    console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|');
    for (const r of rows) console.log(`| ${r.label} | ${r.reloads} | ${r.checks} | ${r.p50} | ${r.p99} | ${r.worst} | ${r.added} | ${r.overRestWorst} | ${r.reload} | ${r.block} | ${r.goal} |`);
    // The worst of n checks grows with n, and the rest period holds more checks than all
    // the reload windows together: cut it into windows as long as a reload's (the median
    // one-file window) and compare the worst check of each window, like with like.
    const worstPerWindow = (ranges) => ranges.map(([a, b]) => within(probed.samples, a, b).at(-1)).filter((w) => w !== undefined).sort((a, b) => a - b);
    const oneFileLengths = windows.one.map(([a, b]) => b - a).sort((a, b) => a - b);
    const windowMs = quantile(oneFileLengths, 0.5);
    const [restStart, restEnd] = windows.rest[0];
    const restRanges = [];
    for (let from = restStart; from + windowMs <= restEnd; from += windowMs) restRanges.push([from, from + windowMs]);
    const restWorsts = worstPerWindow(restRanges);
    const spread = (worsts) => `median ${quantile(worsts, 0.5).toFixed(2)}, max ${worsts.at(-1).toFixed(2)} ms`;
    console.log(`\nworst check per window of ${(windowMs / 1000).toFixed(2)} s (a one-file reload's median window): at rest, ${restWorsts.length} windows: ${spread(restWorsts)}; one file changed, ${windows.one.length} windows: ${spread(worstPerWindow(windows.one))}`);
    console.log(`one file changed, worst check of each reload window, ms: ${worstPerWindow(windows.one).map((w) => w.toFixed(1)).join(', ')}`);
    const blocksOf = (from, to) => lines.slice(from, to).map((l) => l.longestBlockMs.toFixed(1)).join(', ');
    console.log(`\nlongest block (server) of each reload, ms: one file: ${blocksOf(0, ONE_FILE_RELOADS * WORKERS)}; all files: ${blocksOf(ONE_FILE_RELOADS * WORKERS)}`);
    // Whether a long block was the reload's own slice (and in which stage), a collection between slices, or neither.
    const slicesOf = (from, to) => lines.slice(from, to).map((l) => `${(l.longestSliceMs ?? NaN).toFixed(1)} in ${l.longestSliceStage ?? '?'} / ${(l.longestCollectionMs ?? NaN).toFixed(1)}`).join(', ');
    console.log(`longest slice (stage) / longest paced collection of each reload, ms: one file: ${slicesOf(0, ONE_FILE_RELOADS * WORKERS)}; all files: ${slicesOf(ONE_FILE_RELOADS * WORKERS)}`);
    console.log(`last reload error: ${status.lastReloadError ?? 'none'}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
