import { renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/engine/evaluate.js';
import { backgroundReader } from '../../src/policy/background-reader.js';
import { PolicyCompiler } from '../../src/policy/compiler.js';
import type { Directory } from '../../src/policy/directory.js';
import { LoadWorker } from '../../src/policy/load-worker.js';
import { loadPolicies, type LoadResult } from '../../src/policy/load.js';
import { youngGenerationPacer } from '../../src/policy/young-generation.js';
import type { DecisionRequest } from '../../src/types.js';
import { makeTempDir, removeTempDirs, request, writeFiles } from '../helpers/policies.js';

const checker = new LoadWorker();
const pacer = youngGenerationPacer(0);
afterAll(async () => {
  await checker.close();
  removeTempDirs();
});

// A small vocabulary, so that random rules overlap, name each other's roles and collide.
const TYPES = ['doc', 'model'];
const ACTIONS = ['read', 'write', 'delete'];
const ROLES = ['viewer', 'editor', 'admin'];
const ORGS = ['a', 'b'];
const CONDITIONS = ['resource.attributes.org == principal.attributes.org', 'context.attributes.tier >= 2', 'principal.nope =='];

interface Model {
  /** Rules files by name. */
  rules: Record<string, object[]>;
  roles: { name: string; description?: string; inherits?: string[]; permissions: object[] }[];
  routes: object[];
}

const ruleArb = (id: string) =>
  fc.record({
    id: fc.constant(id),
    effect: fc.constantFrom('allow', 'deny'),
    actions: fc.subarray([...ACTIONS, '*'], { minLength: 1, maxLength: 2 }),
    resource: fc.record({ type: fc.constantFrom(...TYPES), attributes: fc.option(fc.record({ org: fc.constantFrom(...ORGS) }), { nil: undefined }) }, { requiredKeys: ['type'] }),
    principal: fc.option(fc.record({ roles: fc.subarray(ROLES, { minLength: 1, maxLength: 2 }) }), { nil: undefined }),
    when: fc.option(fc.constantFrom(...CONDITIONS.slice(0, 2)), { nil: undefined }),
  }, { requiredKeys: ['id', 'effect', 'actions', 'resource'] });

/** One edit to the model, as a policy author (or a bad merge) would make it. */
type Edit = (model: Model, dir: string) => void;

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  // Change one rule in place, keeping its id.
  fc.tuple(fc.nat(), fc.nat(), ruleArb('x')).map(([f, r, rule]): Edit => (model) => {
    const files = Object.keys(model.rules);
    const list = model.rules[files[f % files.length]!]!;
    if (list.length === 0) return;
    const i = r % list.length;
    list[i] = { ...rule, id: (list[i] as { id: string }).id };
  }),
  // Add a rule (sometimes with an id already used elsewhere).
  fc.tuple(fc.nat(), fc.nat(30), ruleArb('x')).map(([f, n, rule]): Edit => (model) => {
    const files = Object.keys(model.rules);
    model.rules[files[f % files.length]!]!.push({ ...rule, id: `r${n}` });
  }),
  // Remove a rule.
  fc.tuple(fc.nat(), fc.nat()).map(([f, r]): Edit => (model) => {
    const files = Object.keys(model.rules);
    const list = model.rules[files[f % files.length]!]!;
    if (list.length > 0) list.splice(r % list.length, 1);
  }),
  // A condition that does not compile (later edits may replace the rule again).
  fc.tuple(fc.nat(), fc.nat()).map(([f, r]): Edit => (model) => {
    const files = Object.keys(model.rules);
    const list = model.rules[files[f % files.length]!]!;
    if (list.length > 0) list[r % list.length] = { ...list[r % list.length], when: CONDITIONS[2] };
  }),
  // Change the role graph: who inherits whom, and the permissions.
  fc.tuple(fc.nat(), fc.subarray(ROLES, { maxLength: 2 })).map(([r, inherits]): Edit => (model) => {
    const role = model.roles[r % model.roles.length]!;
    role.inherits = inherits.filter((name) => name !== role.name);
  }),
  fc.tuple(fc.nat(), fc.subarray(ACTIONS, { minLength: 1 }), fc.option(fc.constantFrom(...TYPES), { nil: undefined })).map(([r, actions, type]): Edit => (model) => {
    const role = model.roles[r % model.roles.length]!;
    role.permissions = [{ id: 'p', actions, ...(type ? { resources: [type] } : {}) }];
  }),
  // Move a whole file under another name (same content, new name: new file, new locations).
  fc.nat().map((f): Edit => (model, dir) => {
    const files = Object.keys(model.rules);
    const from = files[f % files.length]!;
    const to = from.startsWith('moved-') ? from.slice('moved-'.length) : `moved-${from}`;
    if (model.rules[to]) return;
    model.rules[to] = model.rules[from]!;
    delete model.rules[from];
    renameSync(join(dir, from), join(dir, to));
  }),
  // Routes change.
  fc.constantFrom('read', 'write').map((action): Edit => (model) => {
    model.routes = [{ method: 'GET', path: '/docs/{id}', action, resource: { type: 'doc', id: '{id}' } }];
  }),
);

