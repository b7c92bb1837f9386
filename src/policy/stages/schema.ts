import type { z } from 'zod';
import type { PolicyDiagnostic } from '../diagnostic.js';
import {
  documentSchemas,
  itemSchemas,
  KNOWN_KINDS,
  type PolicyKind,
  type RoleSpec,
  type RouteSpec,
  type RuleSpec,
  type TestCaseSpec,
  type TestSuiteSpec,
  type VariableSpec,
  type LimitSpec,
  type AttributeSchemaSpec,
  type Enforcement,
  type FixturesSpec,
  type DirectoryPrincipalSpec,
  type DirectoryResourceSpec,
  type PrecedenceSpec,
} from '../schema.js';
import {
  diagnosticAt,
  diagnosticAtKey,
  emptyPositions,
  lookupKey,
  lookupNode,
  parseYamlFile,
  pathKey,
  type Position,
  type PositionTable,
  type SourceDocument,
} from '../source.js';
import { fileHash } from '../hash-in-pieces.js';
import type { Stage } from '../pipeline.js';
import { conditionsReadRoles } from '../effective-roles.js';
import { canonicalJson, type CanonicalText } from '../version.js';
import type { LoadedDocument, LoadState } from './state.js';

/** An item that passed its schema, or the raw value of one that did not (still checked across files where it can be). */
export type Checked<T> = { readonly spec: T; readonly raw?: undefined } | { readonly spec: null; readonly raw: unknown };

/** One item of a document's list (a rule, a role, a route, a test case), with the positions of its nodes relative to it. */
export interface CheckedItem<T> {
  readonly checked: Checked<T>;
  readonly positions: PositionTable;
}

/**
 * The items of a document. An array in the thread that checked the file; items
 * checked in another thread cross as bytes and are decoded one at a time, when a
 * stage needs them (see file-checker.ts).
 */
export interface ItemList<T> {
  readonly length: number;
  at(index: number): T | undefined;
}

export type DocumentContent =
  | {
      readonly kind: 'rules';
      readonly items: ItemList<CheckedItem<RuleSpec>>;
      /** The roles the well-formed rules name, in the order first named. */
      readonly roleNames: readonly string[];
    }
  | {
      readonly kind: 'roles';
      readonly items: ItemList<CheckedItem<RoleSpec>>;
      /** The roles defined, well-formed or not, in the order written. */
      readonly roleNames: readonly string[];
    }
  | { readonly kind: 'routes'; readonly items: ItemList<CheckedItem<RouteSpec>> }
  | { readonly kind: 'variables'; readonly items: ItemList<CheckedItem<VariableSpec>> }
  | { readonly kind: 'limits'; readonly items: ItemList<CheckedItem<LimitSpec>> }
  | { readonly kind: 'fixtures'; readonly fixtures: FixturesSpec | null; readonly items: ItemList<CheckedItem<never>> }
  | { readonly kind: 'schema'; readonly enforcement: Enforcement | null; readonly items: ItemList<CheckedItem<AttributeSchemaSpec>> }
  /** `precedence` is null when the document gives none or its fields are invalid. */
  | { readonly kind: 'principals'; readonly precedence: PrecedenceSpec | null; readonly items: ItemList<CheckedItem<DirectoryPrincipalSpec>> }
  | { readonly kind: 'resources'; readonly precedence: PrecedenceSpec | null; readonly items: ItemList<CheckedItem<DirectoryResourceSpec>> }
  /** `suite` is null when the file's own fields (name, fixtures) are invalid: its cases are then only schema-checked. */
  | { readonly kind: 'tests'; readonly suite: TestSuiteSpec | null; readonly items: ItemList<CheckedItem<TestCaseSpec>> };

export interface CheckedDocument {
  readonly index: number;
  /** The document as canonical JSON: what the content version hashes. */
  readonly canonical: CanonicalText;
  /** Whether a condition of a rules or roles document may read the principal's roles (its rules then compile in the role graph); false for other kinds. */
  readonly conditionsReadRoles: boolean;
  /** Positions of the nodes outside the items. */
  readonly positions: PositionTable;
  /** Null when the document has no usable kind or no list of items. */
  readonly content: DocumentContent | null;
}

