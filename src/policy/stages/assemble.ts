import type { Stage } from '../pipeline.js';
import { PolicySet } from '../policy-set.js';
import { policyVersion } from '../version.js';
import { compiledRoles } from './roles.js';
import type { LoadState } from './state.js';
import type { LoadedPolicies } from '../loaded.js';

/** The loaded policies once every stage has run; null while any stage reported a problem. */
export interface AssembledState extends LoadState {
  policies: LoadedPolicies | null;
}

/** assemble: the versioned, indexed policy set, only when no stage found a problem: nothing is half-loaded. */
export const assembleStage: Stage<AssembledState> = {
  name: 'assemble',
  *run(state) {
    if (state.diagnostics.length > 0) return;
    const gitCommit = state.gitCommit === undefined ? yield* state.reader.gitCommit(state.dir) : state.gitCommit;
    const version = policyVersion(state.documents.map((d) => d.document.canonical), gitCommit);
    const files = [...new Set(state.documents.map((d) => d.source.file))];
    const policySet = new PolicySet(version, state.compiled, compiledRoles(state.roleGraph ?? new Map()), state.routes);
    state.policies = { policySet, tests: state.tests, files };
  },
};
