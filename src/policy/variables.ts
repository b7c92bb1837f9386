import { createHash } from 'node:crypto';
import { checkExpression } from './condition.js';
import { didYouMean } from './suggest.js';
import type { PolicyDiagnostic } from './diagnostic.js';
import type { StageRun } from './pipeline.js';
import type { VariableSpec } from './schema.js';
import { diagnosticAt, type SourceDocument } from './source.js';

/**
 * Named conditions and constants (`kind: variables`). A `when` reads one as
 * `variables.<name>`; at load the name is replaced by its definition, in
 * parentheses, so a rule's condition compiles (once, at load) into one expression
 * and a decision evaluates it with no lookup and no extra allocation.
 */

/** A `variables.<name>` written in an expression: where it starts (offset into the text) and ends. */
export interface VariableReference {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

const IDENT_START = /[A-Za-z_]/;
const IDENT_PART = /[A-Za-z0-9_]/;

/** Every `variables.<name>` in a CEL text, string literals skipped. */
export function variableReferences(text: string): VariableReference[] {
  const found: VariableReference[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"' || c === "'") {
      i = skipString(text, i);
      continue;
    }
    if (!IDENT_START.test(c)) {
      i++;
      continue;
    }
    const start = i;
    while (i < text.length && IDENT_PART.test(text[i]!)) i++;
    const word = text.slice(start, i);
    // A raw or bytes string prefix (r"..", b"..") is part of the literal.
    if ((word === 'r' || word === 'R' || word === 'b' || word === 'B' || /^[rRbB]{2}$/.test(word)) && (text[i] === '"' || text[i] === "'")) {
      i = skipString(text, i);
      continue;
    }
    if (word !== 'variables' || previousNonSpace(text, start) === '.') continue;
    let j = i;
    while (j < text.length && /\s/.test(text[j]!)) j++;
    if (text[j] !== '.') continue;
    j++;
    while (j < text.length && /\s/.test(text[j]!)) j++;
    const nameStart = j;
    while (j < text.length && IDENT_PART.test(text[j]!)) j++;
    if (j === nameStart) continue;
    found.push({ name: text.slice(nameStart, j), start, end: j });
    i = j;
  }
  return found;
}

function previousNonSpace(text: string, at: number): string | undefined {
  let k = at - 1;
  while (k >= 0 && /\s/.test(text[k]!)) k--;
  return k >= 0 ? text[k] : undefined;
}

/** The index just past the string literal that starts at `at` (a quote). */
function skipString(text: string, at: number): number {
  const quote = text[at]!;
  const triple = text.startsWith(quote.repeat(3), at);
  const close = triple ? quote.repeat(3) : quote;
  let i = at + close.length;
  while (i < text.length) {
    if (text[i] === '\\') {
      i += 2;
      continue;
    }
    if (text.startsWith(close, i)) return i + close.length;
    if (!triple && text[i] === '\n') return i;
    i++;
  }
  return i;
}

/** Where a variable is defined, for diagnostics. */
export interface VariableSite {
  readonly source: SourceDocument;
  readonly path: readonly PropertyKey[];
}

/** The variables of a policy set, each as the CEL text that replaces its name. */
export interface VariableTable {
  readonly expansions: ReadonlyMap<string, string>;
  /** Names every definition: part of the key of each compiled document, so a changed variable recompiles the rules that may read it. */
  readonly key: string;
}

export const NO_VARIABLES: VariableTable = Object.freeze({ expansions: new Map<string, string>(), key: '' });

export { didYouMean } from './suggest.js';

const column = (offset: number | null): string => (offset === null ? '' : ` (column ${offset + 1} of the expression)`);

/**
 * Checks `text` (a `when` or a variable's `expr`) for names of unknown variables, reporting each
 * at `site` with its column; true when every name is known.
 */
export function checkReferences(text: string, known: ReadonlySet<string>, site: VariableSite, diagnostics: PolicyDiagnostic[]): boolean {
  let ok = true;
  for (const ref of variableReferences(text)) {
    if (known.has(ref.name)) continue;
    ok = false;
    diagnostics.push(diagnosticAt(site.source, site.path, `unknown variable "${ref.name}"${column(ref.start)}: define it in a variables file${didYouMean(ref.name, known)}`));
  }
  return ok;
}

/**
 * The longest text a condition may become once its variables are put in: as long as
 * the largest policy file. Each reference copies its variable's whole text, so a few
 * variables doubling one another, read a thousand times, would otherwise build
 * gigabytes before anything could refuse them.
 */
export const MAX_EXPANDED_LENGTH = 8 * 1024 * 1024;

/** Why `text` cannot have its variables put in (it would grow past MAX_EXPANDED_LENGTH), or null. */
export function expansionProblem(text: string, expansions: ReadonlyMap<string, string>): string | null {
  let length = text.length;
  for (const ref of variableReferences(text)) {
    length += (expansions.get(ref.name)?.length ?? 0) - (ref.end - ref.start);
    if (length > MAX_EXPANDED_LENGTH) {
      return `too long once its variables are put in (past ${MAX_EXPANDED_LENGTH} characters by the time variables.${ref.name} is): each reference copies the variable's whole text; read a variable fewer times, or split the condition`;
    }
  }
  return null;
}

