/** One problem found in a policy file, located precisely enough to jump to. */
export interface PolicyDiagnostic {
  /** Path of the file, relative to the policy directory. */
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** Where inside the document, e.g. `rules[2].when`. Empty for the whole file. */
  readonly path: string;
  readonly message: string;
}

export function formatDiagnostic(d: PolicyDiagnostic): string {
  const where = d.path ? ` (at ${d.path})` : '';
  return `${d.file}:${d.line}:${d.col}: ${d.message}${where}`;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

export function sortDiagnostics(list: PolicyDiagnostic[]): PolicyDiagnostic[] {
  // Ties by path and message, so the order never depends on which stage (or which part of one) found a problem first.
  return list.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col || compareText(a.path, b.path) || compareText(a.message, b.message));
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
