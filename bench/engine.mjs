#!/usr/bin/env node
// Engine benchmark: microseconds per decision and decisions per second of evaluate()
// on the shipped example set and on synthetic multi-tenant sets of 10, 1,000 and
// 10,000 rules, and on the 1,000-rule set with principal and resource directories (small
// and of 100,000 entries each; requests naming listed entries, and naming none). Only completeRequest()
// (the directories' part, as the decide core runs it) and evaluate() are timed, after a warm-up; rounds are interleaved
// across the sets (so machine noise hits them alike) and the median round is reported.
//
//   node bench/engine.mjs            full run
//   node bench/engine.mjs --quick    fewer, shorter rounds
//
// Needs the build (dist/): `make bench` builds first. Never fails on a slow figure:
// the goal (10,000 rules within 2x of 10 rules) is reported as a ratio, not asserted.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { completeRequest } from '../dist/engine/complete.js';
import { evaluate } from '../dist/engine/evaluate.js';
import { loadPolicies } from '../dist/policy/load.js';
import { syntheticSet as generateSet, syntheticRequests } from './lib/synthetic.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 3 : 9;
const DECISIONS_PER_ROUND = QUICK ? 40_000 : 250_000;
const WARMUP_DECISIONS = QUICK ? 20_000 : 150_000;

/** The 10-rule set is one tenant; 10,000 rules are 1,666 tenants of the same shape (see synthetic.mjs). */
function syntheticSet(size) {
  const { rules, roles, tenants } = generateSet(size);
  return { files: { 'rules.json': { kind: 'rules', rules }, 'roles.json': { kind: 'roles', roles } }, tenants };
}

function load(dir) {
  const started = performance.now();
  const cpu = process.cpuUsage();
  const result = loadPolicies(dir);
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  const cpuMs = (used.user + used.system) / 1000;
  if (!result.ok) {
    for (const d of result.diagnostics.slice(0, 10)) console.error(`${d.file}:${d.line}:${d.col}: ${d.message}`);
    throw new Error(`${dir} is invalid`);
  }
  return { policies: result.policies, loadMs: ms, loadCpuMs: cpuMs };
}

