import { someOf } from './suggest.js';
import type { AttributeValue, DecisionRequest } from '../types.js';
import type { AttributePart, AttributeSchemas } from './attribute-schema.js';
import { compileExpression, type Condition, type ConditionInput } from './condition.js';
import type { PolicyDiagnostic } from './diagnostic.js';
import type { StageRun } from './pipeline.js';
import { attributeMatchers, attributeReader, type AttributeMatcher, type MatchedPart } from './matcher.js';
import { DURATION_PATTERN, RATE_PATTERN, type LimitSpec } from './schema.js';
import { diagnosticAt } from './source.js';
import { roleHoldersFor, type RoleGraph } from './stages/roles.js';
import { readsPrincipalRoles, seeingEffectiveRoles } from './effective-roles.js';
import { compileWhen, typedMatchers, type Typing } from './stages/rules.js';
import type { Located } from './stages/state.js';
import { checkReferences, didYouMean, expandVariables, expansionProblem, variableReferences, type VariableTable } from './variables.js';

/** A rate and burst: `count` units per `periodMs`, up to `burst` at once from rest. */
export interface LimitRate {
  /** As written, `100/minute`. */
  readonly text: string;
  readonly count: number;
  readonly periodMs: number;
  readonly burst: number;
  /** periodMs / count: the time one unit takes to come back. */
  readonly emissionMs: number;
}

/** Where the count of a call is kept: a key (principal id by default) under the limit's id. */
export type LimitKey = (request: DecisionRequest) => string;

/** A rate limit ready to apply: what it applies to, what it counts by, how much. */
export interface CompiledLimit {
  readonly id: string;
  readonly description: string | null;
  readonly file: string;
  readonly line: number;
  /** null: every action. */
  readonly actions: ReadonlySet<string> | null;
  /** null: every resource type. */
  readonly resourceTypes: ReadonlySet<string> | null;
  /** Every role whose holder satisfies `principal.roles`, inheritance included; null when none are named. */
  readonly roleHolders: ReadonlySet<string> | null;
  readonly matchers: readonly AttributeMatcher[];
  readonly condition: Condition | null;
  /** How the key is written: `principal`, `principal+resource`, `principal.attributes.org`, or the CEL text. */
  readonly keySource: string;
  /** The key of a request; throws (an Error whose message says why) when it cannot be made. */
  readonly key: LimitKey;
  /** The rate when no tier applies. */
  readonly rate: LimitRate;
  /** Rates by the value of a principal attribute (`tier: premium`); null without tiers. */
  readonly tiers: { readonly attribute: string; readonly read: (request: DecisionRequest) => AttributeValue | undefined; readonly rates: ReadonlyMap<string, LimitRate> } | null;
  /** The units a call takes (CEL over the request); null: one per call. */
  readonly cost: Condition | null;
  readonly costSource: string | null;
  /** Repeat offenders (milliseconds): `after` refusals within `withinMs` block the key for `blockMs`, doubled per further offence up to `maxMs`. */
  readonly backoff: { readonly after: number; readonly withinMs: number; readonly blockMs: number; readonly maxMs: number } | null;
  /** With a shared backend: deny, allow, or count locally (the rate divided by the replicas) when it cannot answer. */
  readonly onBackendFailure: 'deny' | 'allow' | 'local';
  /** Scaled down while its pool reports load (ReportLoad); null: not load-aware. */
  readonly loadAware: { readonly pool: string; readonly from: number; readonly min: number } | null;
}

const DURATION_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration as written (`30s`, `1m`, `1h`, `1d`) in milliseconds, or null. */
export function parseDuration(text: string): number | null {
  const match = DURATION_PATTERN.exec(text);
  return match ? Number(match[1]) * DURATION_UNITS[match[2]!]! : null;
}

const PERIODS: Record<string, number> = { second: 1000, sec: 1000, s: 1000, minute: 60_000, min: 60_000, m: 60_000, hour: 3_600_000, hr: 3_600_000, h: 3_600_000, day: 86_400_000, d: 86_400_000 };

/**
 * Reads a rate as written (`100/minute`); the burst is the rate's count unless given.
 * @example parseRate('100/minute') // { count: 100, periodMs: 60000, burst: 100, emissionMs: 600, text: '100/minute' }
 */
export function parseRate(text: string, burst?: number): LimitRate | null {
  const match = RATE_PATTERN.exec(text);
  if (!match) return null;
  const count = Number(match[1]);
  const periodMs = PERIODS[match[2]!]!;
  return Object.freeze({ text: `${count}/${match[2]}`, count, periodMs, burst: burst ?? count, emissionMs: periodMs / count });
}

/** A key value an attribute or CEL expression gave, as text; throws when it is not a string, number or boolean. */
function keyText(value: unknown, what: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  throw new Error(`${what} is ${value === undefined ? 'absent' : `a ${value === null ? 'null' : Array.isArray(value) ? 'list' : typeof value}`}: a limit's key must be a string, number or boolean`);
}

