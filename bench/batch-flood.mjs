#!/usr/bin/env node
// One client floods verdict with CheckBatch calls (100 at once on one connection, 200 items
// each, sent again as soon as each is answered) while a prober in a thread of its own sends
// one Check every 20 ms on a connection of its own: what another caller's check waits
// meanwhile, beside the same prober at rest, and how many batch items the flood got through.
// Durable decision log, the shipped policies, one decision per prober request.
//
//   node bench/batch-flood.mjs                 full run (about 30 s per build)
//   node bench/batch-flood.mjs --quick         shorter phases
//   node bench/batch-flood.mjs --baseline DIR  also run another build of verdict (a checkout with
//                                              dist/ built) the same way, first: before and after
//   node bench/batch-flood.mjs --large-checks  the flood is single Checks instead, each carrying
//                                              about 1 MB of context (gzip-compressed to a few KB,
//                                              all within the default limits): rows large in bytes
//                                              rather than many
//   node bench/batch-flood.mjs --null-lists    the flood is single Checks the request limits refuse,
//                                              each a list of 260,000 nulls in its context (about
//                                              1 MB, 1.2 KB gzip-compressed): cheap to send,
//                                              costly to decode
//
// Needs the build (dist/). Never fails on a slow figure.
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { checkRequestFrame, grpcFrame, loadProtos, toStruct, verifyAllow } from './lib/grpc-frame.mjs';
import { stopChild } from './lib/procs.mjs';
import { startProber } from './lib/prober.mjs';
import { startVerdict } from './lib/servers.mjs';
import { BENCH_REQUEST } from './peers/verdict-cases.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const baselineAt = argv.indexOf('--baseline');
const BASELINE = baselineAt >= 0 ? path.resolve(argv[baselineAt + 1] ?? '') : null;
const LARGE_CHECKS = argv.includes('--large-checks');
const NULL_LISTS = argv.includes('--null-lists');
const HOST = '127.0.0.1';
const CHECK_PATH = '/verdict.v1.Authorization/Check';
const BATCH_PATH = '/verdict.v1.Authorization/CheckBatch';
const STREAMS = 100;
const ITEMS = 200;
const PROBE_MS = 20;
const REST_S = QUICK ? 2 : 4;
const FLOOD_S = QUICK ? 5 : 12;

const protos = loadProtos(path.join(ROOT, 'proto'));
const batchType = (() => {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => path.join(ROOT, 'proto', target);
  root.loadSync('verdict/v1/authorization.proto', { keepCase: false });
  return root.lookupType('verdict.v1.CheckBatchRequest');
})();
const { principal, action, resource } = BENCH_REQUEST;
const checkBody = checkRequestFrame(protos, BENCH_REQUEST);
const batchBody = grpcFrame(
  batchType
    .encode(
      batchType.fromObject({
        principal: { id: principal.id, roles: principal.roles, attributes: toStruct(principal.attributes) },
        items: Array.from({ length: ITEMS }, () => ({ action, resource: { type: resource.type, id: resource.id, attributes: toStruct(resource.attributes) } })),
      }),
    )
    .finish(),
);

/** The benchmark Check with `attributes` as its context, gzip-compressed, framed with the compressed flag. */
function gzipCheckFrame(attributes) {
  const framed = checkRequestFrame(protos, { ...BENCH_REQUEST, context: { attributes } });
  const compressed = gzipSync(framed.subarray(5));
  const frame = Buffer.alloc(5 + compressed.length);
  frame.writeUInt8(1, 0);
  frame.writeUInt32BE(compressed.length, 1);
  compressed.copy(frame, 5);
  return frame;
}
/**
 * A Check whose context holds 120 strings of 8,000 characters (each under the default
 * 8,192 per string, about 0.96 MB in all, under the 1 MiB total): what the flood sends with --large-checks.
 */
const largeCheckBody = gzipCheckFrame(Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`note${i}`, `${i}:`.padEnd(8000, 'abcdefghijklmnopqrstuvwxyz')])));
/** A Check whose context holds one list of 260,000 nulls: what the flood sends with --null-lists. */
const nullListBody = gzipCheckFrame({ junk: Array.from({ length: 260_000 }, () => null) });
// `status`: the grpc-status every flood call should get (the null lists are refused, INVALID_ARGUMENT).
const FLOOD = LARGE_CHECKS
  ? { path: CHECK_PATH, body: largeCheckBody, items: 1, status: '0', headers: { 'grpc-encoding': 'gzip' }, what: `${STREAMS} Checks of about 1 MB of context each (${largeCheckBody.length} bytes gzip-compressed)` }
  : NULL_LISTS
    ? { path: CHECK_PATH, body: nullListBody, items: 1, status: '3', headers: { 'grpc-encoding': 'gzip' }, what: `${STREAMS} Checks each holding a list of 260,000 nulls, over the limits (${nullListBody.length} bytes gzip-compressed)` }
    : { path: BATCH_PATH, body: batchBody, items: ITEMS, status: '0', headers: {}, what: `${STREAMS} CheckBatch calls of ${ITEMS} items` };

