import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { MATCHERS_PER_PAUSE } from '../../src/policy/matcher.js';
import { LOAD_STAGES } from '../../src/policy/load.js';
import { runStages, runToEnd, type Stage } from '../../src/policy/pipeline.js';
import { Reuse } from '../../src/policy/reuse.js';
import { attributesStage } from '../../src/policy/stages/attributes.js';
import { limitsStage } from '../../src/policy/stages/limits.js';
import { syncReader } from '../../src/policy/stages/read.js';
import { rolesStage } from '../../src/policy/stages/roles.js';
import { routesStage } from '../../src/policy/stages/routes.js';
import { rulesStage } from '../../src/policy/stages/rules.js';
import { newLoadState, type LoadCache, type LoadState } from '../../src/policy/stages/state.js';
import { variablesStage } from '../../src/policy/stages/variables.js';
import { makeTempDir, writeFiles, type PolicyFiles } from '../helpers/policies.js';

// A reload runs on the thread that answers checks, a slice at a time between pauses.
// Each stage here once did all its work in one go on a large set: 2,000 limits with
// long conditions held the thread for 700–1,200 ms, 5,000 routes for about 100 ms,
// 3,000 variables for 60–90 ms, 800 layered roles for about 100 ms, and one schema
// item of 60,000 attributes for about 110 ms. What a stage does between two pauses is
// counted here by the items it reads (each is decoded when read) and by its steps.

const ROLES = { kind: 'roles', roles: [{ name: 'viewer', permissions: [{ id: 'read', actions: ['read'] }] }] };

function stateBefore(stage: Stage<LoadState>, files: PolicyFiles): LoadState {
  const state = newLoadState(writeFiles(makeTempDir('verdict-pauses-'), files), syncReader, { gitCommit: null });
  for (const earlier of LOAD_STAGES.slice(0, LOAD_STAGES.indexOf(stage))) runToEnd(earlier.run(state));
  return state;
}

/** Steps `stage` to its end: how many steps it took, and the most items of `kind` it read in one. */
function step(stage: Stage<LoadState>, state: LoadState, kind: string): { steps: number; mostReadInOneStep: number } {
  let read = 0;
  for (const { document } of state.documents) {
    if (document.content?.kind !== kind) continue;
    const items = document.content.items as { at(index: number): unknown };
    const at = items.at.bind(items);
    items.at = (index: number) => {
      read++;
      return at(index);
    };
  }
  let steps = 0;
  let mostReadInOneStep = 0;
  const run = stage.run(state);
  for (let next = run.next(); ; next = run.next()) {
    steps++;
    mostReadInOneStep = Math.max(mostReadInOneStep, read);
    read = 0;
    if (next.done) break;
  }
  expect(state.diagnostics.map(formatDiagnostic)).toEqual([]);
  return { steps, mostReadInOneStep };
}

