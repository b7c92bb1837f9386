import { VerdictError } from '../errors.js';

/**
 * Loading a policy directory is a list of named stages run in order over one
 * shared state (see load.ts). A stage is a generator so that the same code can
 * run straight through (the CLI) or in slices between which the event loop
 * answers checks (the server's reloads): it yields `undefined` where it may
 * pause, and a promise where it must wait for I/O.
 */
export type Pause = Promise<unknown> | undefined;
export type StageRun<T = void> = Generator<Pause, T, unknown>;

export interface Stage<S> {
  readonly name: string;
  run(state: S): StageRun;
}

/** Waits for `promise` inside a stage; the driver resumes the stage with its value. */
export function* wait<T>(promise: Promise<T>): StageRun<T> {
  return (yield promise) as T;
}

/** Runs stages to the end in one go; a stage that waits for I/O here is a bug (the synchronous readers never do). */
export function runStages<S>(stages: readonly Stage<S>[], state: S): void {
  for (const stage of stages) {
    const run = stage.run(state);
    for (let step = run.next(); !step.done; step = run.next()) {
      if (step.value !== undefined) throw new VerdictError('INTERNAL', `stage ${stage.name} waited for I/O in a synchronous load`);
    }
  }
}
