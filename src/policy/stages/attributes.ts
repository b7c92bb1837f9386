import { AttributeSchemas, attributeType, type AttributeType, type PartSchema } from '../attribute-schema.js';
import { variableReferences } from '../variables.js';
import type { Enforcement } from '../schema.js';
import type { Stage, StageRun } from '../pipeline.js';
import { diagnosticAt } from '../source.js';
import { variablesOf } from './variables.js';
import { builtFromDocuments, type Located, type LoadState } from './state.js';

/** How many declared attributes are read between pauses: one schema item may declare a hundred thousand. */
const ATTRIBUTES_PER_PAUSE = 500;

/**
 * attributes: the `kind: schema` documents compiled into one AttributeSchemas (none
 * when there are no such documents). A part (the principal, the context, a resource
 * type) is declared once; the enforcement, when several documents give it, is the same
 * in each. Each variable's definition is type-checked against the principal's and the
 * context's attributes here, once, at its own file:line:col. The last load's while no
 * schema or variables document changed (one item may declare 100,000 attributes).
 */
export const attributesStage: Stage<LoadState> = {
  name: 'attributes',
  *run(state) {
    state.attributeSchemas = yield* builtFromDocuments(state, ['schema', 'variables'], state.cache?.attributeSchemas, () => attributeSchemasOf(state));
  },
};

function* attributeSchemasOf(state: LoadState): StageRun<AttributeSchemas | null> {
  let enforcement: { value: Enforcement; where: Located<null> } | null = null;
  let any = false;
  let principal: Map<string, AttributeType> | null = null;
  let context: Map<string, AttributeType> | null = null;
  const resources = new Map<string, Map<string, AttributeType>>();
  const declared = new Map<string, Located<null>>();
  for (const { source, document } of state.documents) {
    const content = document.content;
    if (content?.kind !== 'schema') continue;
    any = true;
    if (content.enforcement !== null) {
      const here = { spec: null, source, path: ['enforcement'] };
      if (enforcement !== null && enforcement.value !== content.enforcement) {
        const at = enforcement.where.source.locate(enforcement.where.path);
        state.diagnostics.push(diagnosticAt(source, ['enforcement'], `enforcement "${content.enforcement}" differs from "${enforcement.value}" at ${enforcement.where.source.file}:${at.line}:${at.col}: a policy set has one`));
      } else enforcement ??= { value: content.enforcement, where: here };
    }
    for (let i = 0; i < content.items.length; i++) {
      const { spec } = content.items.at(i)!.checked;
      if (spec === null) continue;
      const path = ['schemas', i];
      const line = source.locate(path).line;
      const attributes = new Map<string, AttributeType>();
      for (const name in spec.attributes) {
        attributes.set(name, attributeType(spec.attributes[name]!, source.file, line));
        if (attributes.size % ATTRIBUTES_PER_PAUSE === 0) yield;
      }
      const targets = spec.for === 'resource' ? (spec.resourceTypes ?? []).map((t) => `resource type ${t}`) : [spec.for];
      targets.forEach((target, j) => {
        const earlier = declared.get(target);
        if (earlier) {
          const at = earlier.source.locate(earlier.path);
          const where = spec.for === 'resource' ? [...path, 'resourceTypes', j] : [...path, 'for'];
          state.diagnostics.push(diagnosticAt(source, where, `the attributes of ${target} are already declared at ${earlier.source.file}:${at.line}:${at.col}: declare each once`));
          return;
        }
        declared.set(target, { spec: null, source, path });
        if (spec.for === 'principal') principal = attributes;
        else if (spec.for === 'context') context = attributes;
        else resources.set(spec.resourceTypes![j]!, attributes);
      });
      yield;
    }
  }
  if (!any) return null;
  const schemas = new AttributeSchemas(enforcement?.value ?? 'reject', principal as PartSchema | null, context as PartSchema | null, resources);
  for (const variable of variablesOf(state)) {
    yield;
    const { name, expr } = variable.spec;
    const expanded = state.variables.expansions.get(name);
    if (expr === undefined || expanded === undefined) continue;
    // Checked as written when it reads no other variable, so the column is the author's.
    const plain = variableReferences(expr).length === 0;
    const problem = schemas.check(plain ? expr : expanded, null);
    if (problem === null) continue;
    const column = plain && problem.offset !== null ? ` (column ${problem.offset + 1} of the expression)` : '';
    state.diagnostics.push(diagnosticAt(variable.source, [...variable.path, 'expr'], `variable "${name}": ${problem.message}${column}`));
  }
  return schemas;
}
