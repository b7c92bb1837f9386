import { Environment } from '@marcbachmann/cel-js';
import { SharedCompiled } from './shared-compiled.js';
import { didYouMean } from './suggest.js';
import { RE2_MATCHES, bindMatches, applyBudget, guardComparisons, re2Matches, withinBudget } from './condition-guards.js';

export { DEFAULT_CONDITION_BUDGET, getConditionBudget, setConditionBudget } from './condition-guards.js';

// `when` conditions are CEL. The variables in scope are the request's parts (registered
// below); anything else is a compile-time error, so a typo never becomes a silent deny.

/** The activation a condition sees: exactly the request's parts. */
export interface ConditionInput {
  readonly principal: unknown;
  readonly resource: unknown;
  readonly action: string;
  readonly context: unknown;
}

/** A compiled condition: returns true to match. Throws when it cannot be evaluated. */
export type Condition = (input: ConditionInput) => unknown;

export type CompiledCondition =
  | { readonly ok: true; readonly evaluate: Condition }
  | { readonly ok: false; readonly message: string; readonly offset: number | null };

const environment = new Environment({ unlistedVariablesAreDyn: false, homogeneousAggregateLiterals: false })
  .registerVariable('principal', 'map')
  .registerVariable('resource', 'map')
  .registerVariable('action', 'string')
  .registerVariable('context', 'map')
  .registerFunction(`string.${RE2_MATCHES}(string): bool`, re2Matches);

// Conditions run against plain maps (above), but are type-checked once, at load time, against
// the request's shape: an unknown field (`principal.attribute.org`), a condition that is not
// true or false (`principal.id`) or a mistyped operation (`resource.type + 1`) is a load
// error with file:line:col, not a DENIED_BY_ERROR on every request it covers.
const typedRequest = new Environment({ unlistedVariablesAreDyn: false, homogeneousAggregateLiterals: false })
  .registerType('verdict.Principal', { fields: { id: 'string', roles: 'list<string>', directRoles: 'list<string>', attributes: 'map<string, dyn>' } })
  .registerType('verdict.Resource', { fields: { type: 'string', id: 'string', attributes: 'map<string, dyn>' } })
  .registerType('verdict.Context', { fields: { attributes: 'map<string, dyn>' } })
  .registerVariable('principal', 'verdict.Principal')
  .registerVariable('resource', 'verdict.Resource')
  .registerVariable('action', 'string')
  .registerVariable('context', 'verdict.Context');

// Named conditions and constants are read as `variables.<name>`. A text that names them is
// checked once in this environment, so an error points at the column the author wrote, and
// then compiled with each name replaced by its definition (see variables.ts).
const withVariables = new Environment({ unlistedVariablesAreDyn: false, homogeneousAggregateLiterals: false })
  .registerVariable('principal', 'map')
  .registerVariable('resource', 'map')
  .registerVariable('action', 'string')
  .registerVariable('context', 'map')
  .registerVariable('variables', 'map')
  .registerFunction(`string.${RE2_MATCHES}(string): bool`, re2Matches);

/** Parses an expression and binds its `matches` calls to RE2 (condition-guards.ts). */
function parseGuarded(env: Environment, expression: string, literalPatterns: boolean): ReturnType<Environment['parse']> | { readonly message: string; readonly offset: number | null } {
  let parsed;
  try {
    parsed = env.parse(expression);
  } catch (error) {
    return describe(error);
  }
  return bindMatches(parsed.ast, { literalPatterns }) ?? parsed;
}

/**
 * Parses and type-checks an expression (of any type) that may name `variables.<name>`.
 * Returns its type, or the first error and where it is.
 */
export function checkExpression(expression: string): { readonly ok: true; readonly type: string } | { readonly ok: false; readonly message: string; readonly offset: number | null } {
  const parsed = parseGuarded(withVariables, expression, false);
  if (!(typeof parsed === 'function')) return { ok: false, ...parsed };
  const checked = parsed.check();
  if (!checked.valid) return { ok: false, ...describe(checked.error) };
  return { ok: true, type: checked.type ?? "dyn" };
}

interface CelErrorShape {
  summary?: string;
  message: string;
  range?: { start: number };
}

const REQUEST_FIELDS = ['id', 'roles', 'directRoles', 'attributes', 'type'];

