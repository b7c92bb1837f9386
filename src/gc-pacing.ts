import { setFlagsFromString } from 'node:v8';

/**
 * How far the old generation may grow past what the last full collection kept
 * before the next one starts, in percent.
 *
 * Every HTTP/2 request leaves garbage that only a full collection frees: node
 * hands each header value that is not in HPACK's static table to JavaScript as
 * an external string, and V8 allocates external strings in the old generation.
 * A full collection finalizes the dead ones one by one in its final pause. Left
 * to its own heuristics, V8 lets a serving verdict's old generation (about 30 MB
 * kept) grow to about 100 MB first, so under sustained load one pause in every
 * few hundred thousand checks held the deciding thread for 280–345 ms, past a
 * gateway's deadline (README, "Full collections"). At 30% the collections come
 * three to six times as often and each one holds the thread for 25–60 ms, for
 * 2–4% more CPU per check.
 */
export const HEAP_GROWING_PERCENT = 30;

/** The V8 flag, in either spelling, as an operator may pass it to node (NODE_OPTIONS refuses it). */
const FLAG = /^--heap[-_]growing[-_]percent\b/;

/**
 * Sets V8's old-generation growth for this process, unless the operator chose
 * one on node's command line: V8 reads it each time a full collection ends, so
 * setting it at start-up applies from the next one. Returns the percent set,
 * null when the operator's choice stands.
 */
export function paceFullCollections(execArgv: readonly string[] = process.execArgv): number | null {
  if (execArgv.some((arg) => FLAG.test(arg))) return null;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return HEAP_GROWING_PERCENT;
}
