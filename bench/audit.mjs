#!/usr/bin/env node
// Audit trail benchmark: what the tamper-evident log costs, and how fast it verifies.
//
//   node bench/audit.mjs            full run: 1,000,000-row verify, 100,000-request server runs
//   node bench/audit.mjs --quick    200,000-row verify, 20,000-request server runs
//   node bench/audit.mjs --smoke    a few thousand rows and requests: checks that the script works, measures nothing
//   --keep                          keep the temp dir (databases, h2load logs)
//
// 1. Verify speed: a log of N rows (written through verdict's own writer, with a
//    signed checkpoint every 10,000 rows) verified by `verdict audit verify`, the
//    real CLI, with its default worker threads and with one thread; rows/s is
//    rows / wall time of the whole command. Also a JSONL export of 100,000 rows.
// 2. The writer alone, in-process: verdict's writer (chain and signing) versus
//    the same rows inserted plainly: CPU µs per decision.
// 3. Server throughput, the product as shipped versus the same server recording
//    through a baseline sink written in this benchmark (bench/lib/baseline-sink.mjs:
//    the same rows, writer thread and durable group commit, no chain, no
//    checkpoints; verdict itself has no way to turn the chain off): both started
//    by bench/lib/audit-server.mjs; h2load -c 4 -m 32 -t 1 (128 in flight), warm-up first, runs
//    interleaved on/off/on/off… so drift on a noisy machine hits both alike; the
//    table shows the median of each, and the cost as 1 - on/off, both for
//    requests/s and for server CPU seconds per check (the steadier of the two
//    when other processes share the machine).
// Everything binds 127.0.0.1; every server is killed when the script ends.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { encodeMessage, grpcFrame, loadProtos, toStruct, verifyAllow } from './lib/grpc-frame.mjs';
import { ensureH2load, h2loadVersion, percentile, readLatencyLog, runH2load } from './lib/h2load.mjs';
import { cpuSeconds, freePort, killAllNow, spawnTracked, stopChild, waitForHttp200 } from './lib/procs.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const METHOD = '/verdict.v1.Authorization/Check';
const BIN = path.join(ROOT, 'bin', 'verdict.js');

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const SMOKE = argv.includes('--smoke');
const KEEP = argv.includes('--keep');
for (const arg of argv) {
  if (!['--quick', '--smoke', '--keep'].includes(arg)) {
    console.error(`bench/audit.mjs: unknown argument ${arg}; use --quick, --smoke or --keep`);
    process.exit(2);
  }
}
const SETTINGS = SMOKE
  ? { verifyRows: 5_000, exportRows: 1_000, requests: 1_000, warmUp: 200, rounds: 1, writerRows: 320 }
  : QUICK
    ? { verifyRows: 200_000, exportRows: 50_000, requests: 15_000, warmUp: 3_000, rounds: 2, writerRows: 20_000 }
    : { verifyRows: 1_000_000, exportRows: 100_000, requests: 50_000, warmUp: 5_000, rounds: 4, writerRows: 20_000 };

const SAMPLE_REQUEST = {
  principal: { id: 'dana', roles: ['data_scientist'], attributes: toStruct({ org: 'acme', employment: 'employee' }) },
  action: 'predict',
  resource: { type: 'model', id: 'fraud-v3', attributes: toStruct({ org: 'acme', env: 'production', owner: 'dana' }) },
};

const log = (line = '') => process.stdout.write(`${line}\n`);
const n = (x) => Math.round(x).toLocaleString('en-US');

