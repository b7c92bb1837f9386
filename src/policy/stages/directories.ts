import type { PolicyDiagnostic } from '../diagnostic.js';
import {
  DEFAULT_PRECEDENCE,
  DIRECTORY_ENTRIES_PER_PAUSE,
  Directory,
  FoldedIds,
  type AttributePrecedence,
  type DirectoryPrecedence,
  type DirectoryPrincipal,
  type DirectoryResource,
  type RolesPrecedence,
} from '../directory.js';
import type { Stage, StageRun } from '../pipeline.js';
import { checkDirectorySchema } from '../directory-schema.js';
import type { PrecedenceSpec } from '../schema.js';
import { diagnosticAt, type SourceDocument } from '../source.js';
import type { Attributes } from '../../types.js';
import { builtFromDocuments, type LoadState } from './state.js';

const NO_ROLES: readonly string[] = Object.freeze([]);
const NO_ATTRIBUTES: Attributes = Object.freeze({});
const NO_KEYS: readonly string[] = Object.freeze([]);

/** Freezes a JSON value all the way down, so a directory entry handed to many decisions cannot be changed by one. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

/** Precedence declared across documents: one value per attribute, the same wherever it is declared. */
class PrecedenceBuilder {
  private roles: { value: RolesPrecedence; where: string } | null = null;
  private readonly attributes = new Map<string, { value: AttributePrecedence; where: string }>();

  constructor(private readonly kind: 'principals' | 'resources') {}

  add(spec: PrecedenceSpec | null, source: SourceDocument, diagnostics: PolicyDiagnostic[]): void {
    if (spec === null) return;
    const at = (path: PropertyKey[]): string => {
      const { line, col } = source.locate(path);
      return `${source.file}:${line}:${col}`;
    };
    if (spec.roles !== undefined) {
      if (this.roles !== null && this.roles.value !== spec.roles) {
        diagnostics.push(diagnosticAt(source, ['precedence', 'roles'], `roles precedence "${spec.roles}" contradicts "${this.roles.value}" declared at ${this.roles.where}`));
      } else this.roles ??= { value: spec.roles, where: at(['precedence', 'roles']) };
    }
    for (const [name, value] of Object.entries(spec.attributes ?? {})) {
      const earlier = this.attributes.get(name);
      if (earlier !== undefined && earlier.value !== value) {
        diagnostics.push(diagnosticAt(source, ['precedence', 'attributes', name], `precedence "${value}" for ${this.kind} attribute "${name}" contradicts "${earlier.value}" declared at ${earlier.where}`));
      } else if (earlier === undefined) this.attributes.set(name, { value, where: at(['precedence', 'attributes', name]) });
    }
  }

  build(): DirectoryPrecedence {
    const requestWins = new Set([...this.attributes].filter(([, p]) => p.value === 'request').map(([name]) => name));
    if (this.roles === null && requestWins.size === 0) return DEFAULT_PRECEDENCE;
    return Object.freeze({ roles: this.roles?.value ?? 'directory', requestWins });
  }
}

/**
 * directories: the principals and resources of every `principals` and `resources`
 * document, indexed by id. A principal or resource listed twice, and a role no roles
 * file defines, are problems located where they are written. The last load's
 * directories are kept while those documents, the roles and the schema are unchanged:
 * indexing 100,000 entries again on every reload left a hundred megabytes of garbage,
 * and one full collection of it took 49.5 ms (100,000 principals, in-process).
 */
export const directoriesStage: Stage<LoadState> = {
  name: 'directories',
  *run(state) {
    state.directory = yield* builtFromDocuments(state, ['principals', 'resources', 'roles', 'schema'], state.cache?.directories, () => indexedDirectory(state));
  },
};

