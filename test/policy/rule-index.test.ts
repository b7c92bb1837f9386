import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runToEnd } from '../../src/policy/pipeline.js';
import { ACTIONS_PER_PAUSE, compareRules, indexPart, indexPartInSlices, PolicySet, type CompiledRule, type IndexPart } from '../../src/policy/policy-set.js';
import { RouteTable } from '../../src/policy/routes.js';

// The index must offer exactly the rules a request's type and action could match, in
// policy-set order: checked here against the plain definition, over random sets split
// into documents, built cold and built from the set before (one document changed).

const TYPES = ['doc', 'model', 'team'];
const ACTIONS = ['read', 'write', 'delete', 'share'];
const ASKED_TYPES = [...TYPES, 'unknown'];
const ASKED_ACTIONS = [...ACTIONS, 'unnamed'];

function rule(id: string, effect: 'ALLOW' | 'DENY', types: readonly string[] | null, actions: readonly string[]): CompiledRule {
  return {
    id,
    effect,
    description: null,
    file: 'rules.yaml',
    line: 1,
    origin: 'rule',
    actions,
    resourceTypes: types,
    roles: null,
    roleHolders: null,
    excludedHolders: null,
    excludedRoles: null,
    matchers: [],
    condition: null,
    conditionSource: null,
  };
}

const ruleShape = fc.record({
  effect: fc.constantFrom('ALLOW' as const, 'DENY' as const),
  types: fc.option(fc.uniqueArray(fc.constantFrom(...TYPES), { minLength: 1, maxLength: 2 }), { nil: null }),
  actions: fc.uniqueArray(fc.constantFrom(...ACTIONS, '*'), { minLength: 1, maxLength: 2 }),
});
const documents = fc.array(fc.array(ruleShape, { maxLength: 5 }), { minLength: 1, maxLength: 4 });

function partsOf(shapes: readonly (readonly { effect: 'ALLOW' | 'DENY'; types: readonly string[] | null; actions: readonly string[] }[])[], tag: string): IndexPart[] {
  return shapes.map((doc, d) => indexPart(doc.map((s, i) => rule(`${tag}${d}-${i}`, s.effect, s.types, s.actions))));
}

/** The definition: every rule for the type (or any type) and the action (or every action), denies first, then by id. */
function expected(parts: readonly IndexPart[], type: string, action: string): string[] {
  return parts
    .flatMap((p) => p.rules)
    .filter((r) => (r.resourceTypes === null || r.resourceTypes.includes(type)) && (r.actions.includes(action) || r.actions.includes('*')))
    .sort(compareRules)
    .map((r) => r.id);
}

function build(parts: readonly IndexPart[], previous: PolicySet | null = null): PolicySet {
  return runToEnd(PolicySet.build('v', parts, new Map(), RouteTable.EMPTY, previous));
}

function expectDefinition(set: PolicySet, parts: readonly IndexPart[]): void {
  for (const type of ASKED_TYPES) {
    for (const action of ASKED_ACTIONS) {
      // Asked twice: the second answer may come from what the first kept.
      for (let i = 0; i < 2; i++) expect(set.candidates(type, action).map((r) => r.id), `${type} ${action}`).toEqual(expected(parts, type, action));
    }
  }
}

