#!/usr/bin/env node
// Anomaly detector benchmark (src/analysis/detectors.ts), in process, on dist/:
//   1. decisions per second through the detectors (the live server does the same work
//      per recorded decision), for 10,000 principals each calling a different model each
//      time, and for 1,000 principals each sticking to one model;
//   2. memory with 1,000,000 distinct principals, each seen once: the V8 heap used after
//      GC, with the default cap (alerts.detectors.maxSubjects, 100,000 per map) and with
//      a cap large enough to hold them all, to show what the cap bounds.
//
//   node --expose-gc bench/alerts.mjs            (make build first: it loads dist/)
//   node --expose-gc bench/alerts.mjs --quick    200,000 principals for the memory figure
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Detectors } = await import(path.join(ROOT, 'dist', 'analysis', 'detectors.js'));
const { resolveDetectors } = await import(path.join(ROOT, 'dist', 'analysis', 'detector-config.js'));
const QUICK = process.argv.includes('--quick');
const gc = globalThis.gc ?? (() => undefined);
if (globalThis.gc === undefined) console.error('run with node --expose-gc for meaningful memory figures');

const START = Date.UTC(2026, 11, 3);
function record(i, principal, model, time) {
  return {
    decisionId: `0190aaaa-0000-7000-8000-${i.toString(16).padStart(12, '0')}`,
    time,
    caller: '10.0.0.1:5000',
    principalId: principal,
    action: 'predict',
    resourceType: 'model',
    resourceId: model,
    effect: i % 20 === 0 ? 'DENY' : 'ALLOW',
    reason: i % 20 === 0 ? 'DENIED_BY_DEFAULT' : 'ALLOWED_BY_RULE',
    errors: [],
  };
}

console.log(`# anomaly detectors (node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, load average ${os.loadavg()[0].toFixed(2)})`);
console.log('A shared, noisy machine: read ratios and orders of magnitude, not exact figures.\n');

{
  const n = QUICK ? 500_000 : 2_000_000;
  const principals = Array.from({ length: 10_000 }, (_, p) => `user-${p}`);
  const models = Array.from({ length: 50 }, (_, m) => `model-${m}`);
  const day = (i) => START + Math.floor((i / n) * 24 * 3_600_000);
  const shapes = [
    // Every decision a different principal and model from the last: the detectors' worst case.
    ['all six, defaults, 10,000 principals × 50 models over 24 h', Array.from({ length: n }, (_, i) => record(i, principals[(i * 7919) % principals.length], models[i % 50], day(i)))],
    // Each principal on the model it called last, as most traffic is.
    ['all six, defaults, 1,000 principals each on its own model over 24 h', Array.from({ length: n }, (_, i) => record(i, principals[(i * 7919) % 1000], models[((i * 7919) % 1000) % 50], day(i)))],
  ];
  console.log(`| detectors | decisions | seconds | decisions/s | ns/decision |`);
  console.log(`|---|--:|--:|--:|--:|`);
  for (const [label, records] of shapes) {
    let alerts = 0;
    const detectors = new Detectors(resolveDetectors(), () => alerts++);
    for (let i = 0; i < 100_000; i++) detectors.observe(records[i]);
    const fresh = new Detectors(resolveDetectors(), () => alerts++);
    const t0 = process.hrtime.bigint();
    for (const r of records) fresh.observe(r);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`| ${label} | ${n.toLocaleString('en-US')} | ${seconds.toFixed(3)} | ${Math.round(n / seconds).toLocaleString('en-US')} | ${Math.round((seconds * 1e9) / n)} |`);
  }
  console.log();
}

function heapMiB() {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

{
  const n = QUICK ? 200_000 : 1_000_000;
  console.log(`| cap (maxSubjects per map) | distinct principals | subjects held | evictions | heap growth after GC |`);
  console.log(`|---|--:|--:|--:|--:|`);
  for (const cap of [100_000, n]) {
    const before = heapMiB();
    let detectors = new Detectors(resolveDetectors({ maxSubjects: cap }), () => undefined);
    for (let i = 0; i < n; i++) detectors.observe(record(i, `principal-${i}`, `model-${i % 50}`, START + i));
    const after = heapMiB();
    console.log(`| ${cap.toLocaleString('en-US')} | ${n.toLocaleString('en-US')} | ${detectors.subjects.toLocaleString('en-US')} | ${detectors.evictions.toLocaleString('en-US')} | ${(after - before).toFixed(0)} MiB |`);
    detectors = null;
  }
}
