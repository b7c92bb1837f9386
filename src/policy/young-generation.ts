import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Keeps the young generation's collections short while a reload runs on the
 * deciding thread. A reload keeps much of what it builds (the new index, the
 * compiled rules of changed documents), and a young-generation collection copies
 * whatever is still alive: left to itself, V8 collects when the new space is full
 * (16 MB), and one collection then copies megabytes in one pause of 10 ms or more.
 * Collected between slices once a little has been allocated, each collection
 * copies only what the last slices kept, and runs in a turn of its own.
 * Nothing of this runs while no reload does.
 */
export interface YoungGenerationPacer {
  /** Whether enough has been allocated since the last collection (survivors of that one aside) for one to be worth its turn. */
  due(): boolean;
  collect(): void;
}

/** New-space bytes in use past which the reload collects at its next pause. */
export const PACE_BYTES = 512 * 1024;

type Collector = (options: { type: 'minor' | 'major' }) => void;

let collector: Collector | null | undefined;

/**
 * V8's collector, reached without starting Node with --expose-gc: the flag is set
 * for as long as it takes a new context to be made with `gc` in it, then unset,
 * so no other context sees it. Null where this is not possible.
 */
function minorCollector(): Collector | null {
  if (collector !== undefined) return collector;
  const global = (globalThis as { gc?: unknown }).gc;
  if (typeof global === 'function') return (collector = global as Collector);
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    collector = typeof gc === 'function' ? (gc as Collector) : null;
  } catch {
    collector = null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return collector;
}

function newSpaceUsed(): number {
  for (const space of getHeapSpaceStatistics()) if (space.space_name === 'new_space') return space.space_used_size;
  return 0;
}

/** The pacer of this thread; null where V8's collector cannot be reached (reloads then run without it). */
export function youngGenerationPacer(paceBytes = PACE_BYTES): YoungGenerationPacer | null {
  const collect = minorCollector();
  if (collect === null) return null;
  // What the last collection left in the new space: survivors, not allocation.
  let left = 0;
  return {
    due: () => newSpaceUsed() - left >= paceBytes,
    collect: () => {
      collect({ type: 'minor' });
      left = newSpaceUsed();
    },
  };
}
