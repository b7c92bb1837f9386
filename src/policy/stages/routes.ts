import type { Stage } from '../pipeline.js';
import { compileRoutes, type LocatedRoute } from '../routes.js';
import { builtFromDocuments, type LoadState } from './state.js';

/** The well-formed routes of every routes document, in the order written, each decoded as it is reached. */
export function* routesOf(state: Pick<LoadState, 'documents'>): Generator<LocatedRoute> {
  for (const { source, document } of state.documents) {
    if (document.content?.kind !== 'routes') continue;
    for (let i = 0; i < document.content.items.length; i++) {
      const { checked } = document.content.items.at(i)!;
      if (checked.spec) yield { spec: checked.spec, source, path: ['routes', i] };
    }
  }
}

/** routes: the HTTP route table of every routes document; the last load's when no routes document changed. */
export const routesStage: Stage<LoadState> = {
  name: 'routes',
  *run(state) {
    state.routes = yield* builtFromDocuments(state, ['routes'], state.cache?.routes, () => compileRoutes(routesOf(state), state.diagnostics));
  },
};
