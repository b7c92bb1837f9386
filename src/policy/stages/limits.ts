import { compileLimits } from '../limits.js';
import type { Stage } from '../pipeline.js';
import type { LimitSpec } from '../schema.js';
import type { Located, LoadState } from './state.js';

/** The well-formed limits of every limits document, in the order written. */
export function limitsOf(state: Pick<LoadState, 'documents'>): Located<LimitSpec>[] {
  const limits: Located<LimitSpec>[] = [];
  for (const { source, document } of state.documents) {
    if (document.content?.kind !== 'limits') continue;
    for (let i = 0; i < document.content.items.length; i++) {
      const { checked } = document.content.items.at(i)!;
      if (checked.spec) limits.push({ spec: checked.spec, source, path: ['limits', i] });
    }
  }
  return limits;
}

/** limits: the rate limits of every limits document, compiled (roles, conditions, keys, costs checked, against the attribute schema too). */
export const limitsStage: Stage<LoadState> = {
  name: 'limits',
  *run(state) {
    state.limits = compileLimits(limitsOf(state), state.roleGraph ?? new Map(), state.variables, state.diagnostics, state.attributeSchemas);
  },
};
