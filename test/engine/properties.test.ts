import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import type { Decision, DecisionRequest } from '../../src/types.js';
import type { PolicySet } from '../../src/policy/policy-set.js';
import { loadFiles, removeTempDirs, rolesDoc, rulesDoc, type PolicyFiles } from '../helpers/policies.js';

/**
 * Property tests of the combining semantics over random small policy sets. Each set
 * is written to a temp directory and loaded like a user's, so file handling is part of
 * what is tested. A small reference model (below) knows, for every generated rule,
 * whether it matches a request cleanly, does not match, or errs.
 */

afterAll(removeTempDirs);

const RUNS = 100;
/** The properties that load two or three sets per run get fewer runs, to keep the file fast. */
const MONOTONIC_RUNS = 70;
const ERROR = 'error' as const;
type Outcome = boolean | typeof ERROR;

// ---- alphabets ---------------------------------------------------------------------

const ACTIONS = ['read', 'write', 'delete'] as const;
const REQUEST_ACTIONS = [...ACTIONS, 'list'] as const;
const TYPES = ['model', 'dataset'] as const;
const REQUEST_TYPES = [...TYPES, 'prompt'] as const;
const ROLES = ['user', 'admin'] as const; // admin inherits user
const REQUEST_ROLES = [...ROLES, 'guest'] as const;

/** Values each attribute may take in requests; matchers are built from the same values. */
const VALUES = {
  org: ['acme', 'acme-eu', 'globex'],
  env: ['prod', 'dev'],
  tier: [1, 2, '2'],
} as const satisfies Record<string, readonly (string | number)[]>;
type Key = keyof typeof VALUES;
type Scalar = string | number;

const GLOBS: Record<string, RegExp> = { 'acme*': /^acme/, '*-eu': /-eu$/, 'g?obex': /^g.obex$/, '*': /^/ };

type Attrs = Partial<Record<Key, Scalar>>;
interface Req {
  principal: { id: string; roles: string[]; attributes: Attrs };
  action: string;
  resource: { type: string; id: string; attributes: Attrs };
  context: { attributes: Attrs };
}

/** CEL conditions with what they evaluate to, including the ones that cannot be evaluated. */
const CONDITIONS: readonly { cel: string; ref: (r: Req) => Outcome }[] = [
  { cel: 'true', ref: () => true },
  { cel: 'false', ref: () => false },
  { cel: 'action == "read"', ref: (r) => r.action === 'read' },
  { cel: '"admin" in principal.roles', ref: (r) => r.principal.roles.includes('admin') },
  {
    cel: 'resource.attributes.org == principal.attributes.org',
    ref: (r) => (r.resource.attributes.org === undefined || r.principal.attributes.org === undefined ? ERROR : r.resource.attributes.org === r.principal.attributes.org),
  },
  { cel: 'has(resource.attributes.env) && resource.attributes.env != "prod"', ref: (r) => r.resource.attributes.env !== undefined && r.resource.attributes.env !== 'prod' },
  { cel: 'resource.attributes.env == "prod"', ref: (r) => (r.resource.attributes.env === undefined ? ERROR : r.resource.attributes.env === 'prod') },
  { cel: 'resource.attributes.no_such_key == "x"', ref: () => ERROR },
  { cel: 'context.attributes.tier > 1', ref: (r) => (typeof r.context.attributes.tier === 'number' ? r.context.attributes.tier > 1 : ERROR) },
];

// ---- generated rules ---------------------------------------------------------------

type MatcherSpec = Scalar | Scalar[] | { anyOf: Scalar[] } | { notAnyOf: Scalar[] } | { glob: string | string[] } | { exists: boolean };

interface RuleSpec {
  id: string;
  effect: 'allow' | 'deny';
  actions: string[];
  principal?: { roles?: string[]; attributes?: Partial<Record<Key, MatcherSpec>> };
  resource?: { type?: string | string[]; attributes?: Partial<Record<Key, MatcherSpec>> };
  context?: { attributes?: Partial<Record<Key, MatcherSpec>> };
  when?: string;
}