describe('a large set is compiled a slice at a time', () => {
  it('limits: one limit between pauses', () => {
    const limits = Array.from({ length: 300 }, (_, i) => ({ id: `limit-${i}`, rate: '100/minute', principal: { roles: ['viewer'] }, when: `principal.attributes.org == "org-${i}" || principal.id == "user-${i}"` }));
    const state = stateBefore(limitsStage, { 'roles.yaml': ROLES, 'limits.yaml': { kind: 'limits', limits } });
    const { steps, mostReadInOneStep } = step(limitsStage, state, 'limits');
    expect(state.limits).toHaveLength(300);
    expect(steps).toBeGreaterThan(300);
    expect(mostReadInOneStep).toBeLessThanOrEqual(2);
  });

  it('routes: one route between pauses, and the table a few hundred routes at a time', () => {
    const routes = Array.from({ length: 1000 }, (_, i) => ({ method: 'GET', path: `/v1/models-${i}/{id}`, action: 'read', resource: { type: 'model', id: '{id}' } }));
    const state = stateBefore(routesStage, { 'roles.yaml': ROLES, 'routes.yaml': { kind: 'routes', routes } });
    const { steps, mostReadInOneStep } = step(routesStage, state, 'routes');
    expect(state.routes.routes).toHaveLength(1000);
    expect(state.routes.match('GET', '/v1/models-999/m1')).toMatchObject({ kind: 'matched', params: ['m1'] });
    // A pause per route compiled, and another every 256 filed in the table.
    expect(steps).toBeGreaterThan(1000 + 3);
    expect(mostReadInOneStep).toBeLessThanOrEqual(2);
  });

  it('variables: one variable between pauses, in the variables stage and in the attributes stage that type-checks them', () => {
    const variables = Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? { name: `v${i}`, expr: `principal.attributes.org == "org-${i}"` } : { name: `v${i}`, expr: `variables.v${i - 1} && principal.id != "user-${i}"` }));
    const schema = { kind: 'schema', schemas: [{ for: 'principal', attributes: { org: 'string' } }] };
    const files = { 'roles.yaml': ROLES, 'variables.yaml': { kind: 'variables', variables }, 'schema.yaml': schema };
    const state = stateBefore(variablesStage, files);
    const own = step(variablesStage, state, 'variables');
    expect(state.variables.expansions.size).toBe(300);
    expect(own.steps).toBeGreaterThan(2 * 300);
    expect(own.mostReadInOneStep).toBeLessThanOrEqual(2);
    // The attributes stage type-checks each variable: it used to pause only after one that failed.
    const typed = step(attributesStage, state, 'variables');
    expect(typed.steps).toBeGreaterThan(300);
    expect(typed.mostReadInOneStep).toBeLessThanOrEqual(2);
  });

  it('attributes: a few hundred declared attributes between pauses, even in one schema item', () => {
    const attributes = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`a${i}`, { type: 'enum', values: ['x', 'y'] }]));
    const state = stateBefore(attributesStage, { 'roles.yaml': ROLES, 'schema.yaml': { kind: 'schema', schemas: [{ for: 'context', attributes }] } });
    const { steps } = step(attributesStage, state, 'schema');
    expect(state.attributeSchemas?.partSchema('context', null)?.size).toBe(5000);
    expect(steps).toBeGreaterThanOrEqual(10);
  });

  it('rules: one permission of a role between pauses, and its rules filed a few thousand at a time', () => {
    const permissions = Array.from({ length: 5000 }, (_, i) => ({ id: `p${i}`, actions: ['read'], resources: [`type-${i % 40}`] }));
    const state = stateBefore(rulesStage, { 'roles.yaml': { kind: 'roles', roles: [{ name: 'big', permissions }] } });
    const run = rulesStage.run(state);
    let steps = 0;
    for (let next = run.next(); !next.done; next = run.next()) steps++;
    expect(state.diagnostics.map(formatDiagnostic)).toEqual([]);
    expect(state.compiled.flatMap((part) => part.rules)).toHaveLength(5000);
    expect(steps).toBeGreaterThan(5000);
  });

  it("rules: a malformed role's permissions checked one between pauses too", () => {
    // The role is malformed (an unknown key), so each permission is checked on its own: 3,000 at once held the thread.
    const permissions = Array.from({ length: 3000 }, (_, i) => (i % 2 === 0 ? { id: `p${i}`, actions: ['read'], resources: ['doc'] } : { id: `p${i}`, actions: 'not a list' }));
    const state = stateBefore(rulesStage, { 'roles.yaml': { kind: 'roles', roles: [{ name: 'big', unknown: true, permissions }] } });
    const schemaProblems = state.diagnostics.length;
    expect(schemaProblems).toBeGreaterThan(0);
    const run = rulesStage.run(state);
    let steps = 0;
    for (let next = run.next(); !next.done; next = run.next()) steps++;
    expect(steps).toBeGreaterThan(3000);
    // Well-formed permissions of a malformed role are claimed, not compiled into rules.
    expect(state.compiled.flatMap((part) => part.rules)).toHaveLength(0);
  });

  it('rules and limits: a few hundred matchers of one rule or limit between pauses, checked against the schema and compiled', () => {
    // One rule of 100,000 attribute matchers compiled in one go, 418–548 ms.
    const count = 3000;
    const attributes = Object.fromEntries(Array.from({ length: count }, (_, i) => [`a${i}`, `v${i}`]));
    const schema = { kind: 'schema', schemas: [{ for: 'resource', resourceTypes: ['doc'], attributes: Object.fromEntries(Array.from({ length: count }, (_, i) => [`a${i}`, 'string'])) }] };
    const rules = { kind: 'rules', rules: [{ id: 'wide', effect: 'deny', actions: ['read'], resource: { type: 'doc', attributes } }] };
    const limits = { kind: 'limits', limits: [{ id: 'wide-limit', rate: '10/minute', resource: { type: 'doc', attributes } }] };
    const files = { 'roles.yaml': ROLES, 'schema.yaml': schema, 'rules.yaml': rules, 'limits.yaml': limits };
    const countSteps = (stage: Stage<LoadState>): { steps: number; state: LoadState } => {
      const state = stateBefore(stage, files);
      const run = stage.run(state);
      let steps = 0;
      for (let next = run.next(); !next.done; next = run.next()) steps++;
      expect(state.diagnostics.map(formatDiagnostic)).toEqual([]);
      return { steps, state };
    };
    // Type-checked against the schema, then compiled: a pause every MATCHERS_PER_PAUSE in each.
    const expected = 2 * Math.floor(count / MATCHERS_PER_PAUSE);
    const rulesRun = countSteps(rulesStage);
    expect(rulesRun.state.compiled.flatMap((part) => part.rules)[0]!.matchers).toHaveLength(count);
    expect(rulesRun.steps).toBeGreaterThanOrEqual(expected);
    const limitsRun = countSteps(limitsStage);
    expect(limitsRun.state.limits[0]!.matchers).toHaveLength(count);
    expect(limitsRun.steps).toBeGreaterThanOrEqual(expected);
  });

  it('roles: one role between pauses in each pass over the graph', () => {
    // Layers of roles, each inheriting two of the layer below.
    const layers = 10;
    const perLayer = 30;
    const roles = [];
    for (let layer = 0; layer < layers; layer++) {
      for (let k = 0; k < perLayer; k++) {
        const inherits = layer === 0 ? [] : [`r${layer - 1}-${k}`, `r${layer - 1}-${(k + 1) % perLayer}`];
        roles.push({ name: `r${layer}-${k}`, inherits, permissions: [{ id: `p${layer}-${k}`, actions: [`act-${k}`] }] });
      }
    }
    const state = stateBefore(rolesStage, { 'roles.yaml': { kind: 'roles', roles } });
    const { steps, mostReadInOneStep } = step(rolesStage, state, 'roles');
    expect(state.roleGraph!.get('r9-0')!.effective).toContain('r0-5');
    // Five passes (read, inheritance, depths, resolve, holders), each pausing per role.
    expect(steps).toBeGreaterThan(5 * layers * perLayer);
    expect(mostReadInOneStep).toBeLessThanOrEqual(2);
  });
});

