// Summarises a V8 .cpuprofile (from node --cpu-prof): self time per function and per
// source file. Time in native code (better-sqlite3's C++ side, crypto, ...) shows up as
// the self time of the JS function that called it.
import fs from 'node:fs';
import path from 'node:path';

export function topSelfTime(file, limit = 10, root = process.cwd()) {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMicros = new Map();
  const { samples, timeDeltas } = profile;
  // timeDeltas[i + 1] is the time from sample i to the next one; charge it to sample i's node.
  for (let i = 0; i < samples.length; i++) {
    const delta = timeDeltas[i + 1] ?? 0;
    selfMicros.set(samples[i], (selfMicros.get(samples[i]) ?? 0) + Math.max(0, delta));
  }
  const byFunction = new Map();
  const byFile = new Map();
  let busy = 0;
  let idle = 0;
  for (const [id, micros] of selfMicros) {
    const frame = byId.get(id).callFrame;
    if (frame.functionName === '(idle)') {
      idle += micros;
      continue;
    }
    let where = frame.url ? frame.url.replace(/^file:\/\//, '') : '';
    if (where.startsWith(root)) where = path.relative(root, where);
    const name = frame.functionName || '(anonymous)';
    const key = where ? `${name}  ${where}:${frame.lineNumber + 1}` : name;
    byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
    const fileKey = where || name;
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + micros);
    busy += micros;
  }
  const top = (map) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([name, micros]) => ({ name, ms: micros / 1000, share: micros / busy }));
  return { busyMs: busy / 1000, idleMs: idle / 1000, functions: top(byFunction), files: top(byFile) };
}