function compileExpr(text: string, expected: readonly string[], where: Located<unknown>, path: readonly PropertyKey[], graph: RoleGraph, variables: VariableTable, diagnostics: PolicyDiagnostic[], what: string, typing: Typing | null): Condition | null {
  const written = text;
  const hasVariables = variableReferences(text).length > 0;
  if (hasVariables) {
    if (!checkReferences(text, new Set(variables.expansions.keys()), { source: where.source, path }, diagnostics)) return null;
    const tooLong = expansionProblem(text, variables.expansions);
    if (tooLong !== null) {
      diagnostics.push(diagnosticAt(where.source, path, `${what} is ${tooLong}`));
      return null;
    }
    text = expandVariables(text, variables.expansions);
  }
  const compiled = compileExpression(text, expected);
  if (compiled.ok) {
    // `principal.roles` means what it means in a rule's condition: inherited roles included.
    const evaluate = readsPrincipalRoles(text) ? seeingEffectiveRoles(compiled.evaluate, graph) : compiled.evaluate;
    if (typing === null) return evaluate;
    // Type-checked against the declared attributes, once per resource type the limit applies to.
    const seen = new Set<string>();
    for (const type of typing.types ?? [null]) {
      const problem = typing.schemas.check(text, type);
      if (problem === null || seen.has(problem.message)) continue;
      seen.add(problem.message);
      const column = hasVariables ? ` (in ${JSON.stringify(written)} with its variables put in)` : problem.offset === null ? '' : ` (column ${problem.offset + 1} of the expression)`;
      diagnostics.push(diagnosticAt(where.source, path, `${what} does not type-check against the attribute schema: ${problem.message}${column}`));
    }
    return seen.size === 0 ? evaluate : null;
  }
  const column = compiled.offset === null ? '' : ` (column ${compiled.offset + 1} of the expression)`;
  diagnostics.push(diagnosticAt(where.source, path, `${what} does not compile: ${compiled.message}${column}`));
  return null;
}

/**
 * Checks an attribute a limit counts or tiers by (`principal.attributes.org`) against the
 * schema: declared (did you mean …), and of a type that can be a key (not a list or a map).
 */
function checkKeyAttribute(part: AttributePart, name: string, typing: Typing | null, where: Located<unknown>, path: readonly PropertyKey[], diagnostics: PolicyDiagnostic[], what: string): void {
  if (typing === null) return;
  const [first, ...nested] = name.split('.');
  const schemasOf = part === 'resource' ? (typing.types ?? []).map((t) => [t, typing.schemas.partSchema(part, t)] as const) : [[null, typing.schemas.partSchema(part, null)] as const];
  for (const [type, schema] of schemasOf) {
    if (schema === null) continue;
    const of = type === null ? part : `resource type ${type}`;
    const declared = schema.get(first!);
    if (declared === undefined) {
      diagnostics.push(diagnosticAt(where.source, path, `unknown attribute ${part}.attributes.${first}: the schema of ${of} declares ${someOf(schema.keys()) || 'none'}${didYouMean(first!, schema.keys())}`));
    } else if (nested.length > 0 ? declared.type !== 'map' : declared.type === 'list' || declared.type === 'map') {
      const why = nested.length > 0 ? `so "${name}" cannot read into it` : `${what} must be a string, number or boolean`;
      diagnostics.push(diagnosticAt(where.source, path, `${part}.attributes.${first} is declared ${declared.type} in the schema of ${of}: ${why}`));
    }
  }
}

function compileKey(where: Located<LimitSpec>, graph: RoleGraph, variables: VariableTable, diagnostics: PolicyDiagnostic[], typing: Typing | null): { key: LimitKey; source: string } | null {
  const spec = where.spec.key;
  if (spec === 'principal') return { key: (r) => r.principal.id, source: spec };
  if (spec === 'principal+resource') return { key: (r) => `${r.principal.id}\u0000${r.resource.type}\u0000${r.resource.id}`, source: spec };
  if ('attribute' in spec) {
    const [part, , ...rest] = spec.attribute.split('.');
    checkKeyAttribute(part as AttributePart, rest.join('.'), typing, where, [...where.path, 'key', 'attribute'], diagnostics, "a limit's key");
    const read = attributeReader(part as MatchedPart, rest.join('.'));
    return { key: (r) => keyText(read(r), spec.attribute), source: spec.attribute };
  }
  const evaluate = compileExpr(spec.expr, ['string', 'int', 'uint', 'bool'], where, [...where.path, 'key', 'expr'], graph, variables, diagnostics, 'the key expression', typing);
  if (evaluate === null) return null;
  return { key: (r) => keyText(evaluate(r as ConditionInput), 'the key expression'), source: spec.expr };
}

