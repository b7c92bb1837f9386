import { compileLimits } from '../limits.js';
import type { Stage } from '../pipeline.js';
import type { LimitSpec } from '../schema.js';
import { builtFromDocuments, type Located, type LoadState } from './state.js';

/** The well-formed limits of every limits document, in the order written, each decoded as it is reached. */
export function* limitsOf(state: Pick<LoadState, 'documents'>): Generator<Located<LimitSpec>> {
  for (const { source, document } of state.documents) {
    if (document.content?.kind !== 'limits') continue;
    for (let i = 0; i < document.content.items.length; i++) {
      const { checked } = document.content.items.at(i)!;
      if (checked.spec) yield { spec: checked.spec, source, path: ['limits', i] };
    }
  }
}

/**
 * limits: the rate limits of every limits document, compiled (roles, conditions, keys,
 * costs checked, against the attribute schema too); the last load's while none of what
 * they are checked against changed. Compiling thousands of long conditions takes most
 * of a second, so it pauses after each limit.
 */
export const limitsStage: Stage<LoadState> = {
  name: 'limits',
  *run(state) {
    state.limits = yield* builtFromDocuments(state, ['limits', 'roles', 'variables', 'schema'], state.cache?.limits, () =>
      compileLimits(limitsOf(state), state.roleGraph ?? new Map(), state.variables, state.diagnostics, state.attributeSchemas),
    );
  },
};
