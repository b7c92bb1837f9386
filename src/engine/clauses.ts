import { compileExpression, conditionErrorMessage, type Condition, type ConditionInput } from '../policy/condition.js';
import type { PolicySet } from '../policy/policy-set.js';
import type { DecisionRequest } from '../types.js';
import { cutText } from '../cut-text.js';

/**
 * Explain per clause: which operand of a condition's top-level `&&` / `||` (and, inside
 * a false or erring one, which of its own) was false or erred, with the request values
 * it read. Only `explain` calls this — never the decision path — so the clauses are
 * parsed and compiled here, on demand.
 */
export interface ClauseExplanation {
  /** The clause as it runs (named conditions put in). */
  readonly text: string;
  readonly outcome: 'true' | 'false' | 'error';
  /** The error, when it erred. */
  readonly error?: string;
  /** What it read: `resource.attributes.team = "vision"`, `principal.attributes.clearance absent`. */
  readonly values: readonly string[];
  /** For a false or erring clause made of clauses: theirs. */
  readonly clauses?: readonly ClauseExplanation[];
}

const MAX_DEPTH = 4;
const MAX_CLAUSES = 16;

/** The clauses of a false or erring condition, explained; empty when it has no top-level && or ||. */
export function explainClauses(text: string, policySet: PolicySet, request: DecisionRequest): readonly ClauseExplanation[] {
  return clausesOf(text, conditionInput(policySet, request), 0) ?? [];
}

/** The input a condition sees: `principal.roles` the effective roles, the roles as sent under `directRoles`. */
function conditionInput(policySet: PolicySet, request: DecisionRequest): ConditionInput {
  const roles = new Set(request.principal.roles);
  for (const role of request.principal.roles) for (const inherited of policySet.roles.get(role)?.effectiveRoles ?? []) roles.add(inherited);
  const principal = { id: request.principal.id, roles: [...roles], directRoles: request.principal.roles, attributes: request.principal.attributes };
  return { principal, resource: request.resource, action: request.action, context: request.context };
}

function clausesOf(text: string, input: ConditionInput, depth: number): ClauseExplanation[] | null {
  if (depth >= MAX_DEPTH) return null;
  const inner = unwrap(text);
  const split = splitTopLevel(inner, '||') ?? splitTopLevel(inner, '&&');
  if (split === null) {
    // `!(a && b)`: the clauses inside the negation.
    const negated = /^!\s*\(/.test(inner) ? unwrap(inner.slice(1).trim()) : null;
    return negated !== null && negated !== inner.slice(1).trim() ? clausesOf(negated, input, depth + 1) : null;
  }
  return split.slice(0, MAX_CLAUSES).map((clause): ClauseExplanation => {
    const outcome = run(clause, input);
    const values = valuesRead(clause, input);
    const base = typeof outcome === 'string' ? { text: clause, outcome: 'error' as const, error: outcome, values } : { text: clause, outcome: outcome ? ('true' as const) : ('false' as const), values };
    if (base.outcome === 'true') return base;
    const nested = clausesOf(clause, input, depth + 1);
    return nested === null ? base : { ...base, clauses: nested };
  });
}

const compiled = new Map<string, Condition | string>();

/** Runs one clause: true, false, or why it could not be evaluated. */
function run(clause: string, input: ConditionInput): boolean | string {
  let evaluate = compiled.get(clause);
  if (evaluate === undefined) {
    const result = compileExpression(clause, ['bool']);
    evaluate = result.ok ? result.evaluate : result.message;
    if (compiled.size > 1000) compiled.clear();
    compiled.set(clause, evaluate);
  }
  if (typeof evaluate === 'string') return evaluate;
  try {
    const value = evaluate(input);
    return typeof value === 'boolean' ? value : `returned ${typeof value}, expected true or false`;
  } catch (error) {
    return conditionErrorMessage(error);
  }
}

const PATH = /(?<![.\w])(principal|resource|context)((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)+)|(?<![.\w])action\b/g;

/** The request values a clause names, as `path = value` (or `path absent`). */
function valuesRead(clause: string, input: ConditionInput): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const match of stripStrings(clause).matchAll(PATH)) {
    const path = match[0].replace(/\s+/g, '');
    if (seen.has(path) || path.endsWith('.size')) continue;
    seen.add(path);
    let value: unknown = input;
    for (const key of path.split('.')) {
      value = value !== null && typeof value === 'object' && !Array.isArray(value) && Object.prototype.hasOwnProperty.call(value, key) ? (value as Record<string, unknown>)[key] : undefined;
      if (value === undefined) break;
    }
    if (value === undefined) {
      out.push(`${path} absent`);
      continue;
    }
    const shown = JSON.stringify(value) ?? String(value);
    out.push(`${path} = ${cutText(shown, 80)}`);
    if (out.length >= 8) break;
  }
  return out;
}

/** The text with string literals blanked, so that paths inside them are not read as paths. */
function stripStrings(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; ) {
    const c = text[i]!;
    if (c === '"' || c === "'") {
      const end = stringEnd(text, i);
      out += ' '.repeat(end - i);
      i = end;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** The index past the string literal starting at `at`. */
function stringEnd(text: string, at: number): number {
  const quote = text[at]!;
  const close = text.startsWith(quote.repeat(3), at) ? quote.repeat(3) : quote;
  for (let i = at + close.length; i < text.length; i++) {
    if (text[i] === '\\') {
      i++;
      continue;
    }
    if (text.startsWith(close, i)) return i + close.length;
  }
  return text.length;
}

/** Splits at the top-level occurrences of `op` (outside brackets and strings); null when there are none, or a top-level `?:` makes the split unsafe. */
function splitTopLevel(text: string, op: '&&' | '||'): string[] | null {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"' || c === "'") {
      i = stringEnd(text, i) - 1;
      continue;
    }
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (depth === 0 && c === '?') return null;
    else if (depth === 0 && text.startsWith(op, i)) {
      parts.push(text.slice(start, i).trim());
      start = i + 2;
      i++;
    }
  }
  if (parts.length === 0) return null;
  parts.push(text.slice(start).trim());
  return parts;
}

/** The text without parentheses that enclose all of it. */
function unwrap(text: string): string {
  let t = text.trim();
  while (t.startsWith('(') && t.endsWith(')') && closingOf(t) === t.length - 1) t = t.slice(1, -1).trim();
  return t;
}

/** The index of the bracket closing the one at 0. */
function closingOf(text: string): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"' || c === "'") {
      i = stringEnd(text, i) - 1;
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
  }
  return -1;
}

/** The clauses as indented lines, for the command line. */
export function formatClauses(clauses: readonly ClauseExplanation[], indent = '          '): string[] {
  const lines: string[] = [];
  for (const clause of clauses) {
    const what = clause.outcome === 'error' ? `ERROR (${clause.error})` : clause.outcome;
    const values = clause.values.length > 0 ? `  [${clause.values.join(', ')}]` : '';
    lines.push(`${indent}${what.padEnd(5)} ${clause.text}${values}`);
    if (clause.clauses) for (const line of formatClauses(clause.clauses, `${indent}  `)) lines.push(line);
  }
  return lines;
}
