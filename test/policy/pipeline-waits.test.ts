import { describe, expect, it } from 'vitest';
import { runInSlices, wait, type StageRun } from '../../src/policy/pipeline.js';

// A stage that waits for I/O (the server's reader lists and reads files without
// blocking) sees a failed wait where it waited, as a synchronous read throws there,
// so that it can say what failed (an unreadable directory) in its own words.
describe('a failed wait in a sliced run', () => {
  it('is thrown into the stage, which may catch it', async () => {
    function* stage(): StageRun<string> {
      try {
        yield* wait(Promise.reject(Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' })));
        return 'read';
      } catch (error) {
        return `cannot list it (${(error as NodeJS.ErrnoException).code})`;
      }
    }
    await expect(runInSlices(stage(), 2)).resolves.toBe('cannot list it (EACCES)');
  });

  it('ends the run when the stage does not catch it', async () => {
    function* stage(): StageRun<string> {
      yield* wait(Promise.reject(new Error('gone')));
      return 'read';
    }
    await expect(runInSlices(stage(), 2)).rejects.toThrow('gone');
  });
});
