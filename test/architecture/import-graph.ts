import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';
import ts from 'typescript';

/**
 * The import graph of src/, by folder, and the checks `make test` runs on it: a
 * folder imports only the folders its row of the layering table allows, and no
 * folders form a cycle. Every finding names the file, the line and the import.
 */

/** One relative import of one file: `src/gateway/adapter.ts:3 imports ../decide/index.js`. */
export interface Import {
  /** The importing file, relative to the repository (`src/gateway/adapter.ts`). */
  readonly file: string;
  readonly line: number;
  /** As written: `../decide/index.js`. */
  readonly specifier: string;
  /** The imported file, relative to the repository (`src/decide/index.ts`). */
  readonly target: string;
}

/** Files directly under src/ (`types.ts`, `errors.ts`): the vocabulary every folder may import. */
export const ROOT = '(src)';

/** The folder of a file under src/: its first directory, or ROOT for a file directly under src/. */
export function folderOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 2 ? parts[1]! : ROOT;
}

/** Every relative import of every .ts file under `srcDir` (imports, re-exports, type-only imports and import() alike). */
export function readImports(repoDir: string, srcDir = join(repoDir, 'src')): Import[] {
  const imports: Import[] = [];
  const visit = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.name.endsWith('.ts')) {
        const text = readFileSync(path, 'utf8');
        const file = toPosix(relative(repoDir, path));
        for (const found of ts.preProcessFile(text, true, true).importedFiles) {
          if (!found.fileName.startsWith('.')) continue;
          const target = toPosix(relative(repoDir, normalize(join(dirname(path), found.fileName.replace(/\.js$/, '.ts')))));
          const line = text.slice(0, found.pos).split('\n').length;
          imports.push({ file, line, specifier: found.fileName, target });
        }
      }
    }
  };
  visit(srcDir);
  return imports;
}

function toPosix(path: string): string {
  return path.split(sep).join('/');
}

const where = (i: Import): string => `${i.file}:${i.line} imports ${i.specifier}`;

/**
 * Imports that cross from one folder into another the table does not allow.
 * ROOT files may be imported from anywhere and import only each other; a folder
 * the table does not list is a finding of its own.
 */
export function layeringViolations(imports: readonly Import[], allowed: Readonly<Record<string, readonly string[]>>): string[] {
  const problems: string[] = [];
  const unlisted = new Set<string>();
  for (const i of imports) {
    const from = folderOf(i.file);
    const to = folderOf(i.target);
    if (from === to || to === ROOT) continue;
    if (from === ROOT) {
      problems.push(`${where(i)}: files directly under src/ are the shared vocabulary and import nothing from the folders`);
      continue;
    }
    const row = allowed[from];
    if (row === undefined) {
      if (!unlisted.has(from)) problems.push(`src/${from}/ is not in the layering table: add it with the folders it may import (first seen: ${where(i)})`);
      unlisted.add(from);
      continue;
    }
    if (!row.includes(to)) {
      problems.push(`${where(i)}: ${from} may not import ${to} (${from} may import: ${row.length ? row.join(', ') : 'no other folder'})`);
    }
  }
  return problems;
}

/** Cycles among folders, each with one import per edge that makes it. */
export function folderCycles(imports: readonly Import[]): string[] {
  const edges = new Map<string, Map<string, Import>>();
  for (const i of imports) {
    const from = folderOf(i.file);
    const to = folderOf(i.target);
    if (from === to) continue;
    let out = edges.get(from);
    if (!out) edges.set(from, (out = new Map()));
    if (!out.has(to)) out.set(to, i);
  }
  // Tarjan's strongly connected components; any with more than one folder is a cycle.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) connect(v);
  return components.map((component) => {
    const members = new Set(component);
    const links: string[] = [];
    for (const from of component) {
      for (const [to, i] of edges.get(from) ?? []) if (members.has(to)) links.push(`${from} -> ${to} (${where(i)})`);
    }
    return `folders ${component.join(', ')} import each other: ${links.join('; ')}`;
  });
}
