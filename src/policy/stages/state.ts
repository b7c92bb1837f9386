import type { PolicyDiagnostic } from '../diagnostic.js';
import type { LoadedPolicies, PolicyTestCase } from '../loaded.js';
import type { StageRun } from '../pipeline.js';
import type { CompiledLimit } from '../limits.js';
import type { IndexPart, PolicySet } from '../policy-set.js';
import type { Reuse } from '../reuse.js';
import type { PolicyKind } from '../schema.js';
import { RouteTable } from '../routes.js';
import { Directory } from '../directory.js';
import type { SourceDocument } from '../source.js';
import type { RoleGraph } from './roles.js';
import { NO_VARIABLES, type VariableTable } from '../variables.js';
import type { ClaimedIds, CompiledDocument } from './rules.js';
import type { AttributeSchemas } from '../attribute-schema.js';
import type { CheckedDocument, CheckedFile } from './schema.js';

/**
 * A policy file's bytes, or why it could not be read. Bytes rather than text: the
 * deciding thread only hashes them, and decodes none but the files that changed
 * (in the thread that checks them).
 */
export type FileContent = { readonly file: string; readonly bytes: Uint8Array } | { readonly file: string; readonly error: string };

/** How the stages reach the file system and git: straight through (the CLI), or without blocking (the server). */
export interface PolicyReader {
  /** The policy files under `dir`, relative to it with forward slashes, in a stable order. */
  list(dir: string): StageRun<readonly string[]>;
  read(dir: string, files: readonly string[]): StageRun<readonly FileContent[]>;
  /** The schema stage's work on each file (decode, parse and check), in order. */
  check(files: readonly { readonly file: string; readonly bytes: Uint8Array }[]): StageRun<readonly CheckedFile[]>;
  /** The commit when `dir` is a clean git work tree, else null. */
  gitCommit(dir: string): StageRun<string | null>;
}

/** Something written somewhere: its spec and where to point when reporting on it. */
export interface Located<T> {
  readonly spec: T;
  readonly source: SourceDocument;
  readonly path: readonly PropertyKey[];
}

/** One checked document and how to locate its nodes. */
export interface LoadedDocument {
  readonly source: SourceDocument;
  readonly document: CheckedDocument;
  /** Names the document's content and place: its file, the hash of the file's text, its index in the file. */
  readonly key: string;
}

/**
 * The work of earlier loads that a load may reuse, each by a key naming all it
 * depends on (a document's key, plus the roles its rules name for compiled rules),
 * so a reuse can never differ from what compiling again would give.
 */
export interface LoadCache {
  /** The schema stage's result for a file, by name and hash of its text. */
  readonly files: Reuse<CheckedFile>;
  /** The variables, by the keys of every variables document. */
  readonly variables: Reuse<VariableTable>;
  /** The attribute schemas, by the keys of every schema and variables document (the variables are type-checked against them). */
  readonly attributeSchemas: Reuse<AttributeSchemas | null>;
  /** The role graph, by the keys of every roles document. */
  readonly roleGraphs: Reuse<RoleGraph>;
  /** A document's compiled rules (sorted), by its key and the holders of the roles it names. */
  readonly compiled: Reuse<CompiledDocument>;
  /** The route table, by the keys of every routes document. */
  readonly routes: Reuse<RouteTable>;
  /** The compiled limits, by the keys of every limits, roles, variables and schema document (what a limit is checked against). */
  readonly limits: Reuse<readonly CompiledLimit[]>;
  /** The directories, by the keys of every principals, resources, roles and schema document (the roles and schema they are checked against). */
  readonly directories: Reuse<Directory>;
  /** The set the last successful load built: its index is reused where the rules are the same. */
  previous: PolicySet | null;
  /** The rule ids the last load claimed (when none was claimed twice): a load claims only those of documents that changed. */
  claimed: ClaimedIds | null;
}

/** What the stages share: each reads what earlier stages left and adds its own part and its diagnostics. */
export interface LoadState {
  readonly dir: string;
  readonly reader: PolicyReader;
  /** The commit to version the set with; undefined: ask git. */
  readonly gitCommit: string | null | undefined;
  /** Null: compile everything (a cold load). */
  readonly cache: LoadCache | null;
  readonly diagnostics: PolicyDiagnostic[];
  /** read */
  contents: readonly FileContent[];
  /** schema: every document of every file, in file order. */
  documents: readonly LoadedDocument[];
  /** schema: each file read and the hash of its text, in order. */
  fingerprint: readonly (readonly [file: string, hash: string])[];
  /** variables: the named conditions and constants `when` conditions read. */
  variables: VariableTable;
  /** attributes: the typed attribute schemas; null when the set declares none. */
  attributeSchemas: AttributeSchemas | null;
  /** roles */
  roleGraph: RoleGraph | null;
  /** directories: the principals and resources files, indexed. */
  directory: Directory;
  /** rules: every rule id claimed, where it was first written. */
  ruleIds: ReadonlyMap<string, unknown>;
  /** rules: the compiled rules of each document, filed for the index. */
  compiled: IndexPart[];
  /** routes */
  routes: RouteTable;
  /** limits */
  limits: readonly CompiledLimit[];
  /** tests */
  tests: PolicyTestCase[];
  /** assemble: null while any stage reported a problem. */
  policies: LoadedPolicies | null;
}

/**
 * What `build` makes of every document of these kinds: the last load's (from `reuse`)
 * when those documents are the same, else built (in slices, as `build` pauses), and
 * kept unless it reported problems. `kinds` names everything the result depends on.
 */
export function* builtFromDocuments<V>(state: LoadState, kinds: readonly PolicyKind[], reuse: Reuse<V> | undefined, build: () => StageRun<V>): StageRun<V> {
  const key = documentKeys(state, kinds);
  const kept = reuse?.take(key);
  if (kept !== undefined) return kept;
  const before = state.diagnostics.length;
  const built = yield* build();
  if (state.diagnostics.length === before) reuse?.put(key, built);
  return built;
}

/** The keys of every document of these kinds, in load order: what a reuse of work built from them is keyed by. */
function documentKeys(state: LoadState, kinds: readonly PolicyKind[]): string {
  return state.documents
    .filter((d) => d.document.content !== null && kinds.includes(d.document.content.kind))
    .map((d) => d.key)
    .join('\n');
}

export function newLoadState(dir: string, reader: PolicyReader, options: { gitCommit?: string | null; cache?: LoadCache | null } = {}): LoadState {
  return {
    dir,
    reader,
    gitCommit: options.gitCommit,
    cache: options.cache ?? null,
    diagnostics: [],
    contents: [],
    documents: [],
    fingerprint: [],
    variables: NO_VARIABLES,
    attributeSchemas: null,
    roleGraph: null,
    directory: Directory.EMPTY,
    ruleIds: new Map(),
    compiled: [],
    routes: RouteTable.EMPTY,
    limits: [],
    tests: [],
    policies: null,
  };
}
