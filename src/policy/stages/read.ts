import { readdirSync, readFileSync, realpathSync, statSync, type Dirent, type Stats } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { VerdictError } from '../../errors.js';
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
 * into a hidden `..data` directory that is swapped to update it.
 */
export function* listPolicyFilesWith(dir: string, access: DirectoryAccess): StageRun<string[]> {
  const stat = yield* access.stat(dir);
  if (stat === null) throw missingDirectory(dir, 'missing');
  if (!stat.isDirectory()) throw missingDirectory(dir, 'not-a-directory');
  const files: string[] = [];
  const listed = new Set<string>([yield* access.realpath(dir)]);
  const walk = function* (current: string): StageRun {
    for (const entry of yield* access.readdir(current)) {
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
          if (listed.has(real)) continue;
          listed.add(real);
        }
      }
      if (isDirectory) yield* walk(full);
      else if (isFile && isPolicyFile(entry.name)) files.push(relative(dir, full).split(sep).join('/'));
    }
  };
  yield* walk(dir);
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

/** A policy file's bytes as text (UTF-8). */
export const decodeText = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');

/** The reader of the command line: everything in this thread, straight through. */
export const syncReader: PolicyReader = {
  *list(dir) {
    return listPolicyFiles(dir);
  },
  *read(dir, files) {
    return files.map((file): FileContent => {
      try {
        return { file, bytes: readFileSync(join(dir, file)) };
      } catch (error) {
        return { file, error: (error as Error).message };
      }
    });
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
