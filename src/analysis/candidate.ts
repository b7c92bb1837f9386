import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { isAbsolute, join, normalize, relative, resolve } from 'node:path';
import { VerdictError, messageOf } from '../errors.js';
import type { LoadResult } from '../policy/load.js';
import { LOAD_STAGES, resultOf } from '../policy/load.js';
import { runStages } from '../policy/pipeline.js';
import { decodeText, isPolicyFile, isSkipped, listPolicyFiles } from '../policy/stages/read.js';
import { checkFile } from '../policy/stages/schema.js';
import { newLoadState, type FileContent, type PolicyReader } from '../policy/stages/state.js';
import { GIT_SAFETY, gitCommitIfClean } from '../policy/version.js';

/**
 * A policy set to replay with, as bytes in memory: the files of a directory on
 * disk, or of the policy directory at a git revision, read straight from git
 * (no checkout). Held as bytes so that every replay thread compiles the very
 * same files (a compiled set holds functions, which cannot cross threads).
 */
export interface CandidateFiles {
  /** What the set was read from, for reports: `policies` or `policies@3f0c1d2`. */
  readonly label: string;
  /** The directory, as given. */
  readonly dir: string;
  readonly files: ReadonlyArray<{ readonly file: string; readonly bytes: Uint8Array }>;
  /** The commit that versions the set (a clean work tree, or the revision read), else null: sha256 of the content. */
  readonly gitCommit: string | null;
}

/**
 * The policy files of `dir` on disk.
 * @throws VerdictError POLICY_DIR_MISSING when `dir` is not a directory; POLICY_INVALID naming a file that cannot be read
 */
export function filesFromDirectory(dir: string): CandidateFiles {
  const files = listPolicyFiles(dir).map((file) => {
    try {
      return { file, bytes: new Uint8Array(readFileSync(join(dir, file))) };
    } catch (error) {
      throw new VerdictError('POLICY_INVALID', `${join(dir, file)}: cannot read file: ${messageOf(error)}`, { cause: error });
    }
  });
  return { label: dir, dir, files, gitCommit: gitCommitIfClean(dir) };
}

/** Most bytes a revision's policy directory may hold: bounded work for any repository. */
const MAX_GIT_BYTES = 512 * 1024 * 1024;

function git(args: readonly string[], cwd: string, input?: Buffer): Buffer {
  return execFileSync('git', [...GIT_SAFETY, ...args], { cwd, input, maxBuffer: MAX_GIT_BYTES, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], timeout: 60_000 });
}

function gitText(args: readonly string[], cwd: string): string {
  return git(args, cwd).toString('utf8').trim();
}

/**
 * The policy files of `dir` as they are at git revision `rev` (a commit, tag,
 * branch, `HEAD~1`, …), read from the repository `dir` belongs to without
 * touching the work tree: `git ls-tree` lists the files, one `git cat-file
 * --batch` reads them. The same files are skipped as on disk (hidden entries,
 * node_modules, other extensions); a symbolic link is skipped with a warning,
 * since git stores only its target.
 * @throws VerdictError USAGE when `rev` is not a revision of the repository (or there is none);
 *   POLICY_DIR_MISSING when `dir` does not exist at `rev`
 */