/**
 * One policy file after the schema stage: its documents parsed and checked
 * against their kind's schema, with every problem found. Plain data, so a file
 * can be checked in another thread, and a pure function of the file's name and
 * text, so it can be kept for as long as the text does not change.
 */
export interface CheckedFile {
  readonly file: string;
  readonly diagnostics: readonly PolicyDiagnostic[];
  readonly documents: readonly CheckedDocument[];
}

/** Parses one file and checks each of its documents against the schema of its kind. */
export function checkFile(file: string, text: string): CheckedFile {
  const diagnostics: PolicyDiagnostic[] = [];
  const listOf = (value: unknown): string | null => {
    const kind = documentKind(value);
    return kind === null ? null : itemSchemas[kind].list;
  };
  const documents = parseYamlFile(file, text, diagnostics, listOf).map((parsed): CheckedDocument => {
    const kind = documentKind(parsed.value);
    const list = kind === null ? null : itemSchemas[kind].list;
    const { outside, items } = parsed.items !== undefined && parsed.items.list === list ? { outside: parsed.positions, items: parsed.items.tables } : splitPositions(parsed.positions, list);
    const located = new LocatedDocument(file, parsed.index, outside, (i) => items.get(i)?.positions ?? null, list);
    const content = checkDocument(parsed.value, kind, located, items, diagnostics);
    const canonical = canonicalJson(parsed.value);
    // Only rules and roles documents are compiled with the role graph in mind (stages/rules.ts).
    const readsRoles = (kind === 'rules' || kind === 'roles') && conditionsReadRoles(canonical);
    return { index: parsed.index, canonical, conditionsReadRoles: readsRoles, positions: outside, content };
  });
  return { file, diagnostics, documents };
}

function documentKind(value: unknown): PolicyKind | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const kind = (value as { kind?: unknown }).kind;
  return typeof kind === 'string' && (KNOWN_KINDS as readonly string[]).includes(kind) ? (kind as PolicyKind) : null;
}

function checkDocument(
  value: unknown,
  kind: PolicyKind | null,
  source: SourceDocument,
  itemPositions: ReadonlyMap<number, { positions: PositionTable }>,
  diagnostics: PolicyDiagnostic[],
): DocumentContent | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    diagnostics.push(diagnosticAt(source, [], `a policy document must be a mapping with a "kind" (one of ${KNOWN_KINDS.join(', ')})`));
    return null;
  }
  const written = (value as { kind?: unknown }).kind;
  if (written === undefined) {
    diagnostics.push(diagnosticAt(source, [], `missing "kind": say which kind of document this is (${KNOWN_KINDS.join(', ')})`));
    return null;
  }
  if (kind === null) {
    diagnostics.push(diagnosticAt(source, ['kind'], `unknown kind ${JSON.stringify(written)}: expected one of ${KNOWN_KINDS.join(', ')}`));
    return null;
  }
  // The document's own fields first; its items are checked one by one even when those fail, so that
  // one run reports every error.
  const envelope = checkValue(documentSchemas[kind] as z.ZodType, value, source, [], diagnostics);
  if (kind === 'fixtures') {
    const fixtures = envelope as (FixturesSpec & { kind?: unknown }) | null;
    return { kind, fixtures: fixtures && { name: fixtures.name, description: fixtures.description, principals: fixtures.principals, resources: fixtures.resources }, items: [] };
  }
  const { list, schema } = itemSchemas[kind];
  const listed = (value as Record<string, unknown>)[list];
  if (!Array.isArray(listed)) return null;
  const items = listed.map((item: unknown, i) => {
    const spec = checkValue(schema as z.ZodType, item, source, [list, i], diagnostics);
    const checked = spec === null ? { spec: null, raw: item } : { spec };
    return { checked, positions: itemPositions.get(i)?.positions ?? emptyPositions() };
  });
  switch (kind) {
    case 'tests': {
      const suite = envelope as (TestSuiteSpec & { cases?: unknown; kind?: unknown }) | null;
      const fixtures: TestSuiteSpec | null = suite && { name: suite.name, description: suite.description, fixtures: suite.fixtures, principals: suite.principals, resources: suite.resources };
      return { kind, suite: fixtures, items: items as CheckedItem<TestCaseSpec>[] };
    }
    case 'rules': {
      const rules = items as CheckedItem<RuleSpec>[];
      const named = new Set<string>();
      for (const { checked } of rules) for (const role of [...(checked.spec?.principal?.roles ?? []), ...(checked.spec?.principal?.notRoles ?? [])]) named.add(role);
      return { kind, items: rules, roleNames: [...named] };
    }
    case 'roles': {
      const roles = items as CheckedItem<RoleSpec>[];
      return { kind, items: roles, roleNames: roles.map(({ checked }) => nameOf(checked)).filter((n): n is string => n !== null) };
    }
    case 'routes':
      return { kind, items: items as CheckedItem<RouteSpec>[] };
    case 'variables':
      return { kind, items: items as CheckedItem<VariableSpec>[] };
    case 'limits':
      return { kind, items: items as CheckedItem<LimitSpec>[] };
    case 'schema':
      return { kind, enforcement: (envelope as { enforcement?: Enforcement } | null)?.enforcement ?? null, items: items as CheckedItem<AttributeSchemaSpec>[] };
    case 'principals':
    case 'resources': {
      const precedence = (envelope as { precedence?: PrecedenceSpec } | null)?.precedence ?? null;
      return kind === 'principals'
        ? { kind, precedence, items: items as CheckedItem<DirectoryPrincipalSpec>[] }
        : { kind, precedence, items: items as CheckedItem<DirectoryResourceSpec>[] };
    }
  }
}