function* indexedDirectory(state: LoadState): StageRun<Directory> {
  const principals = new Map<string, DirectoryPrincipal>();
  const resources = new Map<string, Map<string, DirectoryResource>>();
  const foldedPrincipals = new FoldedIds();
  const foldedResources = new Map<string, FoldedIds>();
  let resourceCount = 0;
  const principalPrecedence = new PrecedenceBuilder('principals');
  const resourcePrecedence = new PrecedenceBuilder('resources');
  const roles = state.roleGraph;
  let done = 0;
  for (const { source, document } of state.documents) {
    const content = document.content;
    if (content?.kind === 'principals') {
      principalPrecedence.add(content.precedence, source, state.diagnostics);
      for (let i = 0; i < content.items.length; i++) {
        if (++done % DIRECTORY_ENTRIES_PER_PAUSE === 0) yield;
        const spec = content.items.at(i)!.checked.spec;
        if (!spec) continue;
        const at = source.locate(['principals', i]);
        const earlier = principals.get(spec.id);
        if (earlier !== undefined) {
          state.diagnostics.push(diagnosticAt(source, ['principals', i, 'id'], `duplicate principal "${spec.id}": already listed at ${earlier.file}:${earlier.line}:${earlier.col}`));
          continue;
        }
        const listed = spec.roles ?? NO_ROLES;
        listed.forEach((role, j) => {
          if (roles !== null && !roles.has(role)) state.diagnostics.push(diagnosticAt(source, ['principals', i, 'roles', j], `unknown role "${role}": define it in a roles file or fix the name`));
        });
        const attributes = spec.attributes === undefined ? NO_ATTRIBUTES : deepFreeze(spec.attributes as Attributes);
        const keys = spec.attributes === undefined ? NO_KEYS : Object.freeze(Object.keys(attributes));
        const granted = listed.length === 0 ? NO_ROLES : Object.freeze([...new Set(listed)]);
        const asPrincipal = Object.freeze({ id: spec.id, roles: granted, attributes });
        principals.set(spec.id, { id: spec.id, roles: granted, attributes, keys, asPrincipal, file: source.file, line: at.line, col: at.col });
        foldedPrincipals.add(spec.id);
      }
    } else if (content?.kind === 'resources') {
      resourcePrecedence.add(content.precedence, source, state.diagnostics);
      for (let i = 0; i < content.items.length; i++) {
        if (++done % DIRECTORY_ENTRIES_PER_PAUSE === 0) yield;
        const spec = content.items.at(i)!.checked.spec;
        if (!spec) continue;
        const at = source.locate(['resources', i]);
        let byId = resources.get(spec.type);
        if (!byId) resources.set(spec.type, (byId = new Map()));
        let foldedIds = foldedResources.get(spec.type);
        if (!foldedIds) foldedResources.set(spec.type, (foldedIds = new FoldedIds()));
        const earlier = byId.get(spec.id);
        if (earlier !== undefined) {
          state.diagnostics.push(diagnosticAt(source, ['resources', i, 'id'], `duplicate resource ${spec.type} "${spec.id}": already listed at ${earlier.file}:${earlier.line}`));
          continue;
        }
        const attributes = spec.attributes === undefined ? NO_ATTRIBUTES : deepFreeze(spec.attributes as Attributes);
        const keys = spec.attributes === undefined ? NO_KEYS : Object.freeze(Object.keys(attributes));
        const asResource = Object.freeze({ type: spec.type, id: spec.id, attributes });
        byId.set(spec.id, { type: spec.type, id: spec.id, attributes, keys, asResource, file: source.file, line: at.line, col: at.col });
        foldedIds.add(spec.id);
        resourceCount++;
      }
    }
  }
  const directory =
    principals.size === 0 && resourceCount === 0 ? Directory.EMPTY : new Directory(principals, resources, resourceCount, principalPrecedence.build(), resourcePrecedence.build(), { principals: foldedPrincipals, resources: foldedResources });
  // An entry whose attribute breaks the schema makes every request naming it refused (reject): an error at load, not a surprise when served.
  if (state.attributeSchemas?.enforcement === 'reject') {
    for (const problem of yield* checkDirectorySchema(directory, state.attributeSchemas)) state.diagnostics.push(problem);
  }
  return directory;
}
