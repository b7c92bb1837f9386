import { RE2JS } from 're2js';

// Two guards on the CEL a condition runs, so that no request can make one slow:
//
// - `matches` uses RE2 (re2js, pure JavaScript): linear in the length of the string,
//   whatever the pattern. The CEL library's own `matches` builds a backtracking RegExp,
//   where `"aaaa…!".matches("^(a+)+$")` takes seconds. CEL specifies RE2 syntax anyway.
// - A budget: every comprehension (all, exists, exists_one, map, filter) is charged the
//   number of elements it ranges over before it starts, and `in`, `+`, `==` and `!=` the
//   size of the lists they read, so nested loops over a long list give up instead of
//   running for seconds. `matches` is charged by the length of its string (one step per
//   MATCHES_CHARACTERS_PER_STEP characters, and one for the call), since RE2 is linear in
//   it: a loop of matches over long strings gives up too. A condition over budget is an error,
//   whatever it evaluated to, and an erring condition fails closed (engine/evaluate.ts).
//
// - Comparisons across types: CEL's `==`, `!=` and `in` answer false for values of
//   different types, so a deny written `resource.attributes.env == "production"` would
//   be lifted by sending `env: ["production"]` (or `{"name": "production"}`, or `1`
//   where the policy compares a string). Such a comparison is an error here, and an
//   erring condition fails closed. Comparing with `null` stays allowed (`x != null`).
//
// All work on the parsed expression (its AST), between the library's parse and check
// (the budget and the comparison guard once it is checked, when every node has its handler).

/**
 * The name `.matches(…)` calls are bound to. The library registers its own
 * `string.matches(string)` and refuses a second one, so calls are renamed to this
 * function (registered in condition.ts) right after parsing.
 */
export const RE2_MATCHES = 'matches_re2';

/** How many list or map elements a condition may go through, in all, per evaluation. */
export const DEFAULT_CONDITION_BUDGET = 10_000;

/**
 * The exchange rate of `matches` into budget steps. Measured with re2js on 8 KiB strings,
 * one character cost 0.5 to 95 ns depending on the pattern (anchored digit runs and `.{100}$`
 * the costliest), and one step of a nested loop about 250 ns: at 4 characters a step, the
 * costliest patterns spend a step about as fast as a loop does.
 */
export const MATCHES_CHARACTERS_PER_STEP = 4;

let conditionBudget = DEFAULT_CONDITION_BUDGET;

/** Sets the budget of every condition evaluated from now on (the server's `requestLimits.maxConditionSteps`). */
export function setConditionBudget(steps: number): void {
  if (!Number.isSafeInteger(steps) || steps < 0) throw new RangeError(`a condition budget is a whole number of steps, not ${steps}`);
  conditionBudget = steps;
}

export function getConditionBudget(): number {
  return conditionBudget;
}

// ------------------------------------------------------------------ RE2 matches

const compiledPatterns = new Map<string, RE2JS>();
const PATTERN_CACHE_LIMIT = 1_000;

/** Compiles a pattern with RE2 syntax; throws RE2's own message (`missing closing )`) when it is not one. */
function compilePattern(pattern: string): RE2JS {
  let compiled = compiledPatterns.get(pattern);
  if (compiled) return compiled;
  compiled = RE2JS.compile(pattern);
  if (compiledPatterns.size >= PATTERN_CACHE_LIMIT) compiledPatterns.clear();
  compiledPatterns.set(pattern, compiled);
  return compiled;
}

/** Why a pattern is not valid RE2, or null when it is. */
export function patternProblem(pattern: string): string | null {
  try {
    compilePattern(pattern);
    return null;
  } catch (error) {
    return `invalid regular expression ${JSON.stringify(pattern)} for matches(): ${reMessage(error)}`;
  }
}

const reMessage = (error: unknown): string => String((error as Error).message ?? error).replace(/^error parsing regexp: /, '');

/** `value.matches(pattern)`: RE2 semantics, true when the pattern matches any part of the value. */
export function re2Matches(value: string, pattern: string): boolean {
  let compiled: RE2JS;
  try {
    compiled = compilePattern(pattern);
  } catch (error) {
    throw new Error(`invalid regular expression for matches(): ${reMessage(error)}`);
  }
  return compiled.test(value);
}

// ------------------------------------------------------------------ the AST

/** The little of the library's AST node these guards read and change. */
interface CelNode {
  readonly op: string;
  args: unknown;
  readonly start: number;
  readonly meta: { readonly alternate?: CelNode };
  handle?: (items: unknown, ...rest: unknown[]) => unknown;
}

const isNode = (value: unknown): value is CelNode =>
  typeof value === 'object' && value !== null && typeof (value as { op?: unknown }).op === 'string' && 'args' in value && 'meta' in value;