export function filesFromGit(dir: string, rev: string, warnings: string[] = []): CandidateFiles {
  if (rev === '' || rev.startsWith('-')) throw new VerdictError('USAGE', `--rev ${JSON.stringify(rev)} is not a git revision; see --help`);
  const { existing, rest } = nearestExisting(resolve(dir));
  let top: string;
  try {
    top = realpathSync(gitText(['rev-parse', '--show-toplevel'], existing));
  } catch (error) {
    throw new VerdictError('USAGE', `--rev needs ${dir} to be in a git repository, and ${existing} is not inside one: ${firstLine(error)}`, { cause: error });
  }
  let commit: string;
  try {
    commit = gitText(['rev-parse', '--verify', '--quiet', '--end-of-options', `${rev}^{commit}`], top);
  } catch (error) {
    throw new VerdictError('USAGE', `--rev ${rev}: no such revision in ${top}${firstLine(error) === '' ? '' : ` (${firstLine(error)})`}`, { cause: error });
  }
  const treePath = pathInRepository(top, existing, rest, dir);
  const listing = git(['ls-tree', '-r', '-z', '--full-tree', commit, '--', treePath === '' ? '.' : treePath], top).toString('utf8');
  const entries: Array<{ file: string; object: string }> = [];
  for (const entry of listing.split('\0')) {
    if (entry === '') continue;
    const tab = entry.indexOf('\t');
    const [mode, type, object] = entry.slice(0, tab).split(' ');
    const path = entry.slice(tab + 1);
    const file = treePath === '' ? path : path.slice(treePath.length + 1);
    if (type !== 'blob' || object === undefined || file === '' || file.split('/').some(isSkipped) || !isPolicyFile(file)) continue;
    if (mode === '120000') {
      warnings.push(`${dir}/${file} is a symbolic link at ${rev}; git stores only its target, so it is not read`);
      continue;
    }
    entries.push({ file, object });
  }
  if (entries.length === 0) {
    const exists = git(['ls-tree', '--full-tree', commit, '--', treePath === '' ? '.' : treePath], top).length > 0;
    if (!exists) throw new VerdictError('POLICY_DIR_MISSING', `policy directory ${dir} does not exist at ${rev} (${commit.slice(0, 12)}); pass --policies with its path in the repository`);
  }
  entries.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  const blobs = readBlobs(top, entries.map((e) => e.object));
  const files = entries.map((e, i) => ({ file: e.file, bytes: blobs[i] as Uint8Array }));
  return { label: `${dir}@${rev}`, dir, files, gitCommit: commit };
}

/** The nearest directory of `absolute` that exists (itself, or a parent: it may be gone from the work tree), real, and the path below it. */
function nearestExisting(absolute: string): { existing: string; rest: string } {
  let existing = absolute;
  let rest = '';
  for (;;) {
    try {
      return { existing: realpathSync(existing), rest };
    } catch {
      const parent = resolve(existing, '..');
      if (parent === existing) return { existing, rest };
      rest = rest === '' ? relative(parent, existing) : join(relative(parent, existing), rest);
      existing = parent;
    }
  }
}

/** Where `dir` (`existing` and the `rest` below it) sits in the repository whose top is `top`, with forward slashes ('' for the top). */
function pathInRepository(top: string, existing: string, rest: string, dir: string): string {
  const inside = normalize(join(relative(top, existing), rest));
  if (inside.startsWith('..') || isAbsolute(inside)) throw new VerdictError('USAGE', `--policies ${dir} is outside the git repository ${top}, so --rev cannot read it`);
  return inside === '.' ? '' : inside.split('\\').join('/');
}

/** The contents of git objects, in order, read by one `git cat-file --batch`. */
function readBlobs(top: string, objects: readonly string[]): Buffer[] {
  if (objects.length === 0) return [];
  const out = git(['cat-file', '--batch'], top, Buffer.from(`${objects.join('\n')}\n`));
  const blobs: Buffer[] = [];
  let at = 0;
  for (const object of objects) {
    const nl = out.indexOf(10, at);
    const header = out.toString('utf8', at, nl).split(' ');
    const size = Number(header[2]);
    if (header[0] !== object || header[1] !== 'blob' || !Number.isSafeInteger(size)) {
      throw new VerdictError('INTERNAL', `git cat-file answered "${header.join(' ')}" for ${object}`);
    }
    blobs.push(out.subarray(nl + 1, nl + 1 + size));
    at = nl + 1 + size + 1;
  }
  return blobs;
}

function firstLine(error: unknown): string {
  const stderr = (error as { stderr?: Buffer }).stderr;
  const text = stderr && stderr.length > 0 ? stderr.toString('utf8') : messageOf(error);
  return (text.split('\n')[0] ?? '').trim();
}

/** A reader of the stages (policy/stages/state.ts) over files held in memory. */
function memoryReader(files: CandidateFiles['files']): PolicyReader {
  const byName = new Map(files.map((f) => [f.file, f.bytes]));
  return {
    *list() {
      return files.map((f) => f.file);
    },
    *read(_dir, names) {
      return names.map((file): FileContent => {
        const bytes = byName.get(file);
        return bytes === undefined ? { file, error: 'not in the set read' } : { file, bytes };
      });
    },
    *check(checked) {
      return checked.map(({ file, bytes }) => checkFile(file, decodeText(bytes)));
    },
    *gitCommit() {
      return null;
    },
  };
}

/** Compile the files, as `verdict validate` would compile their directory. */
export function loadCandidate(candidate: CandidateFiles): LoadResult {
  const state = newLoadState(candidate.dir, memoryReader(candidate.files), { gitCommit: candidate.gitCommit });
  runStages(LOAD_STAGES, state);
  return resultOf(state);
}
