import { LOAD_STAGES, resultOf } from './load.js';
import type { LoadResult } from './loaded.js';
import { runStagesInSlices, type SliceSharing, type SliceStats } from './pipeline.js';
import { Reuse } from './reuse.js';
import { newLoadState, type LoadCache, type PolicyReader } from './stages/state.js';

/** A load by the compiler, and what it cost the event loop. */
export interface Compilation {
  readonly result: LoadResult;
  /** Each file read and the hash of its text: what the load saw. */
  readonly fingerprint: readonly (readonly [file: string, hash: string])[];
  /** How the load shared the event loop: its longest slice (waiting for I/O excluded), in which stage, and its longest collection. */
  readonly slices: SliceStats;
}

/**
 * How long a slice of compilation may hold the event loop before checks get a turn.
 * A step already running finishes past it, so the longest holds run a few ms over. At
 * 3 ms (the young generation paced at 1 MB) the worst check of one-file reloads was
 * 8.0–18.9 ms over the median at rest in nine runs of bench/reload.mjs, two of them
 * within 10 ms; at 2 ms (paced at half a megabyte) 7.8–13.3 ms in eight, five within
 * (README, Policy reloads).
 */
export const DEFAULT_SLICE_MS = 2;

/**
 * Loads one policy directory again and again, incrementally: every load reads
 * every file, but a file whose text did not change is not parsed or checked again,
 * a document's compiled rules are reused while the document and the roles it names
 * are unchanged, the variables, attribute schemas, role graph, route table, limits and
 * directories while the documents they read are (see LoadCache), and
 * the new set's index takes over the lookup tables of unchanged resource types.
 * Whatever is reused is keyed by everything it depends on, so the result is the
 * same as a cold load's. Work runs in slices that yield to the event loop.
 */
export class PolicyCompiler {
  private readonly cache: LoadCache = {
    files: new Reuse(),
    variables: new Reuse(),
    attributeSchemas: new Reuse(),
    roleGraphs: new Reuse(),
    compiled: new Reuse(),
    routes: new Reuse(),
    limits: new Reuse(),
    directories: new Reuse(),
    previous: null,
    claimed: null,
  };

  constructor(
    readonly dir: string,
    private readonly reader: PolicyReader,
    private readonly sliceMs = DEFAULT_SLICE_MS,
  ) {}

  /**
   * Loads the directory; `gitCommit` (when given) versions the set instead of asking git;
   * `sharing` says how the slices share the thread with the checks (see SliceSharing).
   * @throws VerdictError (POLICY_DIR_MISSING) when the directory is gone; the cache is kept
   */
  async compile(options: { gitCommit?: string | null; sharing?: SliceSharing } = {}): Promise<Compilation> {
    const state = newLoadState(this.dir, this.reader, { gitCommit: options.gitCommit, cache: this.cache });
    const reuses = [this.cache.files, this.cache.variables, this.cache.attributeSchemas, this.cache.roleGraphs, this.cache.compiled, this.cache.routes, this.cache.limits, this.cache.directories];
    let slices: SliceStats;
    try {
      slices = await runStagesInSlices(LOAD_STAGES, state, this.sliceMs, options.sharing);
    } catch (error) {
      for (const reuse of reuses) reuse.abandonLoad();
      throw error;
    }
    for (const reuse of reuses) reuse.endLoad();
    const result = resultOf(state);
    if (result.ok) this.cache.previous = result.policies.policySet;
    return { result, fingerprint: state.fingerprint, slices };
  }
}