/** Calls `visit` once on every node of a parsed CEL expression's tree, macro expansions included. */
export function forEachCelNode(root: unknown, visit: (node: CelNode) => void): void {
  const seen = new Set<object>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item !== 'object' || item === null || seen.has(item)) continue;
    seen.add(item);
    if (isNode(item)) {
      visit(item);
      if (item.op === 'value') continue;
      if (item.meta.alternate) stack.push(item.meta.alternate);
      stack.push(item.args);
    } else if (Array.isArray(item)) {
      for (const element of item) stack.push(element);
    } else if (Object.getPrototypeOf(item) === Object.prototype) {
      // A comprehension's arguments: iterable, init, step, ...
      for (const value of Object.values(item)) stack.push(value);
    }
  }
}

/** A problem found in an expression before it is type-checked, and where it is. */
export interface GuardProblem {
  readonly message: string;
  readonly offset: number;
}

/**
 * Binds every `.matches(pattern)` call of a freshly parsed expression to RE2, and compiles
 * each pattern now, so a pattern RE2 cannot compile is a load error. With `literalPatterns`
 * (a condition as it runs, named constants put in) a pattern must be a string written in
 * the policy: one taken from the request could be chosen to be costly even for RE2, whose
 * time grows with the pattern's size as well as the string's. Returns the first problem, or null.
 */
export function bindMatches(ast: unknown, options: { readonly literalPatterns: boolean }): GuardProblem | null {
  let problem: GuardProblem | null = null;
  forEachCelNode(ast, (node) => {
    if (node.op !== 'rcall') return;
    const args = node.args as [string, unknown, unknown[]];
    if (args[0] === RE2_MATCHES) problem ??= { message: `unknown function ${RE2_MATCHES}`, offset: node.start };
    if (args[0] !== 'matches' || args[2].length !== 1) return;
    args[0] = RE2_MATCHES;
    const pattern = args[2][0];
    if (isNode(pattern) && pattern.op === 'value' && typeof pattern.args === 'string') {
      const wrong = patternProblem(pattern.args);
      if (wrong !== null) problem ??= { message: wrong, offset: pattern.start };
    } else if (options.literalPatterns && isNode(pattern)) {
      problem ??= { message: 'matches() takes its pattern as a string written in the policy (or a named constant), not one from the request', offset: pattern.start };
    }
  });
  return problem;
}
// ------------------------------------------------------------------ the budget

/** A condition ran out of budget. One per evaluation: later charges throw the same one. */
export class ConditionBudgetExceeded extends Error {
  constructor(budget: number) {
    super(`condition gave up: it would go through more than ${budget} list or map elements (the condition budget; matches() counts one per ${MATCHES_CHARACTERS_PER_STEP} characters of its string); it fails closed`);
    this.name = 'ConditionBudgetExceeded';
  }
}

let stepsLeft = Number.POSITIVE_INFINITY;
let exceeded: ConditionBudgetExceeded | null = null;

function sizeOf(items: unknown): number {
  if (Array.isArray(items)) return items.length;
  if (items instanceof Map || items instanceof Set) return items.size;
  if (typeof items === 'object' && items !== null) {
    let n = 0;
    for (const key in items) if (Object.prototype.hasOwnProperty.call(items, key)) n++;
    return n;
  }
  return 0;
}

function charge(cost: number): void {
  stepsLeft -= cost;
  if (stepsLeft < 0) throw (exceeded ??= new ConditionBudgetExceeded(conditionBudget));
}

/** What a list operation costs: `x in list` and `list == list` read the list, `list + list` copies both. */
function operationCost(op: string, left: unknown, right: unknown): number {
  if (op === 'in') return Array.isArray(right) ? right.length : 0;
  if (typeof left !== 'object' || left === null) return 0;
  if (op === '+') return sizeOf(left) + sizeOf(right);
  return sizeOf(left);
}

const CHARGED_OPERATORS = new Set(['in', '+', '==', '!=']);

/** What `value.matches(pattern)` costs: one step for the call, one per MATCHES_CHARACTERS_PER_STEP characters of the value. */
const matchesCost = (value: unknown): number => (typeof value === 'string' ? 1 + Math.floor(value.length / MATCHES_CHARACTERS_PER_STEP) : 1);

/**
 * Makes a type-checked expression pay for its work on lists and maps: every comprehension
 * the size of what it ranges over, before it starts; `in`, `+`, `==` and `!=` the size of
 * the lists they read; `matches` (bound by bindMatches) the length of its string, before
 * it runs. Returns how many places pay: an expression with none needs no budget.
 */
export function applyBudget(ast: unknown): number {
  let found = 0;
  forEachCelNode(ast, (node) => {
    if (typeof node.handle !== 'function') return;
    const run = node.handle;
    if (node.op === 'comprehension') {
      node.handle = (items: unknown, ...rest: unknown[]) => {
        charge(sizeOf(items));
        return run(items, ...rest);
      };
      // The library asks `condition(accumulator)` before each step (all() stops at the first
      // false). Once over budget, every loop stops at its next step rather than running on
      // to collect one error per element.
      const args = node.args as { condition?: (accumulator: unknown) => boolean };
      const goOn = args.condition;
      args.condition = goOn ? (accumulator) => exceeded === null && goOn(accumulator) : () => exceeded === null;
      found++;
    } else if (CHARGED_OPERATORS.has(node.op)) {
      const op = node.op;
      node.handle = (left: unknown, right: unknown, ...rest: unknown[]) => {
        charge(operationCost(op, left, right));
        return run(left, right, ...rest);
      };
      found++;
    } else if (node.op === 'rcall' && (node.args as [string])[0] === RE2_MATCHES) {
      // The library calls a method with its receiver and arguments in one array.
      node.handle = (values: unknown, ...rest: unknown[]) => {
        charge(matchesCost((values as unknown[])[0]));
        return run(values, ...rest);
      };
      found++;
    }
  });
  return found;
}