async function main() {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: build first (`make build` or `npx tsc -p tsconfig.json`)');
  ensureH2load(log);
  const load = os.loadavg()[0].toFixed(1);
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ${h2loadVersion()}, ${os.type()} ${os.release()}, load average ${load} at start`;
  log(`machine: ${machine}`);
  log(`${SMOKE ? 'smoke (figures mean nothing)' : QUICK ? 'quick' : 'full'} mode`);
  log();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-bench-audit-'));
  try {
    const verify = await verifyBench(tmp);
    const server = await serverBench(tmp);
    const work = await writerWork(tmp);
    printTables(machine, verify, server, work);
  } finally {
    if (KEEP) log(`\nkept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The decisions the benchmark's rows record, and the call they came on (one of each, reused). */
const POLICY_VERSION = 'sha256:af16fd2792fba2d47d6674bb5c471433e4556ceed63d48fbda6b0c59aaca610d';
const ALLOWED = { effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['ds-read-predict-own-org'], errors: [], policyVersion: POLICY_VERSION };
const DENIED = { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], errors: [], policyVersion: POLICY_VERSION };
const CALL = { caller: 'ipv4:127.0.0.1:50000', requestId: null };

// ---------------------------------------------------------------- verify speed

async function verifyBench(tmp) {
  const { startWriterThread } = await import('../dist/decisions/writer-thread.js');
  const { loadAudit } = await import('../dist/decisions/audit-setup.js');
  const { decisionRecord } = await import('../dist/decide/record.js');
  const dir = path.join(tmp, 'verify');
  const db = path.join(dir, 'decisions.db');
  fs.mkdirSync(dir);
  const rows = SETTINGS.verifyRows;
  log(`== writing a ${n(rows)}-row decision log (verdict's writer, async mode, a signed checkpoint every 10,000 rows)`);
  const audit = loadAudit({ db, checkpointEveryRows: 10_000, checkpointEverySeconds: 3600, signingKey: null, publicKey: null, sensitiveAttributes: [], hmacKey: null });
  const writer = await startWriterThread({ path: db, mode: 'async', checkpoints: audit.checkpoints }, null);
  const start = Date.now() - rows;
  const t0 = performance.now();
  for (let i = 0; i < rows; i += 10_000) {
    const batch = [];
    for (let j = i; j < Math.min(rows, i + 10_000); j++) {
      const time = start + j;
      const denied = j % 10 === 0;
      const request = {
        principal: { id: `user-${j % 5000}`, roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
        action: denied ? 'download' : 'predict',
        resource: { type: 'model', id: `model-${j % 50}`, attributes: { org: 'acme', env: 'production', owner: `user-${j % 5000}` } },
        context: { attributes: { ip: `10.0.${(j >> 8) & 255}.${j & 255}` } },
      };
      batch.push(writer.append(decisionRecord(request, denied ? DENIED : ALLOWED, CALL, time, 20 + (j % 50))));
    }
    await Promise.all(batch);
    await writer.flush();
  }
  await writer.close();
  const writeSeconds = (performance.now() - t0) / 1000;
  const size = fs.statSync(db).size;
  log(`  ${n(rows)} rows in ${writeSeconds.toFixed(1)} s (${n(rows / writeSeconds)} rows/s), ${(size / 2 ** 20).toFixed(0)} MiB`);

  const results = [];
  for (const [label, extra] of [
    [`verify, ${n(rows)} rows, default threads (${Math.min(os.availableParallelism(), 4)})`, []],
    [`verify, ${n(rows)} rows, 1 thread`, ['--workers', '1']],
  ]) {
    // Once to warm the page cache, then measured.
    runVerify(['--db', db, ...extra]);
    const r = runVerify(['--db', db, ...extra]);
    log(`  ${label}: exit ${r.status}, ${n(r.rows)} rows in ${r.wall.toFixed(2)} s wall = ${n(r.rows / r.wall)} rows/s (verify's own timer: ${n(r.reported)} rows/s)`);
    if (r.status !== 0) throw new Error(`verify failed:\n${r.stdout}${r.stderr}`);
    results.push({ label, ...r, rowsPerSec: r.rows / r.wall });
  }

  const exportFile = path.join(dir, 'export.jsonl');
  const ex = spawnSync(process.execPath, [BIN, 'audit', 'export', '--db', db, '--since', new Date(start + rows - SETTINGS.exportRows).toISOString(), '--out', exportFile], { encoding: 'utf8' });
  if (ex.status !== 0) throw new Error(`export failed: ${ex.stderr}`);
  runVerify(['--export', exportFile]);
  const er = runVerify(['--export', exportFile]);
  log(`  verify --export, ${n(er.rows)} rows (${(fs.statSync(exportFile).size / 2 ** 20).toFixed(0)} MiB JSONL): exit ${er.status}, ${er.wall.toFixed(2)} s = ${n(er.rows / er.wall)} rows/s`);
  if (er.status !== 0) throw new Error(`verify --export failed:\n${er.stdout}${er.stderr}`);
  results.push({ label: `verify --export, ${n(er.rows)} rows JSONL, 1 thread`, ...er, rowsPerSec: er.rows / er.wall });
  log();
  return { rows, writeSeconds, size, results };
}

function runVerify(args) {
  const t = performance.now();
  const r = spawnSync(process.execPath, [BIN, 'audit', 'verify', ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const wall = (performance.now() - t) / 1000;
  const rows = Number((/chain\s+([\d,]+) rows/.exec(r.stdout)?.[1] ?? '0').replace(/,/g, ''));
  const reported = Number((/\(([\d,]+) rows\/s\)/.exec(r.stdout)?.[1] ?? '0').replace(/,/g, ''));
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, wall, rows, reported };
}

// ---------------------------------------------------------------- server throughput

async function serverBench(tmp) {
  const protos = loadProtos(path.join(ROOT, 'proto'));
  const body = grpcFrame(encodeMessage(protos.CheckRequest, SAMPLE_REQUEST));
  const bodyFile = path.join(tmp, 'check-request.bin');
  fs.writeFileSync(bodyFile, body);
  const runs = { on: [], off: [] };
  let k = 0;
  for (let round = 1; round <= SETTINGS.rounds; round++) {
    for (const chain of ['on', 'off']) {
      k++;
      const label = `chain+signing ${chain === 'on' ? 'on (verdict as shipped)' : 'off (baseline sink)'}, round ${round}`;
      log(`== ${label}`);
      const dbFile = path.join(tmp, `server-${k}-${chain}.db`);
      const server = await startVerdict(dbFile, chain === 'on' ? 'chained' : 'baseline');
      let result;
      try {
        await verifyAllow(protos, HOST, server.grpcPort, METHOD, body);
        const url = `http://${HOST}:${server.grpcPort}${METHOD}`;
        await runH2load({ url, bodyFile, clients: 4, streams: 32, requests: SETTINGS.warmUp });
        const logFile = path.join(tmp, `server-${k}.h2load.log`);
        const cpuBefore = cpuSeconds(server.child.pid);
        const run = await runH2load({ url, bodyFile, clients: 4, streams: 32, requests: SETTINGS.requests, logFile });
        const cpu = cpuSeconds(server.child.pid) - cpuBefore;
        const { latencies } = readLatencyLog(logFile);
        result = { chain, round, reqPerSec: run.reqPerSec, p50: percentile(latencies, 50) / 1000, p99: percentile(latencies, 99) / 1000, succeeded: run.succeeded, failed: run.total - run.succeeded, cpuPer10k: (cpu / Math.max(1, run.succeeded)) * 10_000 };
        log(`  ${run.succeeded}/${run.total} succeeded; ${n(run.reqPerSec)} req/s; p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms; server CPU ${result.cpuPer10k.toFixed(2)} s per 10k`);
      } finally {
        const exit = await stopChild(server.child);
        if (exit.code !== 0) log(`  verdict exited ${exit.code ?? exit.signal}: ${server.child.output}`);
      }
      // What the run left behind: chained and signed, or (off) neither.
      const db = new Database(dbFile, { readonly: true });
      const chained = chain === 'on';
      const stats = db.prepare(`SELECT count(*) AS rows, ${chained ? 'count(hash)' : '0'} AS hashed FROM decisions`).get();
      const checkpoints = chained ? db.prepare('SELECT count(*) FROM checkpoints').pluck().get() : 0;
      db.close();
      log(`  log: ${n(stats.rows)} rows, ${n(stats.hashed)} hashed, ${checkpoints} checkpoints`);
      if (chain === 'on') {
        const v = runVerify(['--db', dbFile]);
        log(`  verify: exit ${v.status}`);
        if (v.status !== 0) throw new Error(`the benchmark's own log does not verify:\n${v.stdout}`);
      }
      runs[chain].push(result);
      log();
    }
  }
  return runs;
}

async function startVerdict(dbFile, sink) {
  for (let attempt = 1; ; attempt++) {
    const grpcPort = await freePort();
    const httpPort = await freePort();
    const args = [path.join(ROOT, 'bench', 'lib', 'audit-server.mjs'), sink, dbFile, String(grpcPort), String(httpPort)];
    const child = spawnTracked(process.execPath, args, { cwd: ROOT });
    try {
      await waitForHttp200(child, `http://${HOST}:${httpPort}/readyz`, 'verdict serve');
      return { child, grpcPort, httpPort };
    } catch (error) {
      await stopChild(child, 2000);
      if (attempt < 2 && /in use|EADDRINUSE/i.test(String(error.message))) continue;
      throw error;
    }
  }
}

// ---------------------------------------------------------------- the writer's own cost

/**
 * What the writer spends per decision, in-process and in CPU time, which other
 * processes on the machine disturb far less than requests/s: verdict's writer
 * (hash chain, a checkpoint every 10,000 rows) versus the same rows inserted
 * plainly, one durable transaction per batch both ways; batches of 16 (about
 * what 128 in-flight checks give), 20,000 rows a run, 3 interleaved runs each,
 * medians. The difference is hashing, storing the hashes and format, and
 * signing.
 */
async function writerWork(tmp) {
  const { LogWriter } = await import('../dist/decisions/writer.js');
  const { loadOrCreateSigningKey } = await import('../dist/decisions/keys.js');
  const { encodeRecord } = await import('../dist/decisions/row.js');
  const { COLUMN_LIST, COLUMNS } = await import('../dist/decisions/columns.js');
  const { decisionRecord } = await import('../dist/decide/record.js');
  const request = {
    principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
    action: 'predict',
    resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } },
    context: { attributes: {} },
  };
  const rows = SETTINGS.writerRows;
  const batch = 16;
  const runs = { on: [], off: [] };
  let k = 0;
  for (let round = 0; round < 3; round++) {
    for (const chain of ['on', 'off']) {
      const dir = path.join(tmp, `writer-${++k}`);
      fs.mkdirSync(dir);
      const db = path.join(dir, 'decisions.db');
      const signer = loadOrCreateSigningKey({ signingKey: path.join(dir, 'k.pem'), publicKey: path.join(dir, 'k.pub.pem') }).signer;
      let write;
      let close;
      if (chain === 'on') {
        const writer = LogWriter.open(db, { mode: 'durable', checkpoints: { signer, everyRows: 10_000, everySeconds: 60 } });
        write = (values, n) => new Promise((resolve, reject) => writer.write(values, n, false, ({ failed }) => (failed ? reject(failed) : resolve())));
        close = () => writer.close();
      } else {
        const plain = new Database(db);
        plain.pragma('journal_mode = WAL');
        plain.pragma('synchronous = FULL');
        plain.exec(`CREATE TABLE decisions (seq INTEGER PRIMARY KEY, ${COLUMN_LIST})`);
        const insert = plain.prepare(`INSERT INTO decisions (${COLUMN_LIST}) VALUES (${COLUMNS.map(() => '?').join(', ')})`);
        const transaction = plain.transaction((values, n) => {
          for (let i = 0; i < n; i++) insert.run(values.slice(i * COLUMNS.length, (i + 1) * COLUMNS.length));
        });
        write = async (values, n) => transaction(values, n);
        close = async () => plain.close();
      }
      const start = Date.now();
      const before = process.cpuUsage();
      for (let i = 0; i < rows; i += batch) {
        const values = [];
        for (let j = i; j < i + batch; j++) {
          encodeRecord(values, decisionRecord(request, ALLOWED, CALL, start + j, 40));
        }
        await write(values, batch);
      }
      const used = process.cpuUsage(before);
      await close();
      runs[chain].push((used.user + used.system) / rows);
    }
  }
  const median = (list) => [...list].sort((a, b) => a - b)[1];
  const result = { onUs: median(runs.on), offUs: median(runs.off), runs };
  log(`== the writer alone, in-process: ${result.onUs.toFixed(1)} µs CPU per decision with the chain, ${result.offUs.toFixed(1)} inserted plainly (runs: chain ${runs.on.map((x) => x.toFixed(1)).join(', ')}; plain ${runs.off.map((x) => x.toFixed(1)).join(', ')})`);
  log();
  return result;
}

