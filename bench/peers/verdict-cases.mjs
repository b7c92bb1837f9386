// The requests on which peers are checked against verdict before anything is timed:
// the benchmark's own request(s) and every case of verdict's example policy tests,
// each with the effect verdict's engine (dist/) gives it on policies/.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The server benchmark's request (bench/server.mjs SAMPLE_REQUEST), as plain JSON. */
export const BENCH_REQUEST = Object.freeze({
  principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
  action: 'predict',
  resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } },
  context: { attributes: {} },
});

/** Loads policies/ with verdict's loader; fails loudly on an invalid set. */
export async function loadExample() {
  const { loadPolicies } = await import(path.join(ROOT, 'dist', 'policy', 'load.js'));
  const { evaluate } = await import(path.join(ROOT, 'dist', 'engine', 'evaluate.js'));
  const result = loadPolicies(path.join(ROOT, 'policies'));
  if (!result.ok) throw new Error(`policies/ is invalid: ${result.diagnostics.map((d) => d.message).join('; ')}`);
  return { policies: result.policies, evaluate };
}

/** [{ name, request, verdict: 'ALLOW' | 'DENY' }]: the benchmark requests, then the example tests. */
export async function exampleCases() {
  const { policies, evaluate } = await loadExample();
  const cases = [
    { name: 'benchmark request: predict (allowed)', request: BENCH_REQUEST },
    { name: 'benchmark request, second action: read (allowed)', request: { ...BENCH_REQUEST, action: 'read' } },
  ];
  for (const t of policies.tests) {
    if (t.http) continue; // HTTP route cases go through the gateway routes, not a plain Check
    cases.push({ name: `${t.suite}: ${t.name}`, request: t.request });
  }
  return cases.map((c) => ({ ...c, verdict: evaluate(policies.policySet, c.request).effect }));
}
