import type { Stage } from '../pipeline.js';
import { buildVariableTable, type LocatedVariable } from '../variables.js';
import { builtFromDocuments, type LoadState } from './state.js';

/** The well-formed variables of every variables document, in the order written, each decoded as it is reached. */
export function* variablesOf(state: Pick<LoadState, 'documents'>): Generator<LocatedVariable> {
  for (const { source, document } of state.documents) {
    if (document.content?.kind !== 'variables') continue;
    for (let i = 0; i < document.content.items.length; i++) {
      const { checked } = document.content.items.at(i)!;
      if (checked.spec) yield { spec: checked.spec, source, path: ['variables', i] };
    }
  }
}

/**
 * variables: the named conditions and constants, each checked once; unknown names,
 * cycles and expressions that do not compile are diagnostics. The last load's while no
 * variables document changed (3,000 variables take tens of milliseconds to check);
 * its key is part of each compiled document's, so changed variables recompile the rules.
 */
export const variablesStage: Stage<LoadState> = {
  name: 'variables',
  *run(state) {
    state.variables = yield* builtFromDocuments(state, ['variables'], state.cache?.variables, () => buildVariableTable(variablesOf(state), state.diagnostics));
  },
};
