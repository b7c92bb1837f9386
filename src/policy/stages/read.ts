import { readdirSync, readFileSync, realpathSync, statSync, type Dirent, type Stats } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { VerdictError, messageOf } from '../../errors.js';
import { runToEnd, type Stage, type StageRun } from '../pipeline.js';
import { gitCommitIfClean } from '../version.js';
import { checkFile } from './schema.js';
import type { FileContent, LoadState, PolicyReader } from './state.js';

const POLICY_EXTENSIONS = ['.yaml', '.yml', '.json'];

export const isPolicyFile = (name: string): boolean => POLICY_EXTENSIONS.some((ext) => name.endsWith(ext));

/** Hidden entries (editors' swap files, `.git`) and node_modules are never policies. */
export const isSkipped = (name: string): boolean => name.startsWith('.') || name === 'node_modules';

export function missingDirectory(dir: string, what: 'missing' | 'not-a-directory'): VerdictError {
  return what === 'missing'
    ? new VerdictError('POLICY_DIR_MISSING', `policy directory ${dir} does not exist; pass the directory that holds your policy files`)
    : new VerdictError('POLICY_DIR_MISSING', `${dir} is not a directory; pass the directory that holds your policy files`);
}

/**
 * The most a policy directory may hold: policy files, and entries of any kind walked to
 * find them. A push that brings in a data directory or a virtualenv is refused at once
 * rather than read, parsed and watched file by file.
 */
const MAX_POLICY_FILES = 10_000;
const MAX_DIRECTORY_ENTRIES = 100_000;

const tooLarge = (dir: string, what: string): VerdictError =>
  new VerdictError('POLICY_INVALID', `policy directory ${dir} holds ${what}; keep only policy files under it (files and directories starting with "." and node_modules are skipped)`);

/** How deep directories under the policy directory may nest: far past any layout, and short of the paths the system can name (ENAMETOOLONG). */
const MAX_DIRECTORY_DEPTH = 32;

/** What listing needs of the file system, straight through or waiting (see pipeline.ts). */
export interface DirectoryAccess {
  /** Follows symbolic links; null when there is nothing there (or a dangling link). */
  stat(path: string): StageRun<Stats | null>;
  readdir(path: string): StageRun<Dirent[]>;
  realpath(path: string): StageRun<string>;
}

/**
 * Lists policy files under `dir`, recursively, in a stable order. Symbolic links
 * are followed, to files and to directories (each directory is listed once, so a
 * link back up cannot loop): a Kubernetes ConfigMap volume is a directory of links
 * into a hidden `..data` directory that is swapped to update it. A link to a
 * directory outside `dir` is not walked (`/` would list the whole machine): it is
 * listed itself, and reading it is refused (see refusedTarget).
 */
export function* listPolicyFilesWith(dir: string, access: DirectoryAccess): StageRun<string[]> {
  const stat = yield* access.stat(dir);
  if (stat === null) throw missingDirectory(dir, 'missing');
  if (!stat.isDirectory()) throw missingDirectory(dir, 'not-a-directory');
  const files: string[] = [];
  const root = yield* access.realpath(dir);
  const listed = new Set<string>([root]);
  let entries = 0;
  const walk = function* (current: string, depth: number): StageRun {
    if (depth > MAX_DIRECTORY_DEPTH) throw tooLarge(dir, `directories nested more than ${MAX_DIRECTORY_DEPTH} levels deep (${relative(dir, current).split(sep).slice(0, 3).join('/')}/…)`);
    let listing: Dirent[];
    try {
      listing = yield* access.readdir(current);
    } catch (error) {
      // A directory left out would leave its rules out of the set (a deny among them would no longer deny): the load fails instead.
      const code = (error as NodeJS.ErrnoException).code ?? messageOf(error);
      throw new VerdictError('POLICY_INVALID', `cannot list ${relative(dir, current) || '.'} in policy directory ${dir} (${code}); make it readable, or move it out of the policy directory`);
    }
    for (const entry of listing) {
      if (++entries > MAX_DIRECTORY_ENTRIES) throw tooLarge(dir, `more than ${MAX_DIRECTORY_ENTRIES} entries`);
      if (isSkipped(entry.name)) continue;
      const full = join(current, entry.name);
      let isDirectory = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = yield* access.stat(full);
        if (target === null) continue;
        isDirectory = target.isDirectory();
        isFile = target.isFile();
        if (isDirectory) {
          const real = yield* access.realpath(full);
          if (!isInside(root, real)) {
            files.push(relative(dir, full).split(sep).join('/'));
            continue;
          }
          if (listed.has(real)) continue;
          listed.add(real);
        }
      }
      if (isDirectory) yield* walk(full, depth + 1);
      else if (isFile && isPolicyFile(entry.name)) {
        files.push(relative(dir, full).split(sep).join('/'));
        if (files.length > MAX_POLICY_FILES) throw tooLarge(dir, `more than ${MAX_POLICY_FILES} policy files`);
      }
    }
  };
  yield* walk(dir, 0);
  return files.sort();
}