const matcherFor = (key: Key): fc.Arbitrary<MatcherSpec> => {
  const values = VALUES[key] as readonly Scalar[];
  const some = fc.subarray([...values], { minLength: 1 });
  const options: fc.Arbitrary<MatcherSpec>[] = [
    fc.constantFrom(...values),
    some,
    some.map((anyOf) => ({ anyOf })),
    some.map((notAnyOf) => ({ notAnyOf })),
    fc.boolean().map((exists) => ({ exists })),
  ];
  if (key !== 'tier') {
    options.push(fc.oneof(fc.constantFrom(...Object.keys(GLOBS)), fc.subarray(Object.keys(GLOBS), { minLength: 1 })).map((glob) => ({ glob })));
  }
  return fc.oneof(...options);
};

/** One thing a rule may require of a request; a rule gets zero to two, so rules match often enough. */
type Constraint = (rule: Omit<RuleSpec, 'id'>) => void;

const part = (rule: Omit<RuleSpec, 'id'>, name: 'principal' | 'resource' | 'context') => (rule[name] ??= {});
const matcherConstraint = (name: 'principal' | 'resource' | 'context', keys: readonly Key[]): fc.Arbitrary<Constraint> =>
  fc
    .constantFrom(...keys)
    .chain((key) => matcherFor(key).map((matcher): Constraint => (rule) => void ((part(rule, name).attributes ??= {})[key] = matcher)));

const constraintArb: fc.Arbitrary<Constraint> = fc.oneof(
  fc.subarray([...ROLES], { minLength: 1 }).map((roles): Constraint => (rule) => void ((rule.principal ??= {}).roles = roles)),
  fc.oneof(fc.constantFrom<string | string[]>(...TYPES), fc.constant<string | string[]>([...TYPES])).map((type): Constraint => (rule) => void ((rule.resource ??= {}).type = type)),
  matcherConstraint('principal', ['org', 'tier']),
  matcherConstraint('resource', ['org', 'env', 'tier']),
  matcherConstraint('context', ['tier', 'env']),
);

const ruleBody: fc.Arbitrary<Omit<RuleSpec, 'id'>> = fc
  .record({
    // Allows twice as often as denies: one matching deny decides, so denies need no help.
    effect: fc.oneof({ weight: 2, arbitrary: fc.constant('allow' as const) }, { weight: 1, arbitrary: fc.constant('deny' as const) }),
    actions: fc.oneof(
      { weight: 4, arbitrary: fc.subarray<string>([...ACTIONS], { minLength: 1 }) },
      { weight: 1, arbitrary: fc.constant<string[]>(['*']) },
    ),
    constraints: fc.array(constraintArb, { maxLength: 2 }),
    when: fc.option(fc.constantFrom(...CONDITIONS.map((c) => c.cel)), { freq: 2, nil: undefined }),
  })
  .map(({ effect, actions, constraints, when }) => {
    const rule: Omit<RuleSpec, 'id'> = { effect, actions };
    for (const apply of constraints) apply(rule);
    if (when !== undefined) rule.when = when;
    return rule;
  });

const rulesArb = (prefix: string, maxLength: number) =>
  fc.array(ruleBody, { maxLength }).map((bodies) => bodies.map((body, i): RuleSpec => ({ id: `${prefix}${i}`, ...body })));

/** Request attributes: each key present four times in five. */
const attrs = (keys: readonly Key[]): fc.Arbitrary<Attrs> =>
  fc
    .tuple(...keys.map((k) => fc.option(fc.constantFrom(...(VALUES[k] as readonly Scalar[])), { freq: 5, nil: undefined })))
    .map((values) => Object.fromEntries(keys.flatMap((k, i) => (values[i] === undefined ? [] : [[k, values[i]]]))) as Attrs);

