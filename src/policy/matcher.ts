import type { AttributeValue, DecisionRequest } from '../types.js';
import type { MatcherSpec } from './schema.js';
import { kindOf, type ValueKind } from './condition-guards.js';
import { SharedCompiled } from './shared-compiled.js';
import type { StageRun } from './pipeline.js';

type Scalar = string | number | boolean | null;

/** One compiled attribute test of a rule, e.g. `resource.attributes.env equals "production"`. */
export interface AttributeMatcher {
  /** What is tested, as a policy author would write it: `resource.attributes.env`. */
  readonly label: string;
  /** What is expected, for explanations: `equals "production"`. */
  readonly expected: string;
  readonly read: (request: DecisionRequest) => AttributeValue | undefined;
  readonly test: (value: AttributeValue | undefined) => boolean;
  /**
   * Why a present value cannot be compared at all (a list or map where the matcher
   * compares with text, a number where it compares with text only, anything but text for
   * a glob), or null. Such a value never matches; a deny that cannot tell whether it
   * applies denies by error (evaluate.ts), as a CEL comparison across types does.
   * Null for `exists`, which any value answers.
   */
  readonly mismatch: ((value: AttributeValue | undefined) => string | null) | null;
}

export type MatchedPart = 'principal' | 'resource' | 'context';

/** Builds a reader for a dotted attribute path; `labels.team` reads nested maps. */
export function attributeReader(part: MatchedPart, key: string): (request: DecisionRequest) => AttributeValue | undefined {
  const segments = key.split('.');
  if (segments.length === 1) {
    // Own properties only: `constructor` or `toString` must read as absent, not as Object.prototype's.
    return (request) => {
      const attributes = request[part].attributes;
      return hasOwn(attributes, key) ? attributes[key] : undefined;
    };
  }
  return (request) => {
    let value: AttributeValue | undefined = request[part].attributes as AttributeValue;
    for (const segment of segments) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
      if (!hasOwn(value, segment)) return undefined;
      value = (value as { readonly [k: string]: AttributeValue })[segment];
    }
    return value;
  };
}

const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);

const QUESTION = 0x3f;

/** One piece of a glob between stars: literal characters, `?` standing for any one. */
interface GlobSegment {
  readonly text: string;
  readonly wild: boolean;
}

/** Does `segment` match `value` at `at` (which must leave room for it)? */
function segmentAt(value: string, at: number, segment: GlobSegment): boolean {
  if (!segment.wild) return value.startsWith(segment.text, at);
  const { text } = segment;
  for (let k = 0; k < text.length; k++) {
    const c = text.charCodeAt(k);
    if (c !== QUESTION && c !== value.charCodeAt(at + k)) return false;
  }
  return true;
}

/** The first index in [from, last] where `segment` matches, or -1. */
function findSegment(value: string, from: number, last: number, segment: GlobSegment): number {
  if (!segment.wild) {
    const at = value.indexOf(segment.text, from);
    return at !== -1 && at <= last ? at : -1;
  }
  for (let at = from; at <= last; at++) if (segmentAt(value, at, segment)) return at;
  return -1;
}

/** A glob's pieces as code points, for values with characters outside the Basic Multilingual Plane. */
type PointPiece = readonly string[];

function pointsAt(value: readonly string[], at: number, piece: PointPiece): boolean {
  for (let k = 0; k < piece.length; k++) {
    const c = piece[k]!;
    if (c !== '?' && c !== value[at + k]) return false;
  }
  return true;
}

/** The same leftmost, non-backtracking scan as compileGlob, over code points. */
function matchPoints(value: readonly string[], pieces: readonly PointPiece[]): boolean {
  if (pieces.length === 1) return value.length === pieces[0]!.length && pointsAt(value, 0, pieces[0]!);
  const first = pieces[0]!;
  const last = pieces[pieces.length - 1]!;
  if (value.length < first.length + last.length) return false;
  const end = value.length - last.length;
  if (!pointsAt(value, 0, first) || !pointsAt(value, end, last)) return false;
  let at = first.length;
  for (let p = 1; p < pieces.length - 1; p++) {
    const piece = pieces[p]!;
    if (piece.length === 0) continue;
    let found = -1;
    for (let i = at; i <= end - piece.length; i++) {
      if (pointsAt(value, i, piece)) {
        found = i;
        break;
      }
    }
    if (found === -1) return false;
    at = found + piece.length;
  }
  return true;
}

const SURROGATE = /[\uD800-\uDFFF]/;

