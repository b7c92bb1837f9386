#!/usr/bin/env node
// In-process engine comparison on equivalent policies: verdict's evaluate() (dist/),
// @cedar-policy/cedar-wasm (policy set preparsed once with preparsePolicySet, then
// statefulIsAuthorized per decision) and casbin (enforceSync per decision, an ABAC
// model with RBAC role links), at 10, 1,000 and 10,000 rules of bench/engine.mjs's
// synthetic multi-tenant shape (see synthetic.mjs for the translation).
//
//   node bench/peers/engines.mjs            full run
//   node bench/peers/engines.mjs --quick    shorter rounds
//   node bench/peers/engines.mjs --rss ENGINE SIZE   (internal) load one engine with one
//                                    set in this fresh process, decide, print its memory as JSON
//
// Before timing, every engine's answer is compared with verdict's on a sample of the
// requests. Only the decision call is timed: requests are converted into each engine's
// input form beforehand. Rounds are time-boxed and interleaved across the engines; the
// median round is reported, in µs per decision.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { spawnTracked } from '../lib/procs.mjs';
import { ensurePeers, importPeer } from './install.mjs';
import { syntheticRequests, syntheticSet, toCasbin, toCasbinArgs, toCedar, toCedarCall, CASBIN_MODEL } from '../lib/synthetic.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SIZES = [10, 1_000, 10_000];
const REQUESTS_PER_SET = 4_000;

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

// ---------------------------------------------------------------- engines

