import type { Stage } from '../pipeline.js';
import { PolicySet } from '../policy-set.js';
import { policyVersion } from '../version.js';
import { compiledRoles } from './roles.js';
import type { LoadState } from './state.js';

/** assemble: the versioned, indexed policy set, only when no stage found a problem: nothing is half-loaded. */
export const assembleStage: Stage<LoadState> = {
  name: 'assemble',
  *run(state) {
    if (state.diagnostics.length > 0) return;
    const gitCommit = state.gitCommit === undefined ? yield* state.reader.gitCommit(state.dir) : state.gitCommit;
    // Tests and their fixtures decide nothing: adding or renaming a case leaves the content version, and so the decisions' version, as it was.
    const decisive = state.documents.filter((d) => d.document.content?.kind !== 'tests' && d.document.content?.kind !== 'fixtures');
    const version = yield* policyVersion(
      decisive.map((d) => d.document.canonical),
      gitCommit,
    );
    const files = [...new Set(state.documents.map((d) => d.source.file))];
    const roles = compiledRoles(state.roleGraph ?? new Map());
    const policySet = yield* PolicySet.build(version, state.compiled, roles, state.routes, state.cache?.previous ?? null, state.limits, state.attributeSchemas, state.directory);
    state.policies = { policySet, tests: state.tests, files };
  },
};
