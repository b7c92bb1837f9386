#!/usr/bin/env node
// API-key verification timing: microseconds per ApiKeyStore.verify() for a known key
// id with a wrong secret, an unknown id, and the right key, on a store of 1,000 keys.
// The first two must cost the same (an attacker must not learn which ids exist);
// their ratio is printed, never asserted. Rounds are interleaved so machine noise
// hits the cases alike; the median round is reported.
//
//   node bench/api-keys.mjs            full run
//   node bench/api-keys.mjs --quick    fewer, shorter rounds
//
// Needs the build (dist/): `make bench` builds first.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { newApiKey } from '../dist/authn/api-key-format.js';
import { ApiKeyStore } from '../dist/authn/api-keys.js';

const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 5 : 15;
const CALLS = QUICK ? 20_000 : 100_000;
const KEYS = 1000;

const dir = mkdtempSync(join(os.tmpdir(), 'verdict-bench-keys-'));
try {
  const store = ApiKeyStore.open(join(dir, 'keys.db'));
  const made = [];
  for (let i = 0; i < KEYS; i++) {
    made.push(store.create({ owner: `svc-${i}`, name: `key ${i}`, roles: ['data_scientist'], attributes: { org: 'acme', tier: 'gold' }, scopes: ['predict'] }));
  }
  const known = made[KEYS >> 1];
  const cases = {
    'known id, wrong secret': newApiKey(known.info.id).key,
    'unknown id': newApiKey().key,
    'right key': known.key,
  };
  const samples = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
  const time = (key) => {
    const started = process.hrtime.bigint();
    for (let i = 0; i < CALLS; i++) store.verify(key);
    return Number(process.hrtime.bigint() - started) / 1000 / CALLS;
  };
  for (const key of Object.values(cases)) time(key); // warm-up
  for (let round = 0; round < ROUNDS; round++) for (const [name, key] of Object.entries(cases)) samples[name].push(time(key));
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  console.log(`API-key verify, ${KEYS} keys in the store, median of ${ROUNDS} rounds of ${CALLS} calls (${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores; a shared machine is noisy)\n`);
  console.log('| case | µs per verify |');
  console.log('| --- | ---: |');
  const m = {};
  for (const name of Object.keys(cases)) {
    m[name] = median(samples[name]);
    console.log(`| ${name} | ${m[name].toFixed(2)} |`);
  }
  console.log(`\nunknown id / known id with a wrong secret: ${(m['unknown id'] / m['known id, wrong secret']).toFixed(2)}`);
  store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