function writeSet(files) {
  const dir = mkdtempSync(join(os.tmpdir(), 'verdict-bench-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), JSON.stringify(content));
  return dir;
}

/** Runs `count` decisions over the request list; returns elapsed nanoseconds and allows. */
function run(policySet, requests, count) {
  let allows = 0;
  const n = requests.length;
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    if (evaluate(policySet, completeRequest(policySet, requests[i % n])).effect === 'ALLOW') allows++;
  }
  return { ns: Number(process.hrtime.bigint() - started), allows };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

// ---- the sets ----------------------------------------------------------------------

const sets = [];
const tempDirs = [];
{
  const { policies, loadMs } = load(join(ROOT, 'policies'));
  const requests = policies.tests.map((t) => t.request);
  sets.push({ name: 'example (policies/)', policySet: policies.policySet, requests, loadMs, samples: [], allows: 0, decided: 0 });
}
for (const size of [10, 1_000, 10_000]) {
  const { files, tenants } = syntheticSet(size);
  const dir = writeSet(files);
  tempDirs.push(dir);
  const { policies, loadMs } = load(dir);
  sets.push({
    name: `synthetic ${size.toLocaleString('en-US')}`,
    size,
    tenants,
    policySet: policies.policySet,
    requests: syntheticRequests(tenants, 4_000),
    loadMs,
    samples: [],
    allows: 0,
    decided: 0,
  });
}
// The 1,000-rule set with principal and resource directories, asked the 1,000-rule set's
// own requests, which name 97 principals and 4,000 resources:
//   - "directories, named entries only": the directories list exactly those entries, so
//     every request is completed from both (its roles and attributes replaced by the
//     directory's) — the completion's cost, against the row without directories;
//   - "directories 100k/100k": the same entries among 100,000 principals and 100,000
//     resources — the same completions, so any difference is the directories' size;
//   - "directories 100k/100k, nothing named": the big directories, asked requests that
//     name no listed principal or resource — what a directory costs a request it does
//     not know (two map lookups), against the row without directories.
{
  const { files } = syntheticSet(1_000);
  const thousand = sets.find((s) => s.size === 1_000);
  const roleNames = files['roles.json'].roles.map((r) => r.name);
  const principal = (i) => ({
    id: `user-${i}`,
    roles: [roleNames[i % roleNames.length]],
    attributes: { org: `tenant-${i % thousand.tenants}`, team: `tenant-${i % thousand.tenants}-ml` },
  });
  const named = new Set(thousand.requests.map((r) => r.principal.id));
  const namedPrincipals = Array.from({ length: 100_000 }, (_, i) => i).filter((i) => named.has(`user-${i}`)).map(principal);
  const allPrincipals = Array.from({ length: 100_000 }, (_, i) => principal(i));
  const listed = thousand.requests.map((r) => ({ type: r.resource.type, id: r.resource.id, attributes: r.resource.attributes }));
  const filler = Array.from({ length: 100_000 - listed.length }, (_, i) => ({ type: 'archived-model', id: `old-${i}`, attributes: { org: 'tenant-0', env: 'prod' } }));
  const directorySet = (name, principals, resources, extra) => {
    const dir = writeSet({ ...files, 'principals.json': { kind: 'principals', principals }, 'resources.json': { kind: 'resources', resources } });
    tempDirs.push(dir);
    const { policies, loadMs, loadCpuMs } = load(dir);
    sets.push({ ...thousand, name, size: undefined, policySet: policies.policySet, loadMs, loadCpuMs, samples: [], allows: 0, decided: 0, ...extra });
  };
  directorySet(`synthetic 1,000 + directories, named entries only (${namedPrincipals.length}/${listed.length.toLocaleString('en-US')})`, namedPrincipals, listed, { directories: 'named' });
  directorySet('synthetic 1,000 + directories 100k/100k', allPrincipals, [...listed, ...filler], { directories: 'big' });
  const big = sets.at(-1);
  const strangers = thousand.requests.map((r) => ({ ...r, principal: { ...r.principal, id: `guest-${r.principal.id}` }, resource: { ...r.resource, id: `new-${r.resource.id}` } }));
  sets.push({ ...big, name: 'synthetic 1,000 + directories 100k/100k, nothing named', directories: 'strangers', requests: strangers, samples: [], allows: 0, decided: 0, loadMs: undefined });
  // The same renamed requests without directories: the baseline for the row above (the copies are other objects than the originals).
  sets.push({ ...thousand, name: 'synthetic 1,000, the same renamed requests, no directories', size: undefined, directories: 'strangers-baseline', requests: strangers, samples: [], allows: 0, decided: 0, loadMs: undefined });
}
// The 10,000-rule set again, asked only the 10-rule set's requests (tenant 0's): the same
// work per decision, so any difference is what the other 9,990 rules cost through the index.
{
  const ten = sets.find((s) => s.size === 10);
  const big = sets.find((s) => s.size === 10_000);
  sets.push({ ...big, name: 'synthetic 10,000, one tenant\'s requests', size: undefined, tenants: undefined, oneTenant: true, requests: ten.requests, samples: [], allows: 0, decided: 0 });
}
for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });

// ---- measure -----------------------------------------------------------------------

for (const set of sets) run(set.policySet, set.requests, WARMUP_DECISIONS);
for (let round = 0; round < ROUNDS; round++) {
  for (const set of sets) {
    const { ns, allows } = run(set.policySet, set.requests, DECISIONS_PER_ROUND);
    set.samples.push(ns / 1000 / DECISIONS_PER_ROUND);
    set.allows += allows;
    set.decided += DECISIONS_PER_ROUND;
  }
}

// completeRequest() alone, on the sets with directories: what the completion itself costs.
const completionUs = new Map();
for (const set of sets.filter((s) => s.directories === 'named' || s.directories === 'big')) {
  const samples = [];
  const n = set.requests.length;
  let seen = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < DECISIONS_PER_ROUND; i++) seen += completeRequest(set.policySet, set.requests[i % n]).principal.roles.length;
    samples.push(Number(process.hrtime.bigint() - started) / 1000 / DECISIONS_PER_ROUND);
  }
  if (seen < 0) console.log(seen);
  completionUs.set(set.directories, median(samples));
}