/**
 * Runs one evaluation within the budget. Whatever the expression returned, a run that
 * went over budget throws: a comprehension that swallowed the error (CEL's `all` is false
 * if any element is false, errors or not) must not turn it into an answer.
 */
export function withinBudget<A, T>(run: (input: A) => T, input: A): T {
  stepsLeft = conditionBudget;
  exceeded = null;
  let result: T;
  try {
    result = run(input);
  } catch (error) {
    if (exceeded) throw exceeded;
    throw error;
  }
  if (exceeded) throw exceeded;
  return result;
}

// ------------------------------------------------------------------ comparisons across types

/** A comparison of values of different types: the request holds another type than the condition expects. */
export class ConditionTypeMismatch extends Error {
  constructor(operator: string, left: string, right: string) {
    super(`cannot compare a ${left} with a ${right} (${operator}): the request holds another type than the condition expects; it fails closed`);
    this.name = 'ConditionTypeMismatch';
  }
}

/** A value's type as CEL compares it (and the rules' matchers, matcher.ts): 2 and 2.0 are both a number. */
export type ValueKind = 'string' | 'bool' | 'number' | 'list' | 'map' | 'bytes' | 'null' | 'other';

export function kindOf(value: unknown): ValueKind {
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    case 'number':
    case 'bigint':
      return 'number';
    case 'undefined':
      return 'null';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value) || value instanceof Set) return 'list';
      if (value instanceof Uint8Array) return 'bytes';
      const prototype: unknown = Object.getPrototypeOf(value);
      if (value instanceof Map || prototype === Object.prototype || prototype === null) return 'map';
      // The library's uint is an object whose value is a bigint.
      if (typeof (value as { valueOf(): unknown }).valueOf() === 'bigint') return 'number';
      return 'other';
    }
    default:
      return 'other';
  }
}

/** Kinds that never compare equal to one another; null and the library's own types (timestamps, types) are left to CEL. */
const comparable = (kind: ValueKind): boolean => kind !== 'null' && kind !== 'other';

/** The one kind every element has, or null for none (empty) or several. */
function elementKind(items: Iterable<unknown>): ValueKind | null {
  let kind: ValueKind | null = null;
  for (const item of items) {
    const k = kindOf(item);
    if (kind === null) kind = k;
    else if (k !== kind) return null;
  }
  return kind;
}

const isList = (value: unknown): value is unknown[] | Set<unknown> => Array.isArray(value) || value instanceof Set;

/** Throws when `left in list` went through a list whose items all have another type than `left` (see the header). */
function checkListMembership(left: unknown, right: Iterable<unknown>): void {
  const leftKind = kindOf(left);
  if (!comparable(leftKind)) return;
  const kind = elementKind(right);
  if (kind !== null && comparable(kind) && kind !== leftKind) throw new ConditionTypeMismatch('in', leftKind, `list of ${kind}s`);
}

/**
 * Throws when `left op right` would compare values of different types (see the header);
 * `in` over a list is checked by checkListMembership, once it has answered false.
 */
function checkComparison(op: string, left: unknown, right: unknown): void {
  const leftKind = kindOf(left);
  if (!comparable(leftKind)) return;
  if (op === 'in') {
    if (right instanceof Map) {
      const kind = elementKind(right.keys());
      if (kind !== null && comparable(kind) && kind !== leftKind) throw new ConditionTypeMismatch('in', leftKind, `map with ${kind} keys`);
    } else if (kindOf(right) === 'map' && leftKind !== 'string') {
      // An object's keys are strings: a list or number would be looked up as its text.
      throw new ConditionTypeMismatch('in', leftKind, 'map with string keys');
    }
    return;
  }
  const rightKind = kindOf(right);
  if (comparable(rightKind) && rightKind !== leftKind) throw new ConditionTypeMismatch(op, leftKind, rightKind);
}

const COMPARISONS = new Set(['==', '!=', 'in']);

/** Makes every `==`, `!=` and `in` of a type-checked expression refuse values of different types. */
export function guardComparisons(ast: unknown): void {
  forEachCelNode(ast, (node) => {
    if (typeof node.handle !== 'function' || !COMPARISONS.has(node.op)) return;
    const run = node.handle;
    const op = node.op;
    node.handle = (left: unknown, right: unknown, ...rest: unknown[]) => {
      if (op === 'in' && isList(right)) {
        // Found means an item of the same type matched: the list is read again only to tell a miss from a mismatch.
        const found = run(left, right, ...rest);
        if (found === false) checkListMembership(left, right);
        return found;
      }
      checkComparison(op, left, right);
      return run(left, right, ...rest);
    };
  });
}