async function verdictEngine(set, requests) {
  const { loadPolicies } = await import(path.join(ROOT, 'dist', 'policy', 'load.js'));
  const { evaluate } = await import(path.join(ROOT, 'dist', 'engine', 'evaluate.js'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-peers-'));
  try {
    fs.writeFileSync(path.join(dir, 'rules.yaml'), YAML.stringify({ kind: 'rules', rules: set.rules }));
    fs.writeFileSync(path.join(dir, 'roles.yaml'), YAML.stringify({ kind: 'roles', roles: set.roles }));
    const started = performance.now();
    const result = loadPolicies(dir);
    const loadMs = performance.now() - started;
    if (!result.ok) throw new Error(`verdict rejected the synthetic set: ${result.diagnostics.slice(0, 5).map((d) => `${d.file}:${d.line}: ${d.message}`).join('; ')}`);
    const ps = result.policies.policySet;
    const n = requests.length;
    return {
      name: 'verdict',
      detail: `${ps.rules.length} compiled rules`,
      loadMs,
      decide: (i) => evaluate(ps, requests[i % n]).effect,
      run: (count, offset) => {
        let allows = 0;
        for (let i = 0; i < count; i++) if (evaluate(ps, requests[(offset + i) % n]).effect === 'ALLOW') allows++;
        return allows;
      },
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

let cedarCounter = 0;
async function cedarEngine(set, requests) {
  const cedar = await importPeer('@cedar-policy/cedar-wasm/nodejs');
  const { policies, count } = toCedar(set);
  const id = `set-${++cedarCounter}`;
  const started = performance.now();
  const parsed = cedar.preparsePolicySet(id, { staticPolicies: policies });
  const loadMs = performance.now() - started;
  if (parsed.type !== 'success') throw new Error(`cedar rejected the policies: ${JSON.stringify(parsed.errors.slice(0, 3))}`);
  const calls = requests.map((r) => toCedarCall(r, id));
  const n = calls.length;
  const effect = (answer) => {
    if (answer.type !== 'success') throw new Error(`cedar: ${JSON.stringify(answer.errors)}`);
    return answer.response.decision === 'allow' ? 'ALLOW' : 'DENY';
  };
  return {
    name: 'cedar-wasm',
    detail: `${count} policies, cedar ${cedar.getCedarVersion()}`,
    loadMs,
    decide: (i) => effect(cedar.statefulIsAuthorized(calls[i % n])),
    run: (count, offset) => {
      let allows = 0;
      for (let i = 0; i < count; i++) {
        const answer = cedar.statefulIsAuthorized(calls[(offset + i) % n]);
        if (answer.type === 'success' && answer.response.decision === 'allow') allows++;
      }
      return allows;
    },
  };
}

async function casbinEngine(set, requests) {
  const casbin = await importPeer('casbin');
  const { rows, groupings } = toCasbin(set);
  const started = performance.now();
  const enforcer = await casbin.newEnforcer(casbin.newModelFromString(CASBIN_MODEL));
  await enforcer.addPolicies(rows);
  await enforcer.addGroupingPolicies(groupings);
  const loadMs = performance.now() - started;
  const args = requests.map(toCasbinArgs);
  const n = args.length;
  return {
    name: 'casbin',
    detail: `${rows.length} policy rows`,
    loadMs,
    decide: (i) => (enforcer.enforceSync(...args[i % n]) ? 'ALLOW' : 'DENY'),
    run: (count, offset) => {
      let allows = 0;
      for (let i = 0; i < count; i++) if (enforcer.enforceSync(...args[(offset + i) % n])) allows++;
      return allows;
    },
  };
}

const ENGINES = { verdict: verdictEngine, 'cedar-wasm': cedarEngine, casbin: casbinEngine };

// ---------------------------------------------------------------- measuring

/** Runs decisions in chunks until `ms` have passed; returns µs per decision. */
function timed(engine, ms, state) {
  let decided = 0;
  const started = process.hrtime.bigint();
  const limit = BigInt(Math.round(ms * 1e6));
  let elapsed = 0n;
  while (elapsed < limit) {
    engine.run(state.chunk, state.offset);
    state.offset += state.chunk;
    decided += state.chunk;
    elapsed = process.hrtime.bigint() - started;
  }
  const us = Number(elapsed) / 1000 / decided;
  // Aim for chunks of about 2 ms, so the clock is read rarely but rounds end on time.
  state.chunk = Math.max(1, Math.min(100_000, Math.round(2000 / us)));
  return us;
}

/**
 * Builds the three engines on one synthetic set, checks their answers against verdict's
 * on a sample, then times interleaved rounds. Returns per-engine figures.
 */
export async function measureSize(size, { quick, log }) {
  const set = syntheticSet(size);
  const requests = syntheticRequests(set.tenants, REQUESTS_PER_SET);
  const engines = [];
  for (const make of Object.values(ENGINES)) engines.push(await make(set, requests));

  // Equivalence on a sample: cedar-wasm and casbin take milliseconds per decision on the
  // larger sets, so those samples are smaller.
  const sample = size >= 10_000 ? (quick ? 10 : 50) : size >= 1_000 ? (quick ? 100 : 300) : quick ? 1_000 : REQUESTS_PER_SET;
  const [reference, ...others] = engines;
  const expected = Array.from({ length: sample }, (_, i) => reference.decide(i));
  const allowed = expected.filter((e) => e === 'ALLOW').length;
  const equivalence = others.map((engine) => {
    const mismatches = [];
    for (let i = 0; i < sample; i++) {
      const got = engine.decide(i);
      if (got !== expected[i]) mismatches.push({ i, verdict: expected[i], [engine.name]: got, request: requests[i] });
    }
    return { engine: engine.name, sample, agree: sample - mismatches.length, mismatches };
  });
  for (const e of equivalence) {
    log(`  ${size.toLocaleString('en-US')} rules: ${e.engine} agrees with verdict on ${e.agree}/${e.sample} sampled requests (${allowed} allowed by verdict)`);
    for (const m of e.mismatches.slice(0, 3)) log(`    MISMATCH #${m.i}: verdict ${m.verdict}, ${e.engine} ${m[e.engine]}: ${JSON.stringify(m.request)}`);
  }

  const warmMs = quick ? 200 : 1000;
  const roundMs = quick ? 150 : 400;
  const rounds = quick ? 3 : 5;
  const state = new Map(engines.map((e) => [e, { chunk: 1, offset: 0, samples: [] }]));
  for (const e of engines) timed(e, warmMs, state.get(e));
  for (let r = 0; r < rounds; r++) for (const e of engines) state.get(e).samples.push(timed(e, roundMs, state.get(e)));
  const figures = Object.fromEntries(
    engines.map((e) => {
      const s = state.get(e).samples;
      return [e.name, { us: median(s), min: Math.min(...s), max: Math.max(...s), loadMs: e.loadMs, detail: e.detail }];
    }),
  );
  return { size, tenants: set.tenants, figures, equivalence, rounds, roundMs };
}

/** Memory of one engine holding one set: measured in a fresh node process. */
async function rssOf(engine, size) {
  // Tracked, so an interrupted benchmark does not leave it running.
  const child = spawnTracked(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--rss', engine, String(size)], { cwd: ROOT });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const { code, signal } = await child.exited;
  if (code !== 0) throw new Error(`memory probe of ${engine} exited ${code ?? signal}: ${child.output}`);
  return JSON.parse(out.trim().split('\n').at(-1));
}

function procStatusKiB(field) {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) : NaN;
}

async function rssChild(engine, size) {
  // Everything but the set itself: modules loaded, requests built.
  const set = syntheticSet(size);
  const requests = syntheticRequests(set.tenants, REQUESTS_PER_SET);
  if (engine === 'cedar-wasm') await importPeer('@cedar-policy/cedar-wasm/nodejs');
  if (engine === 'casbin') await importPeer('casbin');
  if (engine === 'verdict') await import(path.join(ROOT, 'dist', 'policy', 'load.js'));
  globalThis.gc?.();
  const before = procStatusKiB('VmRSS');
  const e = await ENGINES[engine](set, requests);
  // About a second of decisions (at least 100), so slow engines finish too.
  const deadline = performance.now() + 1000;
  let decided = 0;
  while (decided < 100 || performance.now() < deadline) {
    e.run(10, decided);
    decided += 10;
  }
  globalThis.gc?.();
  const after = procStatusKiB('VmRSS');
  const heap = process.memoryUsage();
  console.log(JSON.stringify({ engine, size, decided, rssMiB: after / 1024, setMiB: (after - before) / 1024, heapUsedMiB: heap.heapUsed / 2 ** 20, externalMiB: (heap.external + heap.arrayBuffers) / 2 ** 20 }));
}

/** The whole comparison: every size, then memory at 10,000 rules. */
export async function runEngines({ quick = false, log = console.log } = {}) {
  const versions = ensurePeers(log, ['@cedar-policy/cedar-wasm', 'casbin']);
  const sizes = [];
  for (const size of SIZES) sizes.push(await measureSize(size, { quick, log }));
  // Quick mode measures verdict's memory only (each peer adds several seconds).
  const memory = [];
  for (const engine of quick ? ['verdict'] : Object.keys(ENGINES)) memory.push(await rssOf(engine, 10_000));
  return { sizes, memory, versions };
}

export function printEngineTable(result, log = console.log) {
  const names = Object.keys(ENGINES);
  const f = (n) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
  log(`| engine | ${SIZES.map((s) => `µs/decision, ${s.toLocaleString('en-US')} rules`).join(' | ')} | verdict is faster by (10 / 1k / 10k) | RSS with 10,000 rules |`);
  log(`|---|${SIZES.map(() => '--:').join('|')}|--:|--:|`);
  for (const name of names) {
    const cells = result.sizes.map((s) => f(s.figures[name].us));
    const ratio = result.sizes.map((s) => `${(s.figures[name].us / s.figures.verdict.us).toFixed(1)}×`).join(' / ');
    const mem = result.memory.find((m) => m.engine === name);
    log(`| ${name} | ${cells.join(' | ')} | ${name === 'verdict' ? '—' : ratio} | ${mem ? `${mem.rssMiB.toFixed(0)} MiB (set: +${mem.setMiB.toFixed(0)} MiB)` : '—'} |`);
  }
  log('');
  for (const s of result.sizes) {
    const parts = names.map((n) => `${n} ${s.figures[n].detail}, loaded in ${s.figures[n].loadMs.toFixed(0)} ms, rounds ${f(s.figures[n].min)}–${f(s.figures[n].max)} µs`);
    log(`- ${s.size.toLocaleString('en-US')} rules (${s.tenants} tenant${s.tenants === 1 ? '' : 's'}): ${parts.join('; ')}`);
  }
  const eq = result.sizes.flatMap((s) => s.equivalence.map((e) => `${e.engine} ${e.agree}/${e.sample} at ${s.size.toLocaleString('en-US')}`));
  log(`- equivalence with verdict before timing: ${eq.join(', ')}`);
  log(`- RSS: a fresh node process holding one engine with the 10,000-rule set after a second of decisions; "set" is the growth over the same process before the set was loaded`);
}

// ---------------------------------------------------------------- CLI

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  if (argv[0] === '--rss') {
    await rssChild(argv[1], Number(argv[2]));
  } else {
    const quick = argv.includes('--quick');
    const cpus = os.cpus();
    console.log(`machine: ${cpus[0]?.model?.trim() ?? 'unknown CPU'}, ${cpus.length} cores, node ${process.version}`);
    const result = await runEngines({ quick });
    console.log(`\nEngines (${quick ? 'quick' : 'full'}; cedar-wasm ${result.versions['@cedar-policy/cedar-wasm']}, casbin ${result.versions.casbin}): median of ${result.sizes[0].rounds} time-boxed rounds of ${result.sizes[0].roundMs} ms, interleaved\n`);
    printEngineTable(result);
    const bad = result.sizes.flatMap((s) => s.equivalence).filter((e) => e.mismatches.length > 0);
    if (bad.length > 0) process.exitCode = 1;
  }
}