const requestArb: fc.Arbitrary<Req> = fc.record({
  principal: fc.record({ id: fc.constantFrom('p1', 'p2'), roles: fc.subarray([...REQUEST_ROLES]), attributes: attrs(['org', 'tier']) }),
  action: fc.constantFrom(...REQUEST_ACTIONS),
  resource: fc.record({ type: fc.constantFrom(...REQUEST_TYPES), id: fc.constant('r1'), attributes: attrs(['org', 'env', 'tier']) }),
  context: fc.record({ attributes: attrs(['tier', 'env']) }),
});
const requestsArb = fc.array(requestArb, { minLength: 12, maxLength: 12 });

// ---- loading -----------------------------------------------------------------------

const ROLES_DOC = rolesDoc([{ name: 'user' }, { name: 'admin', inherits: ['user'] }]);

function load(files: PolicyFiles): PolicySet {
  return loadFiles(files).policySet;
}

/** The plainest layout: every rule in one file, in order. */
function loadInOrder(rules: readonly RuleSpec[]): PolicySet {
  return load({ 'roles.json': ROLES_DOC, 'rules.json': rulesDoc(rules) });
}

/** What a decision is, for comparisons: everything but the version. */
function summary(decision: Decision) {
  return {
    effect: decision.effect,
    reason: decision.reason,
    ruleIds: [...decision.ruleIds].sort(),
    errors: decision.errors.map((e) => `${e.ruleId}: ${e.message}`).sort(),
  };
}

const decideAll = (policySet: PolicySet, requests: readonly Req[]) => requests.map((r) => evaluate(policySet, r as unknown as DecisionRequest));

// ---- the reference model -----------------------------------------------------------

/** A value's kind as matchers compare it; undefined is absent. */
const kindOf = (value: Scalar): string => typeof value;

/** The values a matcher compares with (none for `exists`), and whether it is a glob. */
function compared(spec: MatcherSpec): readonly Scalar[] | 'glob' | null {
  if (typeof spec === 'string' || typeof spec === 'number') return [spec];
  if (Array.isArray(spec)) return spec as Scalar[];
  if ('equals' in spec) return [spec.equals as Scalar];
  if ('anyOf' in spec) return spec.anyOf as Scalar[];
  if ('notAnyOf' in spec) return spec.notAnyOf as Scalar[];
  if ('glob' in spec) return 'glob';
  return null;
}

/** Whether a present value is of a kind the matcher cannot compare (text against numbers, a number against a glob). */
function uncomparable(spec: MatcherSpec, value: Scalar | undefined): boolean {
  if (value === undefined) return false;
  const values = compared(spec);
  if (values === null) return false;
  if (values === 'glob') return typeof value !== 'string';
  return !values.some((v) => kindOf(v) === kindOf(value));
}

function matcherHolds(spec: MatcherSpec, value: Scalar | undefined): boolean {
  if (uncomparable(spec, value)) return false;
  if (typeof spec === 'string' || typeof spec === 'number') return value === spec;
  if (Array.isArray(spec)) return value !== undefined && spec.includes(value);
  if ('anyOf' in spec) return value !== undefined && spec.anyOf.includes(value);
  if ('notAnyOf' in spec) return value !== undefined && !spec.notAnyOf.includes(value);
  if ('glob' in spec) {
    const globs = Array.isArray(spec.glob) ? spec.glob : [spec.glob];
    return typeof value === 'string' && globs.some((g) => GLOBS[g]!.test(value));
  }
  return (value !== undefined) === spec.exists;
}

type MatcherEntries = [Partial<Record<Key, MatcherSpec>> | undefined, Attrs][];

/** Every matcher holds: true; one fails: false; the rest hold and some meet a value they cannot compare: "uncomparable". */
function matchersOutcome(blocks: MatcherEntries): boolean | 'uncomparable' {
  let unsure = false;
  for (const [matchers, attributes] of blocks) {
    for (const [key, spec] of Object.entries(matchers ?? {})) {
      const value = attributes[key as Key];
      if (uncomparable(spec as MatcherSpec, value)) unsure = true;
      else if (!matcherHolds(spec as MatcherSpec, value)) return false;
    }
  }
  return unsure ? 'uncomparable' : true;
}