/** What cannot be stat-ed (missing, a dangling link, no permission) is treated as absent. */
export const absentOnError = <T>(read: () => T): T | null => {
  try {
    return read();
  } catch {
    return null;
  }
};

const syncAccess: DirectoryAccess = {
  *stat(path) {
    return absentOnError(() => statSync(path));
  },
  *readdir(path) {
    return readdirSync(path, { withFileTypes: true });
  },
  *realpath(path) {
    return realpathSync(path);
  },
};

/** Lists policy files under `dir` in this thread (see listPolicyFilesWith). */
export function listPolicyFiles(dir: string): string[] {
  return runToEnd(listPolicyFilesWith(dir, syncAccess));
}

/**
 * The most a YAML policy file may hold: about 40,000 rules like bench/lib/synthetic.mjs
 * generates. Reading YAML is slow and hungry (a 4 MB file of 47,000 small rules took
 * 4.7 s and 0.8 GB to validate), and a changed file is read again on every reload.
 * JSON is parsed natively, and a directory of principals or resources exported from
 * another system may be large.
 */
const MAX_YAML_FILE_BYTES = 8 * 1024 * 1024;
const MAX_JSON_FILE_BYTES = 64 * 1024 * 1024;
/** The most all the files of one policy set may hold together. */
const MAX_POLICY_SET_BYTES = 256 * 1024 * 1024;

const MIB = 1024 * 1024;

/** Whether `real` (a resolved path) is `root` or lies under it. */
const isInside = (root: string, real: string): boolean => real === root || real.startsWith(root.endsWith(sep) ? root : root + sep);

/**
 * Why a listed file is not read, from where its links lead, or null. A policy file
 * is one under the policy directory once links are resolved: a link committed to a
 * policy repository must not read the server's own files (`/etc/shadow`, a key)
 * into a policy set and its error messages.
 */
function refusedTarget(root: string, real: string, target: Stats): string | null {
  if (!isInside(root, real)) return `it is a symbolic link to ${real}, outside the policy directory ${root}; copy what it points to into the policy directory instead`;
  if (!target.isFile()) return `it is not a regular file`;
  return null;
}

/** Why a policy file of `size` bytes is not read, or null. */
function refusedSize(file: string, size: number): string | null {
  const json = file.endsWith('.json');
  const limit = json ? MAX_JSON_FILE_BYTES : MAX_YAML_FILE_BYTES;
  if (size <= limit) return null;
  return `it holds ${size} bytes, over the ${limit / MIB} MiB a ${json ? 'JSON' : 'YAML'} policy file may hold; split it into several files`;
}

/** A listed file once its links are resolved: where it is and how large, or why it is not read. */
type Resolved = { readonly file: string; readonly real: string; readonly size: number } | { readonly file: string; readonly error: string };

function resolvedAs(root: string, file: string, real: string, target: Stats): Resolved {
  const refused = refusedTarget(root, real, target) ?? refusedSize(file, target.size);
  return refused === null ? { file, real, size: target.size } : { file, error: refused };
}

/**
 * The one file with which the set passes MAX_POLICY_SET_BYTES, or null. Found from the
 * sizes before anything is read, so that a set over the limit takes no memory.
 */