function describe(error: unknown): { message: string; offset: number | null } {
  const e = error as CelErrorShape;
  const text = typeof e.summary === 'string' && e.summary ? e.summary : String(e.message ?? error);
  const nl = text.indexOf('\n');
  // `matches` calls are bound to RE2 under another name; the author wrote `matches`.
  let message = (nl === -1 ? text : text.slice(0, nl)).replaceAll(RE2_MATCHES, 'matches');
  // `principal.id = "x"`: CEL compares with `==`.
  if (message === 'Unexpected character: =') message += ' (to compare, write ==)';
  // 50,000 terms joined by && nest as deep as they are long, past the parser's stack.
  if (error instanceof RangeError && /call stack/i.test(message)) message = 'too long a chain of operators to compile (the parser nests one level per operator); split it into named conditions (kind: variables)';
  return { message, offset: e.range ? e.range.start : null };
}

// Policy sets repeat the same conditions across many rules (`resource.attributes.org ==
// principal.attributes.org` per tenant). Compiling each distinct text once keeps one hot
// copy for all of them, which matters more for decision speed than for load time. A
// compiled condition is immutable, so sets loaded one after another may share it.
const compiledByText = new SharedCompiled<CompiledCondition>();

/** Parses and type-checks a condition once, at load time; the same text compiles once. */
export function compileCondition(expression: string): CompiledCondition {
  return compiledByText.get(expression, () => compileUncached(expression));
}

function compileUncached(expression: string): CompiledCondition {
  const parsed = parseGuarded(environment, expression, true);
  if (!(typeof parsed === 'function')) return { ok: false, ...parsed };
  const checked = parsed.check();
  if (!checked.valid) return { ok: false, ...describe(checked.error) };
  let typed;
  try {
    typed = typedRequest.parse(expression).check();
  } catch (error) {
    return { ok: false, ...describe(error) };
  }
  if (!typed.valid) {
    const problem = describe(typed.error);
    const unknown = /^No such key: (.+)$/.exec(problem.message);
    // `principal.attribute.org`: say which fields there are, and which was probably meant.
    if (unknown) return { ok: false, offset: problem.offset, message: `unknown field "${unknown[1]}"${didYouMean(unknown[1]!, REQUEST_FIELDS)} (the request has principal.{id, roles, directRoles, attributes}, resource.{type, id, attributes}, context.attributes, action)` };
    return { ok: false, ...problem };
  }
  if (typed.type !== 'bool' && typed.type !== 'dyn') {
    return { ok: false, message: `a condition must be true or false, but this one is of type ${typed.type}`, offset: null };
  }
  const evaluate = parsed as unknown as Condition;
  guardComparisons(parsed.ast);
  // A condition that works on lists runs within the budget (condition-guards.ts); one that does not costs at most its size.
  if (applyBudget(parsed.ast) === 0) return { ok: true, evaluate };
  return { ok: true, evaluate: (input) => withinBudget(evaluate, input) };
}

/** The first line of a CEL evaluation error, without the source excerpt the library appends. */
export function conditionErrorMessage(error: unknown): string {
  return describe(error).message;
}

/**
 * Parses and type-checks an expression of any type (a rate limit's key or cost), once,
 * at load time; `expected` lists the types it may have (`dyn` is always accepted).
 */
export function compileExpression(expression: string, expected: readonly string[]): CompiledCondition {
  // The same guards as a condition: matches() on RE2 with patterns from the policy, and the work budget.
  const parsed = parseGuarded(environment, expression, true);
  if (!(typeof parsed === 'function')) return { ok: false, ...parsed };
  const checked = parsed.check();
  if (!checked.valid) return { ok: false, ...describe(checked.error) };
  const type = checked.type ?? 'dyn';
  if (type !== 'dyn' && !expected.includes(type)) {
    return { ok: false, message: `expected an expression of type ${expected.join(' or ')}, but this one is of type ${type}`, offset: null };
  }
  const evaluate = parsed as unknown as Condition;
  guardComparisons(parsed.ast);
  if (applyBudget(parsed.ast) === 0) return { ok: true, evaluate };
  return { ok: true, evaluate: (input) => withinBudget(evaluate, input) };
}