function summary(samples) {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const at = (q) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))];
  return { n: ms.length, p50: at(0.5), p99: at(0.99), max: ms.at(-1) };
}

/** Keeps STREAMS calls of FLOOD in flight on one connection until stopped; counts answered items and failures. */
function startFlood(port) {
  const session = http2.connect(`http://${HOST}:${port}`);
  session.on('error', () => undefined);
  let stopping = false;
  let items = 0;
  let failures = 0;
  let firstFailure = null;
  const one = () =>
    new Promise((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': FLOOD.path, 'content-type': 'application/grpc', te: 'trailers', ...FLOOD.headers });
      let grpcStatus = null;
      let message = null;
      const note = (headers) => {
        grpcStatus = headers['grpc-status'] ?? grpcStatus;
        message = headers['grpc-message'] ?? message;
      };
      stream.on('response', note);
      stream.on('trailers', note);
      stream.on('data', () => undefined);
      stream.on('error', (error) => {
        failures++;
        firstFailure ??= error.message;
        resolve();
      });
      stream.on('end', () => {
        if (String(grpcStatus) === FLOOD.status) items += FLOOD.items;
        else {
          failures++;
          firstFailure ??= `grpc-status ${grpcStatus}: ${decodeURIComponent(message ?? '')}`;
        }
        resolve();
      });
      stream.end(FLOOD.body);
    });
  const loops = Array.from({ length: STREAMS }, async () => {
    while (!stopping) await one();
  });
  return {
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      session.close();
      return { items, failures, firstFailure };
    },
  };
}

async function measure(label, root) {
  const dbFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-bench-flood-')), 'decisions.db');
  const server = await startVerdict({ mode: 'durable', dbFile, root, policies: path.join(ROOT, 'policies') });
  try {
    await verifyAllow(protos, HOST, server.grpcPort, CHECK_PATH, checkBody);
    const probe = (seconds) => {
      const prober = startProber({ host: HOST, port: server.grpcPort, path: CHECK_PATH, body: checkBody, intervalMs: PROBE_MS });
      return new Promise((resolve) => setTimeout(resolve, seconds * 1000)).then(() => prober.stop());
    };
    const rest = await probe(REST_S);
    const logBytes = () => [dbFile, `${dbFile}-wal`].reduce((sum, file) => sum + (fs.existsSync(file) ? fs.statSync(file).size : 0), 0);
    const logBefore = logBytes();
    const flood = startFlood(server.grpcPort);
    const started = performance.now();
    const during = await probe(FLOOD_S);
    const flooded = await flood.stop();
    const seconds = (performance.now() - started) / 1000;
    const logGrowth = (logBytes() - logBefore) / seconds;
    if (flooded.failures > 0) console.error(`${label}: ${flooded.failures} flood calls failed (first: ${flooded.firstFailure})`);
    return { label, rest: summary(rest.samples), restFailures: rest.failures, flood: summary(during.samples), floodFailures: during.failures, itemsPerSecond: flooded.items / seconds, logGrowth };
  } finally {
    await stopChild(server.child);
  }
}

const runs = [];
if (BASELINE !== null) runs.push(await measure(`baseline (${path.basename(BASELINE)})`, BASELINE));
runs.push(await measure('this build', ROOT));

const f = (ms) => ms.toFixed(1);
console.log(`\nA prober's check every ${PROBE_MS} ms, at rest (${REST_S} s) and while one client keeps ${FLOOD.what} in flight (${FLOOD_S} s); durable log\n`);
console.log(`| build | at rest p50 / p99 / max ms | during the flood p50 | p99 | max ms | prober failures | ${LARGE_CHECKS || NULL_LISTS ? 'flood checks' : 'batch items'}/s | log growth MB/s |`);
console.log('|---|--:|--:|--:|--:|--:|--:|--:|');
for (const r of runs) {
  console.log(`| ${r.label} | ${f(r.rest.p50)} / ${f(r.rest.p99)} / ${f(r.rest.max)} | ${f(r.flood.p50)} | ${f(r.flood.p99)} | ${f(r.flood.max)} | ${r.restFailures + r.floodFailures} | ${Math.round(r.itemsPerSecond).toLocaleString('en-US')} | ${(r.logGrowth / 1e6).toFixed(1)} |`);
}
console.log(`\nmachine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load average at the end ${os.loadavg()[0].toFixed(2)}`);
