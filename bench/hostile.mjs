#!/usr/bin/env node
// Hostile-input benchmark: what one check costs when its caller chose the input to be
// expensive (a glob against a long id, a catastrophic pattern for matches(), a nested
// loop over a long list), beside a benign input against the same rule. In process:
// the request caps (RequestMeter) and evaluate() are timed together, as the pipeline
// runs them; median of rounds after a warm-up. The same inputs once took seconds each.
//
//   node bench/hostile.mjs            full run
//   node bench/hostile.mjs --quick    fewer rounds
//
// Needs the build (dist/): `make bench` builds first. Never fails on a slow figure.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { RequestMeter } from '../dist/decide/bounds.js';
import { evaluate } from '../dist/engine/evaluate.js';
import { loadPolicies } from '../dist/policy/load.js';

const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 5 : 15;
const PER_ROUND = QUICK ? 20 : 100;

const rules = [
  { id: 'prod-replicas', effect: 'allow', actions: ['read'], resource: { type: 'model', id: { glob: '*-*-*-prod' } } },
  { id: 'a-runs', effect: 'allow', actions: ['read'], resource: { type: 'text' }, when: 'resource.attributes.name.matches("^(a+)+$")' },
  { id: 'all-pairs', effect: 'allow', actions: ['read'], resource: { type: 'pairs' }, when: 'resource.attributes.l.all(x, resource.attributes.l.all(y, x != ""))' },
];

const dir = mkdtempSync(join(os.tmpdir(), 'verdict-bench-hostile-'));
writeFileSync(join(dir, 'rules.json'), JSON.stringify({ kind: 'rules', rules }));
const loaded = loadPolicies(dir);
rmSync(dir, { recursive: true, force: true });
if (!loaded.ok) throw new Error(loaded.diagnostics.map((d) => d.message).join('\n'));
const policySet = loaded.policies.policySet;

const ask = (resource) => ({
  principal: { id: 'eve', roles: [], attributes: {} },
  action: 'read',
  resource: { id: '', attributes: {}, ...resource },
  context: { attributes: {} },
});
const list = (n) => Array.from({ length: n }, (_, i) => `e${i}`);

const cases = [
  ['glob *-*-*-prod, 14-char id', ask({ type: 'model', id: 'eu-west-1-prod' }), '—'],
  ['glob *-*-*-prod, 4 KiB id', ask({ type: 'model', id: 'a-'.repeat(2048) }), '15 s'],
  ['matches("^(a+)+$"), 8 bytes', ask({ type: 'text', attributes: { name: 'aaaaaaa!' } }), '—'],
  ['matches("^(a+)+$"), 75 bytes', ask({ type: 'text', attributes: { name: `${'a'.repeat(74)}!` } }), '9.8 s'],
  ['nested all(), 50 elements', ask({ type: 'pairs', attributes: { l: list(50) } }), '—'],
  ['nested all(), 1,000 elements (the list cap)', ask({ type: 'pairs', attributes: { l: list(1_000) } }), '—'],
  ['nested all(), 6,000 elements (caps raised)', ask({ type: 'pairs', attributes: { l: list(6_000) } }), '3.3 s'],
];

const meter = new RequestMeter({ maxStringLength: 8192, maxListLength: 10_000, maxValues: 100_000, maxTotalLength: 1_048_576 });

function once(request) {
  const problem = meter.problem(request);
  return problem === null ? evaluate(policySet, request) : { effect: 'DENY', reason: 'DENIED_INVALID_REQUEST' };
}

const outcome = new Map();
for (const [name, request] of cases) {
  const d = once(request);
  outcome.set(name, `${d.effect} ${d.reason}`);
  for (let i = 0; i < PER_ROUND; i++) once(request);
}

const samples = new Map(cases.map(([name]) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, request] of cases) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < PER_ROUND; i++) once(request);
    samples.get(name).push(Number(process.hrtime.bigint() - started) / PER_ROUND / 1000);
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const max = (xs) => Math.max(...xs);
console.log(`hostile inputs, in process (caps + evaluate), ${ROUNDS} rounds × ${PER_ROUND}; ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(2)}, Node ${process.versions.node}`);
console.log('| input | decision | µs/check (median) | µs/check (worst round) | before |');
console.log('| --- | --- | ---: | ---: | ---: |');
for (const [name, , before] of cases) {
  const xs = samples.get(name);
  console.log(`| ${name} | ${outcome.get(name)} | ${median(xs).toFixed(1)} | ${max(xs).toFixed(1)} | ${before} |`);
}
