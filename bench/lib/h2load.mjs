// h2load: installing it on demand, running it, and reading its summary and --log-file.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { spawnTracked } from './procs.mjs';

function which(command) {
  const result = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : null;
}

/** Installs Debian's nghttp2-client (which ships h2load) if h2load is missing; says what it does. */
export function ensureH2load(log = console.log) {
  const found = which('h2load');
  if (found) return found;
  log('h2load not found: installing the Debian package nghttp2-client (apt-get update, then apt-get install -y nghttp2-client)');
  if (!which('apt-get')) throw new Error('h2load is missing and apt-get is not available: install nghttp2-client (it ships h2load) by hand');
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const prefix = asRoot ? [] : which('sudo') ? ['sudo', '-n'] : null;
  if (!prefix) throw new Error('h2load is missing and installing nghttp2-client needs root: run `apt-get install -y nghttp2-client` as root');
  for (const args of [['apt-get', 'update'], ['apt-get', 'install', '-y', 'nghttp2-client']]) {
    const cmd = [...prefix, ...args];
    log(`  $ ${cmd.join(' ')}`);
    const result = spawnSync(cmd[0], cmd.slice(1), { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (result.status !== 0) throw new Error(`\`${cmd.join(' ')}\` failed (exit ${result.status ?? result.signal}); install nghttp2-client (it ships h2load) by hand`);
  }
  const installed = which('h2load');
  if (!installed) throw new Error('nghttp2-client was installed but h2load is still not on PATH');
  log(`  installed ${installed}`);
  return installed;
}

export function h2loadVersion() {
  return execFileSync('h2load', ['--version'], { encoding: 'utf8' }).trim().split('\n')[0];
}

/** h2load's arguments for `opts` (see runH2load). */
export function h2loadArgs(opts) {
  const args = ['-c', String(opts.clients), '-m', String(opts.streams), '-t', '1'];
  if (opts.duration !== undefined) {
    args.push('-D', String(opts.duration));
    if (opts.warmUp) args.push('--warm-up-time', String(opts.warmUp));
  } else {
    args.push('-n', String(opts.requests));
  }
  if (opts.rps !== undefined) args.push('--rps', String(opts.rps));
  // gRPC by default; `headers` (e.g. JSON and a credential) for plain HTTP, and `h1` for HTTP/1.1 (-m then pipelines).
  if (opts.h1) args.push('--h1');
  args.push('-d', opts.bodyFile);
  for (const header of opts.headers ?? ['content-type: application/grpc', 'te: trailers']) args.push('-H', header);
  if (opts.logFile) args.push('--log-file', opts.logFile);
  args.push(opts.url);
  return args;
}

/**
 * Runs h2load against a gRPC method with a pre-framed body file (or, with `headers`
 * and `h1`, against a plain HTTP endpoint with a body file).
 * opts: { url, bodyFile, clients, streams, requests?, rps?, duration?, warmUp?, logFile?, headers?, h1? }
 * Resolves the parsed summary plus the raw output.
 */
export function runH2load(opts) {
  const args = h2loadArgs(opts);
  // Tracked, so an interrupted benchmark does not leave h2load running.
  const child = spawnTracked('h2load', args);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const spawned = new Promise((_resolve, reject) => child.on('error', reject));
  const finished = child.exited.then(({ code, signal }) => {
    if (code !== 0) throw new Error(`h2load ${args.join(' ')} exited ${code ?? signal}\n${child.output}`);
    try {
      return { ...parseSummary(out), args, output: out };
    } catch (error) {
      throw new Error(`${error.message}\n--- h2load output ---\n${child.output}`);
    }
  });
  return Promise.race([spawned, finished]);
}

/** Reads "finished in ..., N req/s", the requests line and the status-codes line of h2load's summary. */
export function parseSummary(text) {
  const finished = /finished in ([\d.]+)(\w+), ([\d.]+) req\/s/.exec(text);
  const requests = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(text);
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text);
  if (!finished || !requests || !status) throw new Error('could not parse h2load summary');
  const unit = { s: 1, ms: 1e-3, us: 1e-6 }[finished[2]] ?? 1;
  return {
    seconds: Number(finished[1]) * unit,
    reqPerSec: Number(finished[3]),
    total: Number(requests[1]),
    done: Number(requests[3]),
    succeeded: Number(requests[4]),
    failed: Number(requests[5]),
    errored: Number(requests[6]),
    timeout: Number(requests[7]),
    status2xx: Number(status[1]),
    statusNon2xx: Number(status[2]) + Number(status[3]) + Number(status[4]),
  };
}

/** h2load --log-file rows: start time (µs since the epoch) \t HTTP status \t µs until the end of the response. */
export function readLogRows(file) {
  const rows = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const [start, status, micros] = line.split('\t');
    if (micros !== undefined) rows.push({ start: Number(start), status: Number(status), micros: Number(micros) });
  }
  return rows;
}

/** Latencies (µs) of the 2xx rows of an h2load --log-file, sorted, plus how many rows were not 2xx. */
export function readLatencyLog(file) {
  const latencies = [];
  let other = 0;
  for (const { status, micros } of readLogRows(file)) {
    if (status >= 200 && status < 300) latencies.push(micros);
    else other += 1;
  }
  latencies.sort((a, b) => a - b);
  return { latencies, other };
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}
