import { readdir, realpath, stat } from 'node:fs/promises';
import { decodeLargeItems } from './checked-codec.js';
import { fileHash } from './hash-in-pieces.js';
import type { LoadWorker } from './load-worker.js';
import { runInSlices, wait, type StageRun } from './pipeline.js';
import { listPolicyFilesWith, readPolicyFiles, type DirectoryAccess } from './stages/read.js';
import type { PolicyReader } from './stages/state.js';

const asyncAccess: DirectoryAccess = {
  *stat(path) {
    return yield* wait(stat(path).catch(() => null));
  },
  *readdir(path) {
    return yield* wait(readdir(path, { withFileTypes: true }));
  },
  *realpath(path) {
    return yield* wait(realpath(path));
  },
};

/**
 * The reader of a server: the file system is read without blocking, and files
 * are checked and git is asked by `worker` (in its own thread), so that a load can
 * run beside the checks the server answers.
 */
export function backgroundReader(worker: LoadWorker): PolicyReader {
  return {
    *list(dir) {
      return yield* listPolicyFilesWith(dir, asyncAccess);
    },
    *read(dir, files) {
      return yield* wait(readPolicyFiles(dir, files));
    },
    *check(files) {
      const checked = yield* wait(Promise.all(files.map(({ file, bytes }) => worker.check(file, bytes))));
      // An item too large to decode in one step arrives in pieces, decoded here between pauses.
      for (const file of checked) yield* decodeLargeItems(file);
      return checked;
    },
    *gitCommit(dir) {
      return yield* wait(worker.gitCommit(dir));
    },
  };
}

/**
 * Each policy file under `dir` and the hash of its bytes, as a load's fingerprint
 * lists them: comparing the two tells whether a load would see anything new. The
 * server asks every few seconds, so the hashing runs in slices like a load: a
 * 10,000-rule set is about 2 MB, hashed in one go a stall of milliseconds each time.
 */
export async function fingerprintOf(dir: string, sliceMs: number): Promise<readonly (readonly [string, string])[]> {
  const files = await runInSlices(listPolicyFilesWith(dir, asyncAccess), sliceMs);
  return runInSlices(hashEach(await readPolicyFiles(dir, files)), sliceMs);
}

function* hashEach(contents: Awaited<ReturnType<typeof readPolicyFiles>>): StageRun<(readonly [string, string])[]> {
  const hashes: (readonly [string, string])[] = [];
  for (const content of contents) {
    // A file that cannot be read is listed by why, so that a load reports it.
    hashes.push([content.file, 'bytes' in content ? yield* fileHash(content.bytes) : `unread: ${content.error}`]);
    yield;
  }
  return hashes;
}
