import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT, shippedAllowedCheck, useShippedServer } from '../helpers/verdict-process.js';
import { BACKGROUND_NICE, threadPoolSize } from '../../src/thread-priority.js';

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
    // libuv's pool (the server inherits this process's environment) and a thread the deciding thread started afterwards (the writer) keep its priority.
    const normal = [...nice].filter(([tid, value]) => tid !== pid && value === 0);
    expect(normal.length).toBeGreaterThanOrEqual(threadPoolSize() + 1);
    // Every thread is one or the other: nothing is raised, nothing lowered further.
    expect([...nice.values()].every((value) => value === 0 || value === BACKGROUND_NICE)).toBe(true);
  });
});

describe.skipIf(!existsSync('/proc/self/task'))('lowerHelperThreads in a fresh node process', () => {
  it("lowers V8's workers and leaves libuv's pool, which checks wait on (WebCrypto), as it was", () => {
    ensureBuilt();
    // A process started as verdict serve starts (an ES module); its pool threads each say who they are by resolving /proc/thread-self.
    const script = `
      import { readdirSync, readFileSync } from 'node:fs';
      import { readlink } from 'node:fs/promises';
      import { lowerHelperThreads } from ${JSON.stringify(join(ROOT, 'dist', 'thread-priority.js'))};
      const lowered = await lowerHelperThreads();
      const pool = new Set();
      for (let round = 0; round < 20; round++) {
        for (const link of await Promise.all(Array.from({ length: 64 }, () => readlink('/proc/thread-self')))) pool.add(Number(link.split('/').pop()));
      }
      const nice = {};
      for (const task of readdirSync('/proc/self/task')) {
        const stat = readFileSync('/proc/self/task/' + task + '/stat', 'utf8');
        nice[task] = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      }
      console.log(JSON.stringify({ pid: process.pid, lowered, pool: [...pool], nice }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { pid: number; lowered: number; pool: number[]; nice: Record<string, number> };
    expect(out.lowered).toBeGreaterThanOrEqual(4);
    expect(out.nice[String(out.pid)]).toBe(0);
    expect(out.pool.length).toBeGreaterThan(0);
    for (const tid of out.pool) expect(out.nice[String(tid)]).toBe(0);
    const loweredNow = Object.values(out.nice).filter((value) => value === BACKGROUND_NICE).length;
    expect(loweredNow).toBe(out.lowered);
  });

  it('counts the pool as libuv does', () => {
    expect(threadPoolSize({})).toBe(4);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: '2' })).toBe(2);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: ' 7x' })).toBe(7);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: '0' })).toBe(1);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: '' })).toBe(1);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: 'many' })).toBe(1);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: '5000' })).toBe(1024);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: '-3' })).toBe(1024);
  });
});
