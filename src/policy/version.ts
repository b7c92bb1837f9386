import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';

/**
 * The version of a policy set: the git commit when the directory sits in a clean
 * git work tree, so a decision points at reviewed history; otherwise `sha256:` of the
 * canonical content, which file order, file names and formatting do not change.
 */
export function policyVersion(dir: string, documents: readonly unknown[]): string {
  return gitCommitIfClean(dir) ?? contentVersion(documents);
}

export function contentVersion(documents: readonly unknown[]): string {
  const canonical = documents.map(canonicalJson).sort();
  const hash = createHash('sha256');
  for (const doc of canonical) hash.update(doc).update('\n');
  return `sha256:${hash.digest('hex')}`;
}

/** JSON with object keys sorted at every depth, so equal data gives equal bytes. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

function gitCommitIfClean(dir: string): string | null {
  try {
    const options = { cwd: dir, encoding: 'utf8' as const, stdio: ['ignore', 'pipe', 'ignore'] as ['ignore', 'pipe', 'ignore'], timeout: 5000 };
    const inside = execFileSync('git', ['rev-parse', '--is-inside-work-tree'], options).trim();
    if (inside !== 'true') return null;
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=all', '--', '.'], options);
    if (status.trim() !== '') return null;
    const tracked = execFileSync('git', ['ls-files', '--', '.'], options);
    if (tracked.trim() === '') return null; // nothing committed here: the commit would not describe these files
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], options).trim();
    return /^[0-9a-f]{40,64}$/.test(commit) ? commit : null;
  } catch {
    return null;
  }
}