/**
 * Whether the rule applies to the request: true, false, or "error" (its condition erred, or, for a deny,
 * a matcher met a value it cannot compare while every other part held).
 */
function ruleOutcome(rule: RuleSpec, r: Req): Outcome {
  if (!rule.actions.includes('*') && !rule.actions.includes(r.action)) return false;
  const type = rule.resource?.type;
  if (type !== undefined && !(Array.isArray(type) ? type : [type]).includes(r.resource.type)) return false;
  if (rule.principal?.roles) {
    const held = new Set(r.principal.roles.flatMap((role) => (role === 'admin' ? ['admin', 'user'] : [role])));
    if (!rule.principal.roles.some((role) => held.has(role))) return false;
  }
  const matched = matchersOutcome([
    [rule.principal?.attributes, r.principal.attributes],
    [rule.resource?.attributes, r.resource.attributes],
    [rule.context?.attributes, r.context.attributes],
  ]);
  if (matched === false) return false;
  if (matched === 'uncomparable') return rule.effect === 'deny' ? ERROR : false;
  if (rule.when === undefined) return true;
  return CONDITIONS.find((c) => c.cel === rule.when)!.ref(r);
}

function referenceDecision(rules: readonly RuleSpec[], r: Req) {
  const ids = (effect: RuleSpec['effect'], outcome: Outcome) =>
    rules
      .filter((rule) => rule.effect === effect && ruleOutcome(rule, r) === outcome)
      .map((rule) => rule.id)
      .sort();
  const cleanDenies = ids('deny', true);
  const erringDenies = ids('deny', ERROR);
  const cleanAllows = ids('allow', true);
  const erringAllows = ids('allow', ERROR);
  if (cleanDenies.length) return { effect: 'DENY', reason: 'DENIED_BY_RULE', ruleIds: cleanDenies, erring: [...erringDenies] };
  if (erringDenies.length) return { effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: erringDenies, erring: [...erringDenies, ...erringAllows].sort() };
  if (cleanAllows.length) return { effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: cleanAllows, erring: erringAllows };
  if (erringAllows.length) return { effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds: erringAllows, erring: erringAllows };
  return { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], erring: [] };
}

// ---- properties --------------------------------------------------------------------