/**
 * Compiles a glob (`*` any run, `?` one character — a code point, so `team-?` matches
 * `team-😀` — everything else literal) into a
 * test that never backtracks. The glob is cut at its stars: the first piece must start the
 * value, the last must end it, and each piece between is found at its leftmost place after
 * the one before (leftmost is always right, since a star can absorb whatever it skips). So
 * a value of n characters is scanned at most once per piece: O(n · glob length), never the
 * exponential or polynomial blow-up of a backtracking regular expression such as `^.*-.*-.*-prod$`.
 */
export function compileGlob(glob: string): (value: string) => boolean {
  const units = compileGlobUnits(glob);
  if (!glob.includes('?')) return units;
  // `?` is one character: a value with a character outside the BMP (two UTF-16 units) is scanned by code points.
  const pieces = glob.split('*').map((text) => Array.from(text));
  return (value) => (SURROGATE.test(value) ? matchPoints(Array.from(value), pieces) : units(value));
}

/** The glob over UTF-16 code units: exact for literals, and for `?` when the value has no surrogate pairs. */
function compileGlobUnits(glob: string): (value: string) => boolean {
  const pieces = glob.split('*').map((text): GlobSegment => ({ text, wild: text.includes('?') }));
  if (pieces.length === 1) {
    const only = pieces[0]!;
    return (value) => value.length === only.text.length && segmentAt(value, 0, only);
  }
  const first = pieces[0]!;
  const last = pieces[pieces.length - 1]!;
  const middle = pieces.slice(1, -1).filter((piece) => piece.text.length > 0);
  const fixed = first.text.length + last.text.length;
  return (value) => {
    if (value.length < fixed) return false;
    const end = value.length - last.text.length;
    if (!segmentAt(value, 0, first) || !segmentAt(value, end, last)) return false;
    let at = first.text.length;
    for (const piece of middle) {
      const found = findSegment(value, at, end - piece.text.length, piece);
      if (found === -1) return false;
      at = found + piece.text.length;
    }
    return true;
  };
}

/** One test matching any of the globs, compiled once per rule. */
export function compileGlobs(globs: readonly string[]): (value: string) => boolean {
  const tests = globs.map(compileGlob);
  if (tests.length === 1) return tests[0]!;
  return (value) => tests.some((test) => test(value));
}

const isScalar = (value: unknown): value is Scalar =>
  value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';

function anyOf(values: readonly Scalar[]): (value: AttributeValue | undefined) => boolean {
  if (values.length === 1) {
    const only = values[0];
    return (value) => value === only;
  }
  const set = new Set<Scalar>(values);
  // The set holds scalars only, so an absent value, a list or a map is simply not in it.
  return (value) => set.has(value as Scalar);
}

/** A kind as a policy author reads it (attribute values are JSON: never bytes or another object). */
const KIND_NAMES: Readonly<Record<ValueKind, string>> = { string: 'text', number: 'a number', bool: 'a boolean', null: 'null', list: 'a list', map: 'a map', bytes: 'bytes', other: 'a value of another type' };

/** The mismatch test of a matcher comparing with `values`: a present value of a kind none of them has. */
function kindMismatch(values: readonly Scalar[]): (value: AttributeValue | undefined) => string | null {
  const kinds = new Set<ValueKind>(values.map(kindOf));
  const written = [...kinds].map((kind) => KIND_NAMES[kind]).join(' or ');
  return (value) => {
    if (value === undefined) return null;
    const kind = kindOf(value);
    return kinds.has(kind) ? null : `is ${KIND_NAMES[kind]}, where the rule compares it with ${written}`;
  };
}

const notText = (value: AttributeValue | undefined): string | null =>
  value === undefined || typeof value === 'string' ? null : `is ${KIND_NAMES[kindOf(value)]}, where the rule matches it against a glob (text)`;