const stringField = (raw: unknown, field: string): string | null => {
  const value = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>)[field] : undefined;
  return typeof value === 'string' ? value : null;
};
const nameOf = (checked: Checked<RoleSpec>): string | null => (checked.spec ? checked.spec.name : stringField(checked.raw, 'name'));

/** Validates a document or one item, turning schema issues into located diagnostics. */
function checkValue<T>(schema: z.ZodType<T>, value: unknown, source: SourceDocument, at: readonly PropertyKey[], diagnostics: PolicyDiagnostic[]): T | null {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  for (const issue of result.error.issues.flatMap(unwrapUnion)) {
    const path = [...at, ...(issue.path as PropertyKey[])];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) diagnostics.push(diagnosticAtKey(source, [...path, key], `unknown key "${key}"`));
      continue;
    }
    diagnostics.push(diagnosticAt(source, path, issueMessage(issue, valueAt(value, issue.path as PropertyKey[]), path)));
  }
  return null;
}

/**
 * A union without a message of its own (zod's "Invalid input") whose forms all but one
 * reject the value's very shape (a map where a list is wanted): the issues of that one
 * form, which is the one the author wrote, e.g. `expect.effect` rather than `expect`.
 */
function unwrapUnion(issue: z.core.$ZodIssue): z.core.$ZodIssue[] {
  if (issue.code !== 'invalid_union' || issue.message !== 'Invalid input') return [issue];
  const fitting = issue.errors.filter((errors) => !errors.every((e) => e.code === 'invalid_type' && e.path.length === 0));
  if (fitting.length !== 1) return [issue];
  return fitting[0]!.map((e) => ({ ...e, path: [...issue.path, ...e.path] }) as z.core.$ZodIssue);
}

const KIND_NAMES: Readonly<Record<string, string>> = {
  array: 'a list (e.g. [read, write])',
  object: 'a map of keys to values',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
};

/** What an author wrote, in their words: a YAML list is a list, not an array. */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `${typeof value} ${String(value)}`;
}