function write(dir: string, model: Model): void {
  const files: Record<string, object> = { 'roles.yaml': { kind: 'roles', roles: model.roles }, 'routes.yaml': { kind: 'routes', routes: model.routes } };
  for (const [name, rules] of Object.entries(model.rules)) files[name] = { kind: 'rules', rules };
  writeFiles(dir, files);
}

const corpus: DecisionRequest[] = [];
for (const type of TYPES) {
  for (const action of ACTIONS) {
    for (const role of [...ROLES, 'none']) {
      for (const org of ORGS) {
        corpus.push(request({ principal: { roles: role === 'none' ? [] : [role], attributes: { org } }, action, resource: { type, attributes: { org: ORGS[0] } }, context: { tier: org === 'a' ? 3 : 1 } }));
      }
    }
  }
}

/** Incremental and cold agree: the same outcome, diagnostics, version, rules and decisions. */
function expectSame(incremental: LoadResult, cold: LoadResult): void {
  expect(incremental.ok).toBe(cold.ok);
  if (!incremental.ok || !cold.ok) {
    expect(incremental).toEqual(cold);
    return;
  }
  const a = incremental.policies;
  const b = cold.policies;
  expect(a.policySet.version).toBe(b.policySet.version);
  expect(a.files).toEqual(b.files);
  const shape = (set: typeof a.policySet) => set.rules.map((r) => [r.id, r.effect, r.file, r.line, r.actions, r.resourceTypes, r.roles, r.roleHolders && [...r.roleHolders].sort(), r.conditionSource]);
  expect(shape(a.policySet)).toEqual(shape(b.policySet));
  expect([...a.policySet.roles.values()]).toEqual([...b.policySet.roles.values()]);
  expect(a.policySet.routes.routes.map((r) => [r.path, r.action, r.file, r.line])).toEqual(b.policySet.routes.routes.map((r) => [r.path, r.action, r.file, r.line]));
  for (const req of corpus) expect(evaluate(a.policySet, req)).toEqual(evaluate(b.policySet, req));
  // The index itself: the same candidates, in the same order, for every type and action (known or not).
  for (const type of [...TYPES, 'other']) {
    for (const action of [...ACTIONS, 'other']) {
      expect(a.policySet.candidates(type, action).map((r) => r.id)).toEqual(b.policySet.candidates(type, action).map((r) => r.id));
    }
  }
}