describe('the rule index', () => {
  it('offers exactly the rules for the type and action, built cold and from the set before', () => {
    fc.assert(
      fc.property(documents, fc.nat(), fc.array(ruleShape, { maxLength: 5 }), (docs, which, replacement) => {
        const parts = partsOf(docs, 'r');
        const cold = build(parts);
        expectDefinition(cold, parts);
        // One document changed: the index is built from the one before.
        const changed = [...parts];
        changed[which % changed.length] = indexPart(replacement.map((s, i) => rule(`n${i}`, s.effect, s.types, s.actions)));
        expectDefinition(build(changed, cold), changed);
      }),
      { numRuns: 300 },
    );
  });

  it('lists per type only the actions its own rules name, so rules for any type do not multiply by the types', () => {
    // 1,000 types beside 5,000 actions named only by rules for any type: a table per type listing
    // every action held five million lists (hundreds of megabytes; 2,000 × 10,000 ran out of memory).
    const everyType = indexPart(Array.from({ length: 5000 }, (_, i) => rule(`any-${i}`, 'DENY', null, [`act-${i}`])));
    const typed = indexPart(Array.from({ length: 1000 }, (_, i) => rule(`typed-${i}`, 'ALLOW', [`type-${i}`], ['read'])));
    const heapBefore = process.memoryUsage().heapUsed;
    const set = build([everyType, typed]);
    const grown = process.memoryUsage().heapUsed - heapBefore;
    expect(grown).toBeLessThan(64 * 1024 * 1024);
    expect(set.candidates('type-7', 'act-42').map((r) => r.id)).toEqual(['any-42']);
    expect(set.candidates('type-7', 'read').map((r) => r.id)).toEqual(['typed-7']);
    expect(set.candidates('unknown', 'act-42').map((r) => r.id)).toEqual(['any-42']);
  });

  it('answers a type with rules for every action for more actions than it keeps lists for', () => {
    const everyType = indexPart(Array.from({ length: 200 }, (_, i) => rule(`any-${String(i).padStart(3, '0')}`, 'ALLOW', null, [`act-${i}`])));
    const typed = indexPart([rule('model-all', 'DENY', ['model'], ['*'])]);
    const parts = [everyType, typed];
    const set = build(parts);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 200; i++) expect(set.candidates('model', `act-${i}`).map((r) => r.id)).toEqual(expected(parts, 'model', `act-${i}`));
    }
    expect(set.candidates('model', 'act-3').map((r) => r.id)).toEqual(['model-all', 'any-003']);
  });

  it('files a document of 20,000 rules a few thousand at a time, in the order a plain sort gives', () => {
    // A role of 20,000 permissions is one document: its rules were sorted and filed in one go.
    const shapes = Array.from({ length: 20_000 }, (_, i) => ({ i, effect: i % 3 === 0 ? ('DENY' as const) : ('ALLOW' as const), id: `r${(i * 7919) % 5000}` }));
    // Ids repeat (a set with them is refused, but the order must still be the stable one).
    const rules = shapes.map((x) => rule(x.id, x.effect, [TYPES[x.i % 3]!], [ACTIONS[x.i % 4]!]));
    const run = indexPartInSlices(rules);
    let steps = 0;
    let next = run.next();
    for (; !next.done; next = run.next()) steps++;
    const part = next.value;
    expect(steps).toBeGreaterThan(2 * (20_000 / 2048));
    const plain = [...rules].sort(compareRules);
    for (const type of TYPES) {
      for (const action of ACTIONS) expect(part.byType.get(type)?.get(action) ?? []).toEqual(plain.filter((r) => r.resourceTypes![0] === type && r.actions[0] === action));
    }
    expect(part.rules).toEqual(rules);
  });

  it("files one type's table a few hundred actions at a time, cold and from the set before", () => {
    // A role granting each of 100,000 actions on one type built that type's table in one go: about 340 ms.
    const actions = 5_000;
    const granted = indexPart(Array.from({ length: actions }, (_, i) => rule(`grant-${i}`, 'ALLOW', ['model'], [`act-${i}`])));
    const other = indexPart([rule('doc-read', 'ALLOW', ['doc'], ['read'])]);
    const stepsOf = (parts: IndexPart[], previous: PolicySet | null): { steps: number; set: PolicySet } => {
      const run = PolicySet.build('v', parts, new Map(), RouteTable.EMPTY, previous);
      let steps = 0;
      let next = run.next();
      for (; !next.done; next = run.next()) steps++;
      return { steps, set: next.value };
    };
    const cold = stepsOf([granted, other], null);
    // A pause every ACTIONS_PER_PAUSE actions filed in the table, and as many folding their names (namedSpellings).
    const pauses = 2 * Math.floor(actions / ACTIONS_PER_PAUSE);
    expect(cold.steps).toBeGreaterThanOrEqual(pauses);
    // The model table rebuilt because its document changed; the doc table is taken over.
    const changed = indexPart(Array.from({ length: actions }, (_, i) => rule(`grant-${i}`, i === 7 ? 'DENY' : 'ALLOW', ['model'], [`act-${i}`])));
    const incremental = stepsOf([changed, other], cold.set);
    expect(incremental.steps).toBeGreaterThanOrEqual(pauses);
    for (const [set, parts] of [[cold.set, [granted, other]], [incremental.set, [changed, other]]] as const) {
      for (const i of [0, 7, 511, 512, actions - 1]) expect(set.candidates('model', `act-${i}`).map((r) => r.id)).toEqual(expected(parts, 'model', `act-${i}`));
      expect(set.candidates('doc', 'read').map((r) => r.id)).toEqual(['doc-read']);
    }
    expect(incremental.set.candidates('model', 'act-7')[0]!.effect).toBe('DENY');
  });
});