// ---- report ------------------------------------------------------------------------

const cpus = os.cpus();
const base = median(sets.find((s) => s.size === 10).samples);
const fmt = (n, digits) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

console.log(`# verdict engine benchmark${QUICK ? ' (--quick)' : ''}\n`);
console.log(`machine: ${cpus[0]?.model?.trim() ?? 'unknown CPU'}, ${cpus.length} cores, node ${process.version}, ${os.platform()} ${os.arch()}`);
console.log(`method: evaluate() only, after ${fmt(WARMUP_DECISIONS, 0)} warm-up decisions per set; ${ROUNDS} rounds of ${fmt(DECISIONS_PER_ROUND, 0)} decisions, interleaved across sets; median round\n`);
console.log('| set | rules | µs/decision | decisions/s | ratio to 10-rule |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const set of sets) {
  const us = median(set.samples);
  console.log(`| ${set.name} | ${fmt(set.policySet.rules.length, 0)} | ${fmt(us, 3)} | ${fmt(1e6 / us, 0)} | ${fmt(us / base, 2)}× |`);
}
console.log('');
for (const set of sets) {
  const spread = `${fmt(Math.min(...set.samples), 3)}–${fmt(Math.max(...set.samples), 3)} µs`;
  const shape =
    set.directories === 'named'
      ? 'directories listing exactly the entries the requests name, every request completed from both, '
      : set.directories === 'big'
        ? '100,000 principals and 100,000 resources, the same entries named, every request completed from both, '
        : set.directories === 'strangers'
          ? 'the 100k/100k directories, requests naming no listed principal or resource, '
          : set.directories === 'strangers-baseline'
            ? 'no directories, the requests of the row above, '
          : set.tenants
            ? `${set.tenants} tenant(s), ${set.tenants * 2} resource types, `
            : set.oneTenant
              ? 'requests of tenant 0 only, '
              : '';
  console.log(
    `- ${set.name}: ${shape}${set.requests.length} distinct requests, ${fmt((100 * set.allows) / set.decided, 0)}% allowed; rounds ${spread}` +
      (set.loadMs === undefined ? '' : `; loaded and compiled in ${fmt(set.loadMs, 0)} ms${set.loadCpuMs === undefined ? '' : ` (${fmt(set.loadCpuMs, 0)} ms of CPU)`}`),
  );
}
const us = (predicate) => median(sets.find(predicate).samples);
const without = us((s) => s.size === 1_000);
const named = us((s) => s.directories === 'named');
const bigDirectories = us((s) => s.directories === 'big');
const strangers = us((s) => s.directories === 'strangers');
console.log(`\ndirectories (the 1,000-rule set without them: ${fmt(without, 3)} µs):`);
console.log(`- size: 100k/100k directories take ${fmt(bigDirectories / named, 2)}× the time of directories listing only the named entries (same requests, same completions)`);
console.log(`- completion: completing every request from the directories takes ${fmt(named / without, 2)}× the time without directories (the completed requests also take other rules: ${fmt((100 * sets.find((s) => s.directories === 'named').allows) / sets.find((s) => s.directories === 'named').decided, 0)}% allowed against ${fmt((100 * sets.find((s) => s.size === 1_000).allows) / sets.find((s) => s.size === 1_000).decided, 0)}%)`);
console.log(`- completeRequest() alone: ${fmt(completionUs.get('named'), 3)} µs with the named entries only, ${fmt(completionUs.get('big'), 3)} µs with 100k/100k`);
console.log(`- a request naming nothing listed: ${fmt(strangers / us((s) => s.directories === 'strangers-baseline'), 2)}× the time of the same requests without directories`);
const ratio = median(sets.find((s) => s.size === 10_000).samples) / base;
const indexOnly = median(sets.find((s) => s.oneTenant).samples) / base;
console.log(`\ngoal: 10,000 rules within 2× of 10 rules — measured ${fmt(ratio, 2)}× with requests from all 1,666 tenants (${ratio <= 2 ? 'met' : 'not met'}),`);
console.log(`${fmt(indexOnly, 2)}× with the 10-rule set's own requests (the index alone; the rest is the larger working set of rules and conditions across tenants)`);
