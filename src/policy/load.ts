import { sortDiagnostics } from './diagnostic.js';
import { runStages, type Stage } from './pipeline.js';
import { assembleStage } from './stages/assemble.js';
import { attributesStage } from './stages/attributes.js';
import { directoriesStage } from './stages/directories.js';
import { readStage, syncReader } from './stages/read.js';
import { limitsStage } from './stages/limits.js';
import { rolesStage } from './stages/roles.js';
import { routesStage } from './stages/routes.js';
import { rulesStage } from './stages/rules.js';
import { schemaStage } from './stages/schema.js';
import { newLoadState, type LoadState } from './stages/state.js';
import { testsStage } from './stages/tests.js';
import { variablesStage } from './stages/variables.js';
import type { LoadResult } from './loaded.js';

export type { LoadedPolicies, LoadResult, PolicyTestCase } from './loaded.js';
export { permissionRuleId } from './stages/rules.js';


/**
 * The stages of a load, in order. Each adds its diagnostics and goes on, so one
 * run reports every problem of every stage; only the last assembles a policy set,
 * and only when there are none.
 */
export const LOAD_STAGES: readonly Stage<LoadState>[] = [readStage, schemaStage, variablesStage, attributesStage, rolesStage, directoriesStage, rulesStage, routesStage, limitsStage, testsStage, assembleStage];

/**
 * Reads, validates and compiles a policy directory, in this thread. Every problem
 * in every file is reported together, sorted by file and position; nothing is
 * compiled unless the whole directory is valid.
 * @throws VerdictError (POLICY_DIR_MISSING) when `dir` is not a directory
 */
export function loadPolicies(dir: string, options: { gitCommit?: string | null } = {}): LoadResult {
  const state = newLoadState(dir, syncReader, { gitCommit: options.gitCommit });
  runStages(LOAD_STAGES, state);
  return resultOf(state);
}

/** The outcome of a load whose stages have all run. */
export function resultOf(state: LoadState): LoadResult {
  if (state.policies === null) return { ok: false, diagnostics: sortDiagnostics(state.diagnostics) };
  return { ok: true, policies: state.policies };
}