/** Turns a matcher as written in a policy file into a test, its mismatch test and a description of it. */
export function compileMatcher(spec: MatcherSpec): Pick<AttributeMatcher, 'test' | 'mismatch' | 'expected'> {
  if (isScalar(spec)) return { test: anyOf([spec]), mismatch: kindMismatch([spec]), expected: `equals ${JSON.stringify(spec)}` };
  if (Array.isArray(spec)) return { test: anyOf(spec), mismatch: kindMismatch(spec), expected: `is any of ${JSON.stringify(spec)}` };
  if ('equals' in spec) return { test: anyOf([spec.equals]), mismatch: kindMismatch([spec.equals]), expected: `equals ${JSON.stringify(spec.equals)}` };
  if ('anyOf' in spec) return { test: anyOf(spec.anyOf), mismatch: kindMismatch(spec.anyOf), expected: `is any of ${JSON.stringify(spec.anyOf)}` };
  if ('notAnyOf' in spec) {
    const inSet = anyOf(spec.notAnyOf);
    const mismatch = kindMismatch(spec.notAnyOf);
    // A value that cannot be compared is not "none of" them: `["contractor"]` must not pass `notAnyOf: [contractor]`.
    return { test: (value) => value !== undefined && !inSet(value) && mismatch(value) === null, mismatch, expected: `is present and none of ${JSON.stringify(spec.notAnyOf)}` };
  }
  if ('glob' in spec) {
    const globs = Array.isArray(spec.glob) ? spec.glob : [spec.glob];
    const matches = compileGlobs(globs);
    return {
      test: (value) => typeof value === 'string' && matches(value),
      mismatch: notText,
      expected: `matches ${globs.map((g) => JSON.stringify(g)).join(' or ')}`,
    };
  }
  const wanted = spec.exists;
  return { test: (value) => (value !== undefined) === wanted, mismatch: null, expected: wanted ? 'is present' : 'is absent' };
}

export function describeValue(value: AttributeValue | undefined): string {
  return value === undefined ? 'absent' : JSON.stringify(value);
}

/** The `attributes` blocks of a rule or limit, as written: part → attribute → matcher. */
export interface AttributeBlocks {
  readonly principal?: { readonly attributes?: Record<string, unknown> };
  readonly resource?: { readonly attributes?: Record<string, unknown> };
  readonly context?: { readonly attributes?: Record<string, unknown> };
}

// Policy sets repeat the same tests across many rules (`resource.attributes.org: tenant-7`
// in every rule of a tenant). Each distinct one is compiled once and shared, as conditions
// are (condition.ts): a 10,000-rule set then holds thousands fewer closures, strings and
// contexts, which is what a garbage collection walks while checks wait. A compiled matcher
// is immutable, so sets loaded one after another may share it.
const matcherByText = new SharedCompiled<AttributeMatcher>();

/** Whether JSON says everything a matcher compares with: it cannot tell NaN or Infinity from null. */
function writtenInJson(spec: MatcherSpec): boolean {
  const values = isScalar(spec) ? [spec] : Array.isArray(spec) ? spec : 'equals' in spec ? [spec.equals] : 'anyOf' in spec ? spec.anyOf : 'notAnyOf' in spec ? spec.notAnyOf : [];
  return values.every((value) => typeof value !== 'number' || Number.isFinite(value));
}

function sharedMatcher(label: string, spec: MatcherSpec, read: () => AttributeMatcher['read']): AttributeMatcher {
  const compile = (): AttributeMatcher => {
    const { test, mismatch, expected } = compileMatcher(spec);
    return Object.freeze({ label, expected, read: read(), test, mismatch });
  };
  return writtenInJson(spec) ? matcherByText.get(`${label}\u0000${JSON.stringify(spec)}`, compile) : compile();
}

const readPrincipalId = (request: DecisionRequest): AttributeValue => request.principal.id;
const readResourceId = (request: DecisionRequest): AttributeValue => request.resource.id;

/** The matcher of `principal.id` or `resource.id`, compiled once for each distinct spec. */
export function idMatcher(part: 'principal' | 'resource', spec: MatcherSpec): AttributeMatcher {
  return sharedMatcher(`${part}.id`, spec, () => (part === 'principal' ? readPrincipalId : readResourceId));
}

/** Matchers compiled between two pauses: a rule of 100,000 matchers took 418–548 ms in one go. */
export const MATCHERS_PER_PAUSE = 256;

/** Compiles every attribute matcher of a rule or limit, principal's first, each labelled for explanations; pauses every MATCHERS_PER_PAUSE. */
export function* attributeMatchers(blocks: AttributeBlocks): StageRun<AttributeMatcher[]> {
  const matchers: AttributeMatcher[] = [];
  for (const part of ['principal', 'resource', 'context'] as const) {
    const attributes = blocks[part]?.attributes;
    if (!attributes) continue;
    for (const [key, matcherSpec] of Object.entries(attributes)) {
      matchers.push(sharedMatcher(`${part}.attributes.${key}`, matcherSpec as MatcherSpec, () => attributeReader(part, key)));
      if (matchers.length % MATCHERS_PER_PAUSE === 0) yield;
    }
  }
  return matchers;
}
