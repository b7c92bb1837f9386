import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start a worker thread on the module `entry` (a relative path without
 * extension) next to the calling module `from` (its import.meta.url).
 *
 * Compiled (production), the entry is the .js file beside the caller. Running
 * from the TypeScript sources (the test runner), it is the .ts file, loaded
 * through the tsx loader registered inside the new thread, so tests run the
 * same threads as production rather than a stand-in in the calling thread.
 */
export function startThread(from: string, entry: string, options: WorkerOptions = {}): Worker {
  if (!from.endsWith('.ts')) return new Worker(new URL(`${entry}.js`, from), options);
  const source = new URL(`${entry}.ts`, from).href;
  // tsx is a development dependency: production never takes this branch.
  const loader = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(loader)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); })`;
  return new Worker(bootstrap, { ...options, eval: true });
}
