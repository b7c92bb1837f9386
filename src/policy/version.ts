import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { hashInPieces } from './hash-in-pieces.js';
import { compareUnits, compareUnitsWithText, type UnitsText } from './text-units.js';
import type { StageRun } from './pipeline.js';

/**
 * A document as canonicalJson: a string, or its code units as it arrives from the
 * policy load thread (text-units.ts).
 */
export type CanonicalText = string | UnitsText;

/** Orders canonical texts as their strings compare. */
export function compareCanonical(a: CanonicalText, b: CanonicalText): number {
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a !== 'string' && typeof b !== 'string') return compareUnits(a.units, b.units);
  // One of each (a test's mix; a load has all strings or all units).
  return typeof a === 'string' ? -compareUnitsWithText((b as UnitsText).units, 0, (b as UnitsText).units.length, a) : compareUnitsWithText(a.units, 0, a.units.length, b as string);
}

/**
 * The version of a policy set: the git commit when the directory sits in a clean
 * git work tree, so a decision points at reviewed history; otherwise `sha256:` of the
 * canonical content, which file order, file names and formatting do not change.
 * `canonical` is each document as canonicalJson. Pauses between documents, and within a large one.
 */
export function* policyVersion(canonical: readonly CanonicalText[], gitCommit: string | null): StageRun<string> {
  if (gitCommit !== null) return gitCommit;
  const hash = createHash('sha256');
  for (const doc of [...canonical].sort(compareCanonical)) {
    yield* hashInPieces(hash, doc);
    hash.update('\n');
    yield;
  }
  return `sha256:${hash.digest('hex')}`;
}

/** JSON with object keys sorted at every depth, so equal data gives equal bytes. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  // Most objects are written with their keys in order already: no sort, no copy.
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) {
      keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      break;
    }
  }
  let out = '{';
  let first = true;
  for (const key of keys) {
    const v = record[key];
    if (v === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(key)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${out}}`;
}

/**
 * Put before every git command verdict runs. A repository's own config may name a
 * program for `git status` to run (`core.fsmonitor`, and content filters: see
 * filtersDisarmed): whoever can write the policy directory's `.git/config` would run
 * code as verdict. Settings given with `-c` win over every config file.
 */
export const GIT_SAFETY: readonly string[] = ['-c', 'core.fsmonitor=false'];

const GIT_STEPS: readonly (readonly string[])[] = [
  ['rev-parse', '--is-inside-work-tree'],
  // --ignored: an ignored policy file would still be loaded, so the commit would not describe the set.
  ['status', '--porcelain', '--untracked-files=all', '--ignored=matching', '--', '.'],
  ['ls-files', '--', '.'],
  ['rev-parse', 'HEAD'],
];

function commitFrom(outputs: readonly string[]): string | null {
  const [inside, status, tracked, commit] = outputs.map((o) => o.trim());
  if (inside !== 'true' || status !== '') return null;
  if (!tracked) return null; // nothing committed here: the commit would not describe these files
  return commit && /^[0-9a-f]{40,64}$/.test(commit) ? commit : null;
}

/** Lists the content filters the repository's config names (`filter.<name>.clean` and the like). */
const FILTER_LISTING: readonly string[] = ['config', '--get-regexp', '^filter\\..*\\.(clean|smudge|process)$'];

/**
 * `-c` settings emptying each configured filter's programs: `git status` runs a clean
 * filter when it reads a changed file again, and an empty one is no filter (a filter
 * marked required then fails the status, and the version falls back to the content hash).
 */
function filtersDisarmed(listing: string): string[] {
  const names = new Set<string>();
  for (const line of listing.split('\n')) {
    const match = /^filter\.(.+)\.(?:clean|smudge|process) /.exec(line);
    if (match) names.add(match[1]!);
  }
  return [...names].flatMap((name) => ['-c', `filter.${name}.clean=`, '-c', `filter.${name}.smudge=`, '-c', `filter.${name}.process=`]);
}

/** The HEAD commit when `dir` is inside a git work tree with nothing changed under it. */
export function gitCommitIfClean(dir: string): string | null {
  try {
    const options = { cwd: dir, encoding: 'utf8' as const, stdio: ['ignore', 'pipe', 'ignore'] as ['ignore', 'pipe', 'ignore'], timeout: 5000 };
    const git = (args: readonly string[], safety: readonly string[]): string => execFileSync('git', [...GIT_SAFETY, ...safety, ...args], options);
    if (git(GIT_STEPS[0]!, []).trim() !== 'true') return null;
    const safety = filtersDisarmed(configListing(() => git(FILTER_LISTING, [])));
    return commitFrom(GIT_STEPS.map((args, i) => (i === 0 ? 'true' : git(args, safety))));
  } catch {
    return null;
  }
}

/** The same as gitCommitIfClean without blocking the event loop: the server uses this on reload. */
export async function gitCommitIfCleanAsync(dir: string): Promise<string | null> {
  const run = promisify(execFile);
  const git = async (args: readonly string[], safety: readonly string[]): Promise<string> => (await run('git', [...GIT_SAFETY, ...safety, ...args], { cwd: dir, encoding: 'utf8', timeout: 5000 })).stdout;
  try {
    if ((await git(GIT_STEPS[0]!, [])).trim() !== 'true') return null;
    const safety = filtersDisarmed(await git(FILTER_LISTING, []).catch(() => ''));
    const outputs = ['true'];
    for (const args of GIT_STEPS.slice(1)) outputs.push(await git(args, safety));
    return commitFrom(outputs);
  } catch {
    return null;
  }
}

/** `git config --get-regexp` exits 1 when nothing matches: no filters. */
function configListing(read: () => string): string {
  try {
    return read();
  } catch {
    return '';
  }
}