/** Compiles one well-formed limit; null when it has problems (they are in `diagnostics`). */
export function* compileLimit(where: Located<LimitSpec>, graph: RoleGraph, variables: VariableTable, diagnostics: PolicyDiagnostic[], schemas: AttributeSchemas | null = null): StageRun<CompiledLimit | null> {
  const { spec } = where;
  const before = diagnostics.length;
  const type = spec.resource?.type;
  // With a schema, a limit's matchers, condition, key, tier attribute and cost are checked against it, as a rule's are.
  const typing: Typing | null = schemas === null ? null : { schemas, types: type === undefined ? null : Array.isArray(type) ? type : [type] };
  if (typing !== null) yield* typedMatchers(spec, 'allow', typing, where, diagnostics);
  const matchers = yield* attributeMatchers(spec);
  const roleHolders = roleHoldersFor(spec.principal?.roles, graph, where, [...where.path, 'principal', 'roles'], diagnostics);
  const condition = compileWhen(spec.when, where, graph, variables, diagnostics, typing);
  const key = compileKey(where, graph, variables, diagnostics, typing);
  const rate = parseRate(spec.rate, spec.burst);
  let tiers: CompiledLimit['tiers'] = null;
  if (spec.tiers) {
    checkKeyAttribute('principal', spec.tiers.attribute, typing, where, [...where.path, 'tiers', 'attribute'], diagnostics, 'a tier attribute');
    const rates = new Map<string, LimitRate>();
    for (const [name, tier] of Object.entries(spec.tiers.rates)) {
      const parsed = typeof tier === 'string' ? parseRate(tier) : parseRate(tier.rate, tier.burst);
      if (parsed) rates.set(name, parsed);
    }
    tiers = Object.freeze({ attribute: spec.tiers.attribute, read: attributeReader('principal', spec.tiers.attribute), rates });
  }
  const cost = spec.cost === undefined ? null : compileExpr(spec.cost, ['int', 'uint', 'double'], where, [...where.path, 'cost'], graph, variables, diagnostics, 'the cost expression', typing);
  let backoff: CompiledLimit['backoff'] = null;
  if (spec.backoff) {
    const [withinMs, blockMs, maxMs] = [parseDuration(spec.backoff.within), parseDuration(spec.backoff.block), parseDuration(spec.backoff.max)];
    if (withinMs !== null && blockMs !== null && maxMs !== null) {
      if (maxMs < blockMs) diagnostics.push(diagnosticAt(where.source, [...where.path, 'backoff', 'max'], `backoff.max (${spec.backoff.max}) is shorter than backoff.block (${spec.backoff.block})`));
      backoff = Object.freeze({ after: spec.backoff.after, withinMs, blockMs, maxMs });
    }
  }
  if (diagnostics.length > before || key === null || rate === null) return null;
  return Object.freeze({
    id: spec.id,
    description: spec.description ?? null,
    file: where.source.file,
    line: where.source.locate(where.path).line,
    actions: spec.actions === undefined || spec.actions.includes('*') ? null : new Set(spec.actions),
    resourceTypes: type === undefined ? null : new Set(Array.isArray(type) ? type : [type]),
    roleHolders,
    matchers: Object.freeze(matchers),
    condition,
    keySource: key.source,
    key: key.key,
    rate,
    tiers,
    cost,
    costSource: spec.cost ?? null,
    backoff,
    onBackendFailure: spec.onBackendFailure ?? 'local',
    loadAware: spec.loadAware === undefined ? null : Object.freeze({ pool: spec.loadAware.pool ?? 'default', from: spec.loadAware.from ?? 0.5, min: spec.loadAware.min }),
  } satisfies CompiledLimit);
}

/** Compiles every limit, pausing after each; a limit id used twice is a diagnostic at the second use. */
export function* compileLimits(limits: Iterable<Located<LimitSpec>>, graph: RoleGraph, variables: VariableTable, diagnostics: PolicyDiagnostic[], schemas: AttributeSchemas | null = null): StageRun<readonly CompiledLimit[]> {
  const seen = new Map<string, Located<LimitSpec>>();
  const out: CompiledLimit[] = [];
  for (const limit of limits) {
    const earlier = seen.get(limit.spec.id);
    if (earlier) {
      const at = earlier.source.locate([...earlier.path, 'id']);
      diagnostics.push(diagnosticAt(limit.source, [...limit.path, 'id'], `duplicate limit id "${limit.spec.id}": already used at ${earlier.source.file}:${at.line}:${at.col}`));
      continue;
    }
    seen.set(limit.spec.id, limit);
    const compiled = yield* compileLimit(limit, graph, variables, diagnostics, schemas);
    if (compiled) out.push(compiled);
    yield;
  }
  return Object.freeze(out);
}
