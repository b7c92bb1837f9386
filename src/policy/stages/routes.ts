import type { Stage } from '../pipeline.js';
import { compileRoutes, type LocatedRoute } from '../routes.js';
import type { LoadState } from './state.js';

/** The well-formed routes of every routes document, in the order written. */
export function routesOf(state: Pick<LoadState, 'documents'>): LocatedRoute[] {
  const routes: LocatedRoute[] = [];
  for (const { source, document } of state.documents) {
    if (document.content?.kind !== 'routes') continue;
    document.content.items.forEach(({ checked }, i) => {
      if (checked.spec) routes.push({ spec: checked.spec, source, path: ['routes', i] });
    });
  }
  return routes;
}

/** routes: the HTTP route table of every routes document. */
export const routesStage: Stage<LoadState> = {
  name: 'routes',
  *run(state) {
    state.routes = compileRoutes(routesOf(state), state.diagnostics);
  },
};
