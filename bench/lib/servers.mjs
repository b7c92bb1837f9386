// Starting the servers the benchmarks measure, on free loopback ports, with one retry
// when a port is taken between choosing it and binding it.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, spawnTracked, stopChild, waitForHttp200, waitUntil } from './procs.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const HOST = '127.0.0.1';

/**
 * `verdict serve` on the shipped policies; `workers` > 1 for the cluster mode; `nodeArgs` go to node itself (e.g. --cpu-prof);
 * `root` is another checkout of verdict (a baseline build), whose policies and binary are used.
 */
export async function startVerdict({ mode, dbFile, workers = 1, root = ROOT, verdictBin = path.join(root, 'bin', 'verdict.js'), nodeArgs = [], policies = path.join(root, 'policies'), extraArgs = [], configFile = null }) {
  for (let attempt = 1; ; attempt++) {
    const grpcPort = await freePort();
    const httpPort = await freePort();
    const args = [...nodeArgs, verdictBin, 'serve', '--policies', policies, '--db', dbFile,
      '--grpc', `${HOST}:${grpcPort}`, '--http', `${HOST}:${httpPort}`, '--log-level', 'warn'];
    if (mode === 'async') args.push('--decision-log', 'async');
    if (workers > 1) args.push('--workers', String(workers));
    args.push(...extraArgs);
    if (configFile !== null) args.push('--config', configFile);
    const child = spawnTracked(process.execPath, args, { cwd: root });
    try {
      await waitForHttp200(child, `http://${HOST}:${httpPort}/readyz`, 'verdict serve');
      return { child, grpcPort, httpPort, args };
    } catch (error) {
      await stopChild(child, 2000);
      // A port taken between freePort() and the bind: try once more with new ports.
      if (attempt < 2 && /in use|EADDRINUSE/i.test(String(error.message))) continue;
      throw error;
    }
  }
}

/** The bare grpc-js server that answers every call with `responseBytes`: the transport's ceiling. */
export async function startCeiling(responseBytes) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawnTracked(process.execPath, [path.join(ROOT, 'bench', 'lib', 'ceiling-server.mjs'), `${HOST}:${port}`, responseBytes.toString('hex')], { cwd: ROOT });
    try {
      await waitUntil(child, async () => /listening \d+/.test(child.output), 'bare grpc-js server');
      return { child, grpcPort: port };
    } catch (error) {
      await stopChild(child, 2000);
      if (attempt < 2 && /in use|EADDRINUSE/i.test(String(error.message))) continue;
      throw error;
    }
  }
}
