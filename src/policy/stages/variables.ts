import type { Stage } from '../pipeline.js';
import { buildVariableTable, type LocatedVariable } from '../variables.js';
import type { LoadState } from './state.js';

/** The well-formed variables of every variables document, in the order written. */
export function variablesOf(state: Pick<LoadState, 'documents'>): LocatedVariable[] {
  const variables: LocatedVariable[] = [];
  for (const { source, document } of state.documents) {
    if (document.content?.kind !== 'variables') continue;
    for (let i = 0; i < document.content.items.length; i++) {
      const { checked } = document.content.items.at(i)!;
      if (checked.spec) variables.push({ spec: checked.spec, source, path: ['variables', i] });
    }
  }
  return variables;
}

/**
 * variables: the named conditions and constants, each checked once; unknown names,
 * cycles and expressions that do not compile are diagnostics. Cheap, so built every load;
 * its key is part of each compiled document's, so changed variables recompile the rules.
 */
export const variablesStage: Stage<LoadState> = {
  name: 'variables',
  *run(state) {
    state.variables = buildVariableTable(variablesOf(state), state.diagnostics);
  },
};
