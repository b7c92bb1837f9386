import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { VerdictError } from '../../errors.js';
import type { Stage } from '../pipeline.js';
import { gitCommitIfClean } from '../version.js';
import { checkFile } from './schema.js';
import type { FileText, LoadState, PolicyReader } from './state.js';

const POLICY_EXTENSIONS = ['.yaml', '.yml', '.json'];

export const isPolicyFile = (name: string): boolean => POLICY_EXTENSIONS.some((ext) => name.endsWith(ext));

/** Hidden entries (editors' swap files, `.git`) and node_modules are never policies. */
export const isSkipped = (name: string): boolean => name.startsWith('.') || name === 'node_modules';

export function missingDirectory(dir: string, what: 'missing' | 'not-a-directory'): VerdictError {
  return what === 'missing'
    ? new VerdictError('POLICY_DIR_MISSING', `policy directory ${dir} does not exist; pass the directory that holds your policy files`)
    : new VerdictError('POLICY_DIR_MISSING', `${dir} is not a directory; pass the directory that holds your policy files`);
}

/** Lists policy files under `dir`, recursively, in a stable order. */
export function listPolicyFiles(dir: string): string[] {
  let stat;
  try {
    stat = statSync(dir);
  } catch {
    throw missingDirectory(dir, 'missing');
  }
  if (!stat.isDirectory()) throw missingDirectory(dir, 'not-a-directory');
  const files: string[] = [];
  const walk = (current: string): void => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      if (isSkipped(entry.name)) continue;
      const full = join(current, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && isPolicyFile(entry.name)) files.push(relative(dir, full).split(sep).join('/'));
    }
  };
  walk(dir);
  return files.sort();
}

/** The reader of the command line: everything in this thread, straight through. */
export const syncReader: PolicyReader = {
  *list(dir) {
    return listPolicyFiles(dir);
  },
  *read(dir, files) {
    return files.map((file): FileText => {
      try {
        return { file, text: readFileSync(join(dir, file), 'utf8') };
      } catch (error) {
        return { file, error: (error as Error).message };
      }
    });
  },
  *check(files) {
    return files.map(({ file, text }) => checkFile(file, text));
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
    state.texts = yield* state.reader.read(state.dir, files);
    for (const text of state.texts) {
      if ('error' in text) state.diagnostics.push({ file: text.file, line: 1, col: 1, path: '', message: `cannot read file: ${text.error}` });
    }
  },
};
