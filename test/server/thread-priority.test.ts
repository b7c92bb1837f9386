import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { shippedAllowedCheck, useShippedServer } from '../helpers/verdict-process.js';
import { BACKGROUND_NICE } from '../../src/thread-priority.js';

/** Each thread of `pid` with its nice value (field 19 of /proc/PID/task/TID/stat, counted after the command's closing parenthesis). */
function niceValues(pid: number): Map<number, number> {
  const nice = new Map<number, number>();
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    nice.set(Number(task), Number(fields[16]));
  }
  return nice;
}

// Linux gives each thread its own nice value; elsewhere verdict leaves priorities alone.
describe.skipIf(!existsSync('/proc/self/task'))('thread priorities of verdict serve', () => {
  const shipped = useShippedServer();

  it("lowers node's own helper threads and nothing the deciding thread starts", async () => {
    const { server } = shipped;
    // Answered checks: the decision log's writer thread exists by now.
    expect(await shippedAllowedCheck(server.grpcPort)).toBe('EFFECT_ALLOW');
    const pid = server.child.pid!;
    const nice = niceValues(pid);
    // The deciding thread keeps the process's priority.
    expect(nice.get(pid)).toBe(0);
    // V8's platform workers (node starts four by default) and whatever else node had started before `serve` ran.
    const lowered = [...nice].filter(([tid, value]) => tid !== pid && value === BACKGROUND_NICE);
    expect(lowered.length).toBeGreaterThanOrEqual(4);
    // A thread the deciding thread started afterwards (the writer) keeps its priority.
    const normal = [...nice].filter(([tid, value]) => tid !== pid && value === 0);
    expect(normal.length).toBeGreaterThanOrEqual(1);
    // Every thread is one or the other: nothing is raised, nothing lowered further.
    expect([...nice.values()].every((value) => value === 0 || value === BACKGROUND_NICE)).toBe(true);
  });
});