/** Schema issues said the way a policy author reads them, naming the field and what it should be. */
function issueMessage(issue: z.core.$ZodIssue, received: unknown, path: readonly PropertyKey[]): string {
  const last = path.length > 0 ? String(path[path.length - 1]) : 'the document';
  const field = typeof path[path.length - 1] === 'number' ? `item ${last}` : `"${last}"`;
  if (issue.code === 'invalid_type') {
    if (received === undefined) return `${field} is required`;
    const expected = KIND_NAMES[issue.expected] ?? issue.expected;
    return `${field} must be ${expected}, not ${kindOf(received)}`;
  }
  if (issue.message.includes('received undefined')) return `${field} is required`;
  return issue.message;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** Splits a document's positions into those of each item of its list (relative to the item) and the rest. */
function splitPositions(table: PositionTable, list: string | null): { outside: PositionTable; items: Map<number, { positions: PositionTable }> } {
  const items = new Map<number, { positions: PositionTable }>();
  if (list === null) return { outside: table, items };
  const outside = emptyPositions();
  const prefix = `${pathKey([list])},`;
  const place = (key: string, packed: number, pick: (t: PositionTable) => Map<string, number>): void => {
    if (!key.startsWith(prefix)) {
      pick(outside).set(key, packed);
      return;
    }
    const rest = key.slice(prefix.length);
    const comma = rest.indexOf(',');
    const index = Number(comma === -1 ? rest : rest.slice(0, comma));
    if (!Number.isInteger(index)) {
      pick(outside).set(key, packed);
      return;
    }
    let item = items.get(index);
    if (!item) items.set(index, (item = { positions: emptyPositions() }));
    pick(item.positions).set(comma === -1 ? '' : rest.slice(comma + 1), packed);
  };
  for (const [key, packed] of table.nodes) place(key, packed, (t) => t.nodes);
  for (const [key, packed] of table.keys) place(key, packed, (t) => t.keys);
  return { outside, items };
}

/**
 * A checked document as the later stages see it: positions are looked up in the
 * table of the item a path leads into, then in the document's own.
 */
export class LocatedDocument implements SourceDocument {
  constructor(
    readonly file: string,
    readonly index: number,
    private readonly outside: PositionTable,
    private readonly itemPositions: (index: number) => PositionTable | null,
    private readonly list: string | null,
  ) {}

  static of(file: string, document: CheckedDocument): LocatedDocument {
    const content = document.content;
    const list = content === null ? null : itemSchemas[content.kind].list;
    const items: ItemList<CheckedItem<unknown>> = content?.items ?? [];
    return new LocatedDocument(file, document.index, document.positions, (i) => items.at(i)?.positions ?? null, list);
  }

  locate(path: readonly PropertyKey[]): Position {
    const item = this.itemOf(path);
    return (item && lookupNode(item, path, 2)) ?? lookupNode(this.outside, path.slice(0, item ? 1 : path.length)) ?? { line: 1, col: 1 };
  }

  locateKey(path: readonly PropertyKey[]): Position {
    const item = this.itemOf(path);
    return (item ? lookupKey(item, path, 2) : lookupKey(this.outside, path)) ?? this.locate(path);
  }

  private itemOf(path: readonly PropertyKey[]): PositionTable | null {
    if (this.list === null || path.length < 2 || path[0] !== this.list || typeof path[1] !== 'number') return null;
    return this.itemPositions(path[1]);
  }
}

/**
 * schema: every readable file parsed and checked against the schemas of its
 * documents' kinds. A file whose text is unchanged since an earlier load is not
 * checked again.
 */
export const schemaStage: Stage<LoadState> = {
  name: 'schema',
  *run(state) {
    const readable = state.contents.filter((c): c is { file: string; bytes: Uint8Array } => 'bytes' in c);
    const hashes: string[] = [];
    for (const { bytes } of readable) {
      hashes.push(yield* fileHash(bytes));
      yield;
    }
    const keyOf = (i: number): string => `${readable[i]!.file}\u0000${hashes[i]}`;
    const checked: (CheckedFile | undefined)[] = readable.map((_, i) => state.cache?.files.take(keyOf(i)));
    const unchecked = readable.filter((_, i) => checked[i] === undefined);
    const fresh = unchecked.length === 0 ? [] : yield* state.reader.check(unchecked);
    let next = 0;
    const documents: LoadedDocument[] = [];
    for (let i = 0; i < readable.length; i++) {
      let file = checked[i];
      if (file === undefined) {
        file = fresh[next++]!;
        state.cache?.files.put(keyOf(i), file);
      }
      // One by one: a spread passes each as an argument, and a file with hundreds of thousands of problems overflowed the stack.
      for (const diagnostic of file.diagnostics) state.diagnostics.push(diagnostic);
      for (const document of file.documents) {
        documents.push({ source: LocatedDocument.of(file.file, document), document, key: `${keyOf(i)}\u0000${document.index}` });
      }
    }
    state.documents = documents;
    state.fingerprint = readable.map(({ file }, i) => [file, hashes[i]!] as const);
  },
};