// ---------------------------------------------------------------- tables

function printTables(machine, verify, server, work) {
  log(`Verify speed (\`verdict audit verify\`, wall time of the whole command, page cache warm; log of ${n(verify.rows)} rows, ${(verify.size / 2 ** 20).toFixed(0)} MiB, written at ${n(verify.rows / verify.writeSeconds)} rows/s):`);
  log();
  log('| run | rows | seconds | rows/s |');
  log('|---|--:|--:|--:|');
  for (const r of verify.results) log(`| ${r.label} | ${n(r.rows)} | ${r.wall.toFixed(2)} | ${n(r.rowsPerSec)} |`);
  log();
  const median = (list, key) => {
    const sorted = list.map((x) => x[key]).sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  };
  const summary = (list) => ({ reqPerSec: median(list, 'reqPerSec'), p50: median(list, 'p50'), p99: median(list, 'p99'), cpuPer10k: median(list, 'cpuPer10k') });
  const on = summary(server.on);
  const off = summary(server.off);
  log(`Server throughput, durable log, h2load -c 4 -m 32 -t 1 (128 in flight), ${n(SETTINGS.requests)} requests per run after ${n(SETTINGS.warmUp)} warm-up; ${SETTINGS.rounds} interleaved runs each, medians:`);
  log();
  log('| chain + signing | requests/s | p50 ms | p99 ms | server CPU s per 10k checks | every run, req/s |');
  log('|---|--:|--:|--:|--:|---|');
  for (const [label, r, list] of [['on (verdict as shipped)', on, server.on], ['off (the benchmark\'s baseline sink)', off, server.off]]) {
    log(`| ${label} | ${n(r.reqPerSec)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.cpuPer10k.toFixed(2)} | ${list.map((x) => n(x.reqPerSec)).join(', ')} |`);
  }
  log();
  log(`Cost of the chain and checkpoints, end to end: ${((1 - on.reqPerSec / off.reqPerSec) * 100).toFixed(1)}% of throughput, ${((on.cpuPer10k / off.cpuPer10k - 1) * 100).toFixed(1)}% more server CPU per check (goal: under 10%); p99 ${on.p99.toFixed(2)} vs ${off.p99.toFixed(2)} ms.`);
  const perCheckUs = (off.cpuPer10k / 10_000) * 1e6;
  const addedUs = work.onUs - work.offUs;
  log(`The writer alone (in-process CPU time, steadier than requests/s here): ${work.onUs.toFixed(1)} µs per decision with the chain, ${work.offUs.toFixed(1)} inserted plainly: ${addedUs.toFixed(1)} µs more, ${((addedUs / perCheckUs) * 100).toFixed(1)}% of the ${perCheckUs.toFixed(0)} µs of server CPU a check costs with the baseline sink.`);
  log(`Machine: ${machine}; load average ${os.loadavg()[0].toFixed(1)} at the end.`);
}

main().catch((error) => {
  console.error(`\nbench/audit.mjs failed: ${error?.stack ?? error}`);
  killAllNow();
  process.exit(1);
});
