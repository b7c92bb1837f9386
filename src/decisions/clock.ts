/**
 * The writer's sense of time: when rows have gone unsigned too long, when it
 * opened the log, what a health probe stamps, when to retry. Tests pass a
 * clock they advance by hand instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Call `fn` every `ms` milliseconds until the returned function is called. Never keeps the process alive. */
  every(ms: number, fn: () => void): () => void;
  /** Call `fn` once after `ms` milliseconds unless the returned function is called first. Never keeps the process alive. */
  after(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  every: (ms, fn) => {
    const timer = setInterval(fn, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};