describe('incremental compilation', () => {
  it('gives the same version and the same decisions as a cold load, for random edits of a generated set', async () => {
    const initial = fc.record({
      a: fc.array(fc.nat(30), { maxLength: 6 }),
      b: fc.array(fc.nat(30), { maxLength: 6 }),
    });
    await fc.assert(
      fc.asyncProperty(initial, fc.array(editArb, { minLength: 1, maxLength: 8 }), fc.array(ruleArb('x'), { minLength: 12, maxLength: 12 }), async (ids, edits, shapes) => {
        const model: Model = {
          rules: {
            'a.yaml': [...new Set(ids.a)].map((n, i) => ({ ...shapes[i]!, id: `r${n}` })),
            'b.yaml': [...new Set(ids.b)].map((n, i) => ({ ...shapes[6 + i]!, id: `s${n}` })),
          },
          roles: [
            { name: 'viewer', permissions: [{ id: 'read', actions: ['read'] }] },
            { name: 'editor', inherits: ['viewer'], permissions: [{ id: 'write', actions: ['write'], resources: ['doc'] }] },
            { name: 'admin', inherits: ['editor'], permissions: [] },
          ],
          routes: [],
        };
        const dir = makeTempDir('verdict-incremental-');
        write(dir, model);
        const compiler = new PolicyCompiler(dir, backgroundReader(checker), 1);
        expectSame((await compiler.compile({ gitCommit: null })).result, loadPolicies(dir, { gitCommit: null }));
        for (const edit of edits) {
          edit(model, dir);
          write(dir, model);
          // As the server reloads: resting between slices, with the young generation collected at every pause.
          expectSame((await compiler.compile({ gitCommit: null, sharing: { pacer, restMs: 1 } })).result, loadPolicies(dir, { gitCommit: null }));
        }
        rmSync(dir, { recursive: true, force: true });
      }),
      { numRuns: 40 },
    );
  });

  it('gives the cold load\'s version and decisions for text past ASCII and a role large enough to cross in pieces', async () => {
    // Canonical texts and large items cross from the load thread as code units and pieces, not strings and one block.
    const model: Model = {
      rules: {
        'a.yaml': [{ id: 'r-1', effect: 'allow', actions: ['read'], resource: { type: 'doc', attributes: { org: 'é' } }, description: 'résumé 😀 \uFFFD' }],
        'b.yaml': [{ id: 's-1', effect: 'deny', actions: ['write'], resource: { type: 'doc' }, when: 'principal.attributes.org == "ü😀"' }],
      },
      roles: [
        { name: 'viewer', description: '\uFFFD first', permissions: Array.from({ length: 3_000 }, (_, i) => ({ id: `p${i}`, actions: [i % 2 === 0 ? 'read' : `act-${i}`], resources: [TYPES[i % TYPES.length]!] })) },
        { name: 'editor', inherits: ['viewer'], permissions: [{ id: 'write', actions: ['write'], resources: ['doc'] }] },
        { name: 'admin', inherits: ['editor'], permissions: [] },
      ],
      routes: [],
    };
    const dir = makeTempDir('verdict-incremental-');
    write(dir, model);
    const compiler = new PolicyCompiler(dir, backgroundReader(checker));
    const first = (await compiler.compile({ gitCommit: null })).result;
    expectSame(first, loadPolicies(dir, { gitCommit: null }));
    model.roles[0]!.description = 'changed 😀';
    write(dir, model);
    const second = (await compiler.compile({ gitCommit: null, sharing: { pacer, restMs: 1 } })).result;
    expectSame(second, loadPolicies(dir, { gitCommit: null }));
    expect(second.ok && first.ok && second.policies.policySet.version !== first.policies.policySet.version).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });

  it('reuses what did not change: an unchanged set is the same objects, a one-rule change recompiles only its document', async () => {
    const dir = makeTempDir('verdict-incremental-');
    const rules = (prefix: string) => Array.from({ length: 20 }, (_, i) => ({ id: `${prefix}-${i}`, effect: 'allow', actions: ['read'], resource: { type: `${prefix}-type-${i % 5}` } }));
    writeFiles(dir, { 'a.yaml': { kind: 'rules', rules: rules('a') }, 'b.yaml': { kind: 'rules', rules: rules('b') } });
    const compiler = new PolicyCompiler(dir, backgroundReader(checker));
    const first = await compiler.compile({ gitCommit: null });
    const again = await compiler.compile({ gitCommit: null });
    if (!first.result.ok || !again.result.ok) throw new Error('expected valid sets');
    const firstRules = first.result.policies.policySet.rules;
    expect(again.result.policies.policySet.rules).toEqual(firstRules);
    again.result.policies.policySet.rules.forEach((rule, i) => expect(rule).toBe(firstRules[i]));

    const changed = rules('a');
    changed[3] = { ...changed[3]!, actions: ['write'] };
    writeFiles(dir, { 'a.yaml': { kind: 'rules', rules: changed } });
    const third = await compiler.compile({ gitCommit: null });
    if (!third.result.ok) throw new Error('expected a valid set');
    const before = new Map(first.result.policies.policySet.rules.map((r) => [r.id, r]));
    for (const rule of third.result.policies.policySet.rules) {
      // b.yaml's rules are the very same objects; a.yaml's were compiled again.
      if (rule.id.startsWith('b-')) expect(rule).toBe(before.get(rule.id));
      else expect(rule).not.toBe(before.get(rule.id));
    }
    expect(third.result.policies.policySet.candidates('a-type-3', 'write').map((r) => r.id)).toEqual(['a-3']);
    // The lookup of an untouched type is the same list as before.
    expect(third.result.policies.policySet.candidates('b-type-1', 'read')).toBe(first.result.policies.policySet.candidates('b-type-1', 'read'));
  });

  it('a role change recompiles the rules naming that role, and only those', async () => {
    const dir = makeTempDir('verdict-incremental-');
    writeFiles(dir, {
      'roles.yaml': { kind: 'roles', roles: [{ name: 'viewer' }, { name: 'editor' }, { name: 'admin', inherits: ['viewer'] }] },
      'viewers.yaml': { kind: 'rules', rules: [{ id: 'v', effect: 'allow', actions: ['read'], principal: { roles: ['viewer'] } }] },
      'editors.yaml': { kind: 'rules', rules: [{ id: 'e', effect: 'allow', actions: ['write'], principal: { roles: ['editor'] } }] },
    });
    const compiler = new PolicyCompiler(dir, backgroundReader(checker));
    const first = await compiler.compile({ gitCommit: null });
    writeFiles(dir, { 'roles.yaml': { kind: 'roles', roles: [{ name: 'viewer' }, { name: 'editor' }, { name: 'admin', inherits: ['viewer', 'editor'] }] } });
    const second = await compiler.compile({ gitCommit: null });
    if (!first.result.ok || !second.result.ok) throw new Error('expected valid sets');
    const rule = (result: typeof first, id: string) => (result.result.ok ? result.result.policies.policySet.rules.find((r) => r.id === id) : undefined);
    expect(rule(second, 'v')).toBe(rule(first, 'v'));
    expect(rule(second, 'e')).not.toBe(rule(first, 'e'));
    expect([...rule(second, 'e')!.roleHolders!].sort()).toEqual(['admin', 'editor']);
    const admin = request({ principal: { roles: ['admin'] }, action: 'write' });
    expect(evaluate(first.result.policies.policySet, admin).effect).toBe('DENY');
    expect(evaluate(second.result.policies.policySet, admin).effect).toBe('ALLOW');
    expectSame(second.result, loadPolicies(dir, { gitCommit: null }));
  });

  it('keeps the directories while they, the roles and the schema are unchanged, and builds them again when any of those changes', async () => {
    const dir = makeTempDir('verdict-incremental-');
    const roles = (names: string[]) => ({ kind: 'roles', roles: names.map((name) => ({ name })) });
    const schema = (org: string) => ({ kind: 'schema', enforcement: 'reject', schemas: [{ for: 'principal', attributes: { org } }] });
    const people = (org: string) => ({ kind: 'principals', principals: [{ id: 'alice', roles: ['editor'], attributes: { org } }] });
    const rules = (action: string) => ({ kind: 'rules', rules: [{ id: 'r', effect: 'allow', actions: [action], principal: { roles: ['editor'] } }] });
    writeFiles(dir, { 'roles.yaml': roles(['viewer', 'editor']), 'schema.yaml': schema('string'), 'people.yaml': people('acme'), 'rules.yaml': rules('read') });
    const compiler = new PolicyCompiler(dir, backgroundReader(checker));
    const directoryOf = async (): Promise<{ result: LoadResult; directory: Directory | null }> => {
      const { result } = await compiler.compile({ gitCommit: null });
      expectSame(result, loadPolicies(dir, { gitCommit: null }));
      return { result, directory: result.ok ? result.policies.policySet.directory : null };
    };
    const first = (await directoryOf()).directory;
    expect(first?.principal('alice')?.roles).toEqual(['editor']);

    // Another kind of document changed: the very same directory.
    writeFiles(dir, { 'rules.yaml': rules('write') });
    expect((await directoryOf()).directory).toBe(first);

    // The role it names is gone: refused, as a cold load refuses it.
    writeFiles(dir, { 'roles.yaml': roles(['viewer']) });
    const withoutRole = await directoryOf();
    expect(withoutRole.result.ok ? [] : withoutRole.result.diagnostics.map((d) => d.message)).toContainEqual(expect.stringContaining('unknown role "editor"'));

    // The schema now refuses its attribute: refused too.
    writeFiles(dir, { 'roles.yaml': roles(['viewer', 'editor']), 'schema.yaml': schema('int') });
    const againstSchema = await directoryOf();
    expect(againstSchema.result.ok ? [] : againstSchema.result.diagnostics.map((d) => d.message)).toContainEqual(expect.stringContaining('principal "alice": attribute org'));

    // Its own document changed: built again, with the new entry.
    writeFiles(dir, { 'schema.yaml': schema('string'), 'people.yaml': people('globex') });
    const rebuilt = (await directoryOf()).directory;
    expect(rebuilt).not.toBe(first);
    expect(rebuilt?.principal('alice')?.attributes).toEqual({ org: 'globex' });
  });
});