describe('limits, variables and attribute schemas are kept from one load to the next', () => {
  function cache(): LoadCache {
    return { files: new Reuse(), variables: new Reuse(), attributeSchemas: new Reuse(), roleGraphs: new Reuse(), compiled: new Reuse(), routes: new Reuse(), limits: new Reuse(), directories: new Reuse(), previous: null, claimed: null };
  }
  function load(dir: string, kept: LoadCache): LoadState {
    const state = newLoadState(dir, syncReader, { gitCommit: null, cache: kept });
    runStages(LOAD_STAGES, state);
    for (const reuse of [kept.files, kept.variables, kept.attributeSchemas, kept.roleGraphs, kept.compiled, kept.routes, kept.limits, kept.directories]) reuse.endLoad();
    return state;
  }
  const roles = (extra: string) => ({ kind: 'roles', roles: [{ name: 'viewer', permissions: [{ id: 'read', actions: ['read'] }] }, { name: extra, permissions: [] }] });
  const limits = { kind: 'limits', limits: [{ id: 'per-org', rate: '10/minute', principal: { roles: ['viewer'] }, when: 'variables.eu', key: { attribute: 'principal.attributes.org' } }] };
  const variables = { kind: 'variables', variables: [{ name: 'eu', expr: 'principal.attributes.region == "eu"' }] };
  const schema = (org: string) => ({ kind: 'schema', schemas: [{ for: 'principal', attributes: { org, region: 'string' } }] });

  it('while nothing they are checked against changes; a change to what they read compiles them again, and problems are still found', () => {
    const dir = makeTempDir('verdict-reuse-');
    const kept = cache();
    writeFiles(dir, { 'roles.yaml': roles('auditor'), 'limits.yaml': limits, 'variables.yaml': variables, 'schema.yaml': schema('string'), 'rules.yaml': { kind: 'rules', rules: [{ id: 'r', effect: 'allow', actions: ['read'] }] } });
    const first = load(dir, kept);
    expect(first.diagnostics.map(formatDiagnostic)).toEqual([]);

    // A rules file changed: the limits and the variables are the same objects.
    writeFiles(dir, { 'rules.yaml': { kind: 'rules', rules: [{ id: 'r2', effect: 'allow', actions: ['read'] }] } });
    const second = load(dir, kept);
    expect(second.limits[0]).toBe(first.limits[0]);
    expect(second.variables).toBe(first.variables);
    expect(second.attributeSchemas).not.toBeNull();
    expect(second.attributeSchemas).toBe(first.attributeSchemas);

    // The roles changed: the limits (which name a role) are compiled again.
    writeFiles(dir, { 'roles.yaml': roles('reviewer') });
    const third = load(dir, kept);
    expect(third.limits[0]).not.toBe(second.limits[0]);
    expect(third.variables).toBe(second.variables);

    // The schema makes the key a list: a cold load refuses it, and so does a reload.
    writeFiles(dir, { 'schema.yaml': schema('list') });
    const fourth = load(dir, kept);
    expect(fourth.attributeSchemas).not.toBe(third.attributeSchemas);
    expect(fourth.diagnostics.map(formatDiagnostic).join('\n')).toMatch(/principal\.attributes\.org is declared list/);

    // The variable reads an attribute the schema does not declare: refused on reload too.
    writeFiles(dir, { 'schema.yaml': schema('string'), 'variables.yaml': { kind: 'variables', variables: [{ name: 'eu', expr: 'principal.attributes.zone == "eu"' }] } });
    const fifth = load(dir, kept);
    expect(fifth.variables).not.toBe(first.variables);
    expect(fifth.diagnostics.map(formatDiagnostic).join('\n')).toMatch(/zone/);
  });
});