/** `text` with every `variables.<name>` replaced by its definition in parentheses; check `expansionProblem` first. */
export function expandVariables(text: string, expansions: ReadonlyMap<string, string>): string {
  const refs = variableReferences(text);
  if (refs.length === 0) return text;
  if (expansionProblem(text, expansions) !== null) throw new RangeError(`a condition would grow past ${MAX_EXPANDED_LENGTH} characters once its variables are put in`);
  let out = '';
  let last = 0;
  for (const ref of refs) {
    out += text.slice(last, ref.start) + (expansions.get(ref.name) ?? text.slice(ref.start, ref.end));
    last = ref.end;
  }
  return out + text.slice(last);
}

/** A constant as a CEL literal. */
function literal(value: Exclude<VariableSpec["value"], undefined>): string {
  return Array.isArray(value) ? `[${value.map((v) => JSON.stringify(v)).join(', ')}]` : JSON.stringify(value);
}

/**
 * How many variables may read one another in a chain. The table is built by
 * recursion, one frame per link: a chain of 4,000 overflowed the stack ("unexpected
 * error"); a chain of 250 already makes an expression too deep for CEL to parse.
 */
export const MAX_VARIABLE_CHAIN = 100;

/** One definition as the variables stage reads it. */
export interface LocatedVariable {
  readonly spec: VariableSpec;
  readonly source: SourceDocument;
  readonly path: readonly PropertyKey[];
}

/**
 * Builds the table: duplicate names, unknown names, cycles (a variable that reads
 * itself through others) and expressions that do not compile are diagnostics at
 * file:line:col. Each definition is type-checked once, here.
 */
export function* buildVariableTable(variables: Iterable<LocatedVariable>, diagnostics: PolicyDiagnostic[]): StageRun<VariableTable> {
  const byName = new Map<string, LocatedVariable>();
  for (const variable of variables) {
    yield;
    const earlier = byName.get(variable.spec.name);
    if (earlier) {
      const at = earlier.source.locate([...earlier.path, 'name']);
      diagnostics.push(diagnosticAt(variable.source, [...variable.path, 'name'], `duplicate variable "${variable.spec.name}": already defined at ${earlier.source.file}:${at.line}:${at.col}`));
      continue;
    }
    byName.set(variable.spec.name, variable);
  }
  const known = new Set(byName.keys());
  const expansions = new Map<string, string>();
  const failed = new Set<string>();
  const resolving: string[] = [];
  const resolve = (name: string): string | null => {
    const done = expansions.get(name);
    if (done !== undefined) return done;
    if (failed.has(name)) return null;
    const variable = byName.get(name)!;
    const { spec } = variable;
    if (spec.value !== undefined) {
      const text = literal(spec.value);
      expansions.set(name, text);
      return text;
    }
    const exprPath = [...variable.path, 'expr'];
    const site = { source: variable.source, path: exprPath };
    const cycleAt = resolving.indexOf(name);
    if (cycleAt !== -1) {
      const chain = [...resolving.slice(cycleAt), name].join(' → ');
      diagnostics.push(diagnosticAt(variable.source, exprPath, `variable "${name}" refers to itself: ${chain}`));
      failed.add(name);
      return null;
    }
    if (resolving.length >= MAX_VARIABLE_CHAIN) {
      const chain = [...resolving.slice(0, 3), '…', ...resolving.slice(-2), name].join(' → ');
      diagnostics.push(diagnosticAt(variable.source, exprPath, `variable "${name}" is read through a chain of ${resolving.length} variables (${chain}); at most ${MAX_VARIABLE_CHAIN} may read one another in a chain`));
      failed.add(name);
      return null;
    }
    const text = spec.expr!;
    let ok = checkReferences(text, known, site, diagnostics);
    resolving.push(name);
    for (const ref of variableReferences(text)) if (known.has(ref.name) && resolve(ref.name) === null) ok = false;
    resolving.pop();
    if (failed.has(name)) return null;
    if (ok) {
      const checked = checkExpression(text);
      if (!checked.ok) {
        diagnostics.push(diagnosticAt(variable.source, exprPath, `variable "${name}" does not compile: ${checked.message}${column(checked.offset)}`));
        ok = false;
      }
    }
    if (!ok) {
      failed.add(name);
      return null;
    }
    const tooLong = expansionProblem(text, expansions);
    if (tooLong !== null) {
      diagnostics.push(diagnosticAt(variable.source, exprPath, `variable "${name}" is ${tooLong}`));
      failed.add(name);
      return null;
    }
    const expanded = `(${expandVariables(text, expansions)})`;
    const whole = checkExpression(expanded);
    if (!whole.ok) {
      diagnostics.push(diagnosticAt(variable.source, exprPath, `variable "${name}" does not compile once the variables it reads are put in: ${whole.message}`));
      failed.add(name);
      return null;
    }
    expansions.set(name, expanded);
    return expanded;
  };
  // A pause after each variable: resolving one checks at most a chain of them.
  for (const name of byName.keys()) {
    resolve(name);
    yield;
  }
  const key = [...expansions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([n, t]) => `${n}=${t}`).join('\u0000');
  return { expansions, key: key === '' ? '' : createHash('sha256').update(key).digest('hex') };
}