describe('combining properties', () => {
  it('deny always wins, and every decision agrees with the reference model', () => {
    const seen = new Map<string, number>();
    fc.assert(
      fc.property(rulesArb('r', 8), requestsArb, (rules, requests) => {
        const policySet = loadInOrder(rules);
        decideAll(policySet, requests).forEach((decision, i) => {
          const r = requests[i]!;
          seen.set(decision.reason, (seen.get(decision.reason) ?? 0) + 1);

          // Deny wins: when any deny rule matches cleanly, the effect is DENY, by exactly those rules.
          const cleanDenies = rules.filter((rule) => rule.effect === 'deny' && ruleOutcome(rule, r) === true).map((rule) => rule.id);
          if (cleanDenies.length > 0) {
            expect(decision.effect, 'deny wins').toBe('DENY');
            expect(decision.reason, 'deny wins').toBe('DENIED_BY_RULE');
            expect([...decision.ruleIds].sort(), 'deny wins').toEqual(cleanDenies.sort());
          }

          // An ALLOW is backed by cleanly matching allow rules, and no deny matched or erred.
          if (decision.effect === 'ALLOW') {
            for (const id of decision.ruleIds) {
              const rule = rules.find((candidate) => candidate.id === id)!;
              expect(rule.effect).toBe('allow');
              expect(ruleOutcome(rule, r)).toBe(true);
            }
            expect(rules.some((rule) => rule.effect === 'deny' && ruleOutcome(rule, r) !== false)).toBe(false);
          }

          // The whole decision is the reference model's.
          const want = referenceDecision(rules, r);
          expect({ effect: decision.effect, reason: decision.reason, ruleIds: [...decision.ruleIds].sort() }, 'reference model').toEqual({
            effect: want.effect,
            reason: want.reason,
            ruleIds: want.ruleIds,
          });
          // Errors of allows are only looked at when no deny matched cleanly.
          const erring = decision.errors.map((e) => e.ruleId).sort();
          if (want.reason === 'DENIED_BY_RULE') for (const id of want.erring) expect(erring).toContain(id);
          else expect(erring, 'erring rules').toEqual(want.erring);
        });
      }),
      { numRuns: RUNS },
    );
    // The generators reach every outcome, so the checks above are not vacuous.
    // (Typical counts over the 1,200 decisions: a few hundred each, DENIED_BY_ERROR about fifty.)
    for (const reason of ['ALLOWED_BY_RULE', 'DENIED_BY_RULE', 'DENIED_BY_DEFAULT', 'DENIED_BY_ERROR']) {
      expect(seen.get(reason) ?? 0, reason).toBeGreaterThanOrEqual(5);
    }
  });

  it('adding an allow rule never turns an ALLOW into a DENY; adding a deny rule never turns a DENY into an ALLOW', () => {
    let flips = 0;
    fc.assert(
      fc.property(rulesArb('r', 8), ruleBody, ruleBody, requestsArb, (rules, allowBody, denyBody, requests) => {
        const withRule = (rule: RuleSpec) =>
          decideAll(load({ 'roles.json': ROLES_DOC, 'rules.json': rulesDoc(rules), 'added.json': rulesDoc([rule]) }), requests);
        const before = decideAll(loadInOrder(rules), requests);
        const afterAllow = withRule({ id: 'added-allow', ...allowBody, effect: 'allow' });
        const afterDeny = withRule({ id: 'added-deny', ...denyBody, effect: 'deny' });
        before.forEach((decision, i) => {
          if (decision.effect === 'ALLOW') expect(afterAllow[i]!.effect, 'added allow').toBe('ALLOW');
          if (decision.effect === 'DENY') expect(afterDeny[i]!.effect, 'added deny').toBe('DENY');
          if (decision.effect !== afterAllow[i]!.effect || decision.effect !== afterDeny[i]!.effect) flips++;
        });
      }),
      { numRuns: MONOTONIC_RUNS },
    );
    // Added rules do change some decisions (in the allowed direction): the property is not vacuous.
    expect(flips).toBeGreaterThan(0);
  });

  it('reordering rules and splitting them across files, in any order and format, never changes a decision', () => {
    const layoutArb = fc.record({
      /** A sort key per rule: the rules are rewritten in that order. */
      order: fc.array(fc.nat(), { minLength: 8, maxLength: 8 }),
      /** Which file each rule goes to. */
      fileOf: fc.array(fc.nat({ max: 3 }), { minLength: 8, maxLength: 8 }),
      /** How the files are named, so their sorted order differs from the first layout's. */
      names: fc.shuffledSubarray(['a.yaml', 'b/rules.json', 'c.yml', 'zz/deep/d.yaml'], { minLength: 4, maxLength: 4 }),
      rolesAt: fc.constantFrom('roles.yaml', 'zz/roles.json', '0-roles.yml'),
    });
    fc.assert(
      fc.property(rulesArb('r', 8), layoutArb, requestsArb, (rules, layout, requests) => {
        const reordered = rules
          .map((rule, i) => ({ rule, key: layout.order[i]! }))
          .sort((a, b) => b.key - a.key)
          .map(({ rule }) => rule);
        const files: PolicyFiles = { [layout.rolesAt]: ROLES_DOC };
        reordered.forEach((rule, i) => {
          const name = layout.names[layout.fileOf[i]!]!;
          const doc = (files[name] ??= rulesDoc([])) as { rules: RuleSpec[] };
          // Reverse each rule's keys too: key order within a mapping must not matter.
          doc.rules.push(Object.fromEntries(Object.entries(rule).reverse()) as unknown as RuleSpec);
        });
        const before = decideAll(loadInOrder(rules), requests).map(summary);
        const after = decideAll(load(files), requests).map(summary);
        expect(after).toEqual(before);
      }),
      { numRuns: MONOTONIC_RUNS },
    );
  });
});
