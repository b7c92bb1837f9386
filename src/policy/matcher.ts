import type { AttributeValue, DecisionRequest } from '../types.js';
import type { MatcherSpec } from './schema.js';

type Scalar = string | number | boolean | null;

/** One compiled attribute test of a rule, e.g. `resource.attributes.env equals "production"`. */
export interface AttributeMatcher {
  /** What is tested, as a policy author would write it: `resource.attributes.env`. */
  readonly label: string;
  /** What is expected, for explanations: `equals "production"`. */
  readonly expected: string;
  readonly read: (request: DecisionRequest) => AttributeValue | undefined;
  readonly test: (value: AttributeValue | undefined) => boolean;
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

/** The regular-expression source of a glob: `*` any run, `?` one character. */
function globSource(glob: string): string {
  let source = '';
  for (const ch of glob) {
    if (ch === '*') source += '.*';
    else if (ch === '?') source += '.';
    else source += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return source;
}

/** One anchored expression matching any of the globs, compiled once per rule. */
export function globsToRegExp(globs: readonly string[]): RegExp {
  return new RegExp(`^(?:${globs.map(globSource).join('|')})$`, 's');
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

/** Turns a matcher as written in a policy file into a test and a description of it. */
export function compileMatcher(spec: MatcherSpec): { test: (value: AttributeValue | undefined) => boolean; expected: string } {
  if (isScalar(spec)) return { test: anyOf([spec]), expected: `equals ${JSON.stringify(spec)}` };
  if (Array.isArray(spec)) return { test: anyOf(spec), expected: `is any of ${JSON.stringify(spec)}` };
  if ('equals' in spec) return { test: anyOf([spec.equals]), expected: `equals ${JSON.stringify(spec.equals)}` };
  if ('anyOf' in spec) return { test: anyOf(spec.anyOf), expected: `is any of ${JSON.stringify(spec.anyOf)}` };
  if ('notAnyOf' in spec) {
    const inSet = anyOf(spec.notAnyOf);
    return { test: (value) => value !== undefined && !inSet(value), expected: `is present and none of ${JSON.stringify(spec.notAnyOf)}` };
  }
  if ('glob' in spec) {
    const globs = Array.isArray(spec.glob) ? spec.glob : [spec.glob];
    const pattern = globsToRegExp(globs);
    return {
      test: (value) => typeof value === 'string' && pattern.test(value),
      expected: `matches ${globs.map((g) => JSON.stringify(g)).join(' or ')}`,
    };
  }
  const wanted = spec.exists;
  return { test: (value) => (value !== undefined) === wanted, expected: wanted ? 'is present' : 'is absent' };
}

export function describeValue(value: AttributeValue | undefined): string {
  return value === undefined ? 'absent' : JSON.stringify(value);
}