function overSetLimit(resolved: readonly Resolved[]): FileContent | null {
  let total = 0;
  for (const target of resolved) {
    if (!('real' in target)) continue;
    total += target.size;
    if (total > MAX_POLICY_SET_BYTES) {
      return { file: target.file, error: `the policy set passes ${MAX_POLICY_SET_BYTES / MIB} MiB with this file; serve fewer or smaller files from this directory` };
    }
  }
  return null;
}

/** Checked again once read: a file may grow between its stat and its read. */
const contentOf = (file: string, bytes: Uint8Array): FileContent => {
  const grown = refusedSize(file, bytes.byteLength);
  return grown === null ? { file, bytes } : { file, error: grown };
};

/**
 * Why a listed file could not be opened. A name that is not UTF-8 is listed with
 * U+FFFD in its place and so cannot be opened by that name: "no such file" would send
 * its author looking for a file that is there.
 */
function openError(file: string, error: unknown): Resolved {
  if ((error as NodeJS.ErrnoException).code === 'ENOENT' && file.includes('\uFFFD')) {
    return { file, error: 'its name is not UTF-8 (shown here with U+FFFD in place of the bytes that are not), so it cannot be read by name; rename it' };
  }
  return { file, error: messageOf(error) };
}

function resolveSync(root: string, dir: string, file: string): Resolved {
  try {
    const real = realpathSync(join(dir, file));
    return resolvedAs(root, file, real, statSync(real));
  } catch (error) {
    return openError(file, error);
  }
}

async function resolve(root: string, dir: string, file: string): Promise<Resolved> {
  try {
    const real = await realpath(join(dir, file));
    return resolvedAs(root, file, real, await stat(real));
  } catch (error) {
    return openError(file, error);
  }
}

/**
 * Reads the listed policy files in this thread: each one's bytes, or why it is not
 * read (see refusedTarget, refusedSize). A set over MAX_POLICY_SET_BYTES is not read
 * at all: the file that passes the limit is its one error.
 */
export function readPolicyFilesSync(dir: string, files: readonly string[]): FileContent[] {
  const root = realpathSync(dir);
  const resolved = files.map((file) => resolveSync(root, dir, file));
  const over = overSetLimit(resolved);
  if (over !== null) return [over];
  return resolved.map((target): FileContent => {
    if (!('real' in target)) return target;
    try {
      return contentOf(target.file, readFileSync(target.real));
    } catch (error) {
      return { file: target.file, error: messageOf(error) };
    }
  });
}

/** Reads the listed policy files without blocking (see readPolicyFilesSync). */
export async function readPolicyFiles(dir: string, files: readonly string[]): Promise<FileContent[]> {
  const root = await realpath(dir);
  const resolved = await Promise.all(files.map((file) => resolve(root, dir, file)));
  const over = overSetLimit(resolved);
  if (over !== null) return [over];
  return Promise.all(
    resolved.map((target): FileContent | Promise<FileContent> =>
      'real' in target
        ? readFile(target.real).then(
            (bytes) => contentOf(target.file, bytes),
            (error: unknown) => ({ file: target.file, error: messageOf(error) }),
          )
        : target,
    ),
  );
}

/** A policy file's bytes as text (UTF-8). */
export const decodeText = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');

/** The reader of the command line: everything in this thread, straight through. */
export const syncReader: PolicyReader = {
  *list(dir) {
    return listPolicyFiles(dir);
  },
  *read(dir, files) {
    return readPolicyFilesSync(dir, files);
  },
  *check(files) {
    return files.map(({ file, bytes }) => checkFile(file, decodeText(bytes)));
  },
  *gitCommit(dir) {
    return gitCommitIfClean(dir);
  },
};

/** read: lists the policy files and reads each; a file that cannot be read is a diagnostic, not an exception. */
export const readStage: Stage<LoadState> = {
  name: 'read',
  *run(state) {
    const files = yield* state.reader.list(state.dir);
    state.contents = yield* state.reader.read(state.dir, files);
    for (const content of state.contents) {
      if ('error' in content) state.diagnostics.push({ file: content.file, line: 1, col: 1, path: '', message: `cannot read file: ${content.error}` });
    }
  },
};
