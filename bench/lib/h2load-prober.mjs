// A prober that is a process of its own: h2load sends one check every `intervalMs` over
// one HTTP/2 connection on a fixed schedule (`--rps`, up to 32 checks in flight, so a
// check is sent when it is due whether or not the last one was answered, and a stall
// shows in every check it holds up), and logs each check's send time and latency.
//
// Used where the worst check is the figure (bench/reload.mjs). A prober in a node thread
// (bench/lib/prober.mjs) has pauses of its own: against the same idle server, 30 s at
// 200 checks/s, its worst check was 11.9 and 24.6 ms where h2load's was 4.6 and 3.2 ms
// (README, Policy reloads). h2load sees HTTP statuses only, so a caller that needs every
// answer to be a decision counts the server's decisions beside it.
import { writeFileSync } from 'node:fs';
import { h2loadArgs, readLogRows } from './h2load.mjs';
import { spawnTracked } from './procs.mjs';

/** Long enough for any run; the prober is stopped, not left to finish. */
const MAX_SECONDS = 3600;

/**
 * Starts probing `url` with the framed gRPC message in `bodyFile`, logging to `logFile`.
 * Resolves once h2load runs; `stop()` ends it and resolves the checks it logged, each
 * `{ sent, ms }` with `sent` in milliseconds since the epoch (as `performance.timeOrigin +
 * performance.now()` is), and the number of checks not answered with HTTP 200.
 * @returns {Promise<{ stop(): Promise<{ samples: { sent: number, ms: number }[], failures: number }> }>}
 */
export async function startH2loadProber({ url, bodyFile, intervalMs, logFile }) {
  // h2load appends to its log: start from an empty one.
  writeFileSync(logFile, '');
  const child = spawnTracked('h2load', h2loadArgs({ url, bodyFile, clients: 1, streams: 32, rps: 1000 / intervalMs, duration: MAX_SECONDS, logFile }));
  const spawned = new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error) => reject(new Error(`could not start h2load (${error.message}); install nghttp2-client`)));
  });
  await spawned;
  const stopped = child.exited.then(({ code, signal }) => {
    if (signal !== 'SIGTERM') throw new Error(`the h2load prober stopped by itself (${code ?? signal}):\n${child.output}`);
  });
  return {
    stop: async () => {
      // Checks in flight when it stops are not in its log; the caller's windows end earlier.
      child.kill('SIGTERM');
      await stopped;
      return readProbes(logFile);
    },
  };
}

/** The checks answered with HTTP 200, each `{ sent, ms }`, and how many were not. */
function readProbes(logFile) {
  const samples = [];
  let failures = 0;
  for (const { start, status, micros } of readLogRows(logFile)) {
    if (status !== 200) failures++;
    else samples.push({ sent: start / 1000, ms: micros / 1000 });
  }
  return { samples, failures };
}
