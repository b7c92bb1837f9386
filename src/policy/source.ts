import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { isMap, isNode, isScalar, LineCounter, parseAllDocuments, type Document } from 'yaml';
import { VerdictError } from '../errors.js';
import { formatPath, type PolicyDiagnostic } from './diagnostic.js';

const POLICY_EXTENSIONS = ['.yaml', '.yml', '.json'];

/** One YAML or JSON document of a policy file, with what is needed to point at its lines. */
export interface SourceDocument {
  readonly file: string;
  /** Index of the document within a multi-document YAML file. */
  readonly index: number;
  readonly value: unknown;
  /** 1-based position of the node at `path`, or of its nearest existing ancestor. */
  locate(path: readonly PropertyKey[]): { line: number; col: number };
  /** 1-based position of the key of the map entry at `path`: where an unknown key is written. */
  locateKey(path: readonly PropertyKey[]): { line: number; col: number };
}

export interface LoadedSources {
  readonly documents: SourceDocument[];
  readonly diagnostics: PolicyDiagnostic[];
}

/** Lists policy files under `dir`, recursively, in a stable order. Hidden entries are skipped. */
export function listPolicyFiles(dir: string): string[] {
  let stat;
  try {
    stat = statSync(dir);
  } catch {
    throw new VerdictError('POLICY_DIR_MISSING', `policy directory ${dir} does not exist; pass the directory that holds your policy files`);
  }
  if (!stat.isDirectory()) {
    throw new VerdictError('POLICY_DIR_MISSING', `${dir} is not a directory; pass the directory that holds your policy files`);
  }
  const files: string[] = [];
  const walk = (current: string): void => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
      const full = join(current, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && POLICY_EXTENSIONS.some((ext) => entry.name.endsWith(ext))) {
        files.push(relative(dir, full).split(sep).join('/'));
      }
    }
  };
  walk(dir);
  return files.sort();
}

/** Reads and parses every policy file; syntax errors become diagnostics, not exceptions. */
export function loadSources(dir: string): LoadedSources {
  const documents: SourceDocument[] = [];
  const diagnostics: PolicyDiagnostic[] = [];
  for (const file of listPolicyFiles(dir)) {
    let text: string;
    try {
      text = readFileSync(join(dir, file), 'utf8');
    } catch (error) {
      diagnostics.push({ file, line: 1, col: 1, path: '', message: `cannot read file: ${(error as Error).message}` });
      continue;
    }
    parseSource(file, text, documents, diagnostics);
  }
  return { documents, diagnostics };
}

export function parseSource(file: string, text: string, documents: SourceDocument[], diagnostics: PolicyDiagnostic[]): void {
  const lineCounter = new LineCounter();
  const parsed = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const docs = Array.isArray(parsed) ? parsed : [];
  let index = 0;
  for (const doc of docs) {
    const errors = [...doc.errors, ...doc.warnings];
    for (const error of errors) {
      const { line, col } = lineCounter.linePos(error.pos[0]);
      diagnostics.push({ file, line: Math.max(line, 1), col: Math.max(col, 1), path: '', message: firstLine(error.message) });
    }
    if (doc.errors.length > 0) continue;
    if (doc.contents === null) continue; // an empty document, e.g. a trailing `---`
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    documents.push({
      file,
      index,
      value,
      locate: (path) => locateIn(doc, lineCounter, path),
      locateKey: (path) => locateKeyIn(doc, lineCounter, path),
    });
    index++;
  }
}

function locateIn(doc: Document, lineCounter: LineCounter, path: readonly PropertyKey[]): { line: number; col: number } {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = doc.getIn(path.slice(0, depth) as unknown[], true);
    if (isNode(node) && node.range) {
      // Point at the key for a missing child, since that is what a reader looks for.
      const pos = lineCounter.linePos(node.range[0]);
      return { line: Math.max(pos.line, 1), col: Math.max(pos.col, 1) };
    }
  }
  return { line: 1, col: 1 };
}

function locateKeyIn(doc: Document, lineCounter: LineCounter, path: readonly PropertyKey[]): { line: number; col: number } {
  const parent = path.length === 0 ? doc.contents : doc.getIn(path.slice(0, -1) as unknown[], true);
  const last = path[path.length - 1];
  if (isMap(parent)) {
    for (const pair of parent.items) {
      const key = pair.key;
      if (isScalar(key) && key.value === last && key.range) {
        const pos = lineCounter.linePos(key.range[0]);
        return { line: Math.max(pos.line, 1), col: Math.max(pos.col, 1) };
      }
    }
  }
  return locateIn(doc, lineCounter, path);
}

function firstLine(message: string): string {
  const nl = message.indexOf('\n');
  return nl === -1 ? message : message.slice(0, nl);
}

export function diagnosticAtKey(source: SourceDocument, path: readonly PropertyKey[], message: string): PolicyDiagnostic {
  const { line, col } = source.locateKey(path);
  return { file: source.file, line, col, path: formatPath(path), message };
}

export function diagnosticAt(source: SourceDocument, path: readonly PropertyKey[], message: string): PolicyDiagnostic {
  const { line, col } = source.locate(path);
  return { file: source.file, line, col, path: formatPath(path), message };
}
