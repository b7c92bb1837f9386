import type { PolicyDiagnostic } from '../diagnostic.js';
import type { StageRun } from '../pipeline.js';
import type { CompiledRule } from '../policy-set.js';
import { RouteTable } from '../routes.js';
import type { SourceDocument } from '../source.js';
import type { PolicyTestCase } from '../loaded.js';
import type { RoleGraph } from './roles.js';
import type { CheckedDocument, CheckedFile } from './schema.js';

/** A policy file's text, or why it could not be read. */
export type FileText = { readonly file: string; readonly text: string } | { readonly file: string; readonly error: string };

/** How the stages reach the file system and git: straight through (the CLI), or without blocking (the server). */
export interface PolicyReader {
  /** The policy files under `dir`, relative to it with forward slashes, in a stable order. */
  list(dir: string): StageRun<readonly string[]>;
  read(dir: string, files: readonly string[]): StageRun<readonly FileText[]>;
  /** The schema stage's work on each file (parse and check), in order. */
  check(files: readonly { readonly file: string; readonly text: string }[]): StageRun<readonly CheckedFile[]>;
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
}

/** What the stages share: each reads what earlier stages left and adds its own part and its diagnostics. */
export interface LoadState {
  readonly dir: string;
  readonly reader: PolicyReader;
  /** The commit to version the set with; undefined: ask git. */
  readonly gitCommit: string | null | undefined;
  readonly diagnostics: PolicyDiagnostic[];
  /** read */
  texts: readonly FileText[];
  /** schema: every document of every file, in file order. */
  documents: readonly LoadedDocument[];
  /** roles */
  roleGraph: RoleGraph | null;
  /** rules: every rule id claimed, where it was first written. */
  ruleIds: Map<string, Located<unknown>>;
  compiled: CompiledRule[];
  /** routes */
  routes: RouteTable;
  /** tests */
  tests: PolicyTestCase[];
}

export function newLoadState(dir: string, reader: PolicyReader, gitCommit: string | null | undefined): LoadState {
  return {
    dir,
    reader,
    gitCommit,
    diagnostics: [],
    texts: [],
    documents: [],
    roleGraph: null,
    ruleIds: new Map(),
    compiled: [],
    routes: RouteTable.EMPTY,
    tests: [],
  };
}
