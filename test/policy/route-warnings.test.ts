import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { loadPolicies } from '../../src/policy/load.js';
import { absentAttributeWarnings } from '../../src/policy/route-warnings.js';
import { loadFiles, loadValid, removeTempDirs, rulesDoc, writePolicyDir, type PolicyFiles } from '../helpers/policies.js';
import { BIN, ROOT, ensureBuilt } from '../helpers/verdict-process.js';

// `verdict validate` warns when a deny rule reads an attribute that a route it
// applies to can leave out: a gateway request without it slips past an attribute
// match, or is denied by error by a condition.

afterAll(removeTempDirs);

const deleteRoute = (attributes: Record<string, string>, context: Record<string, string> = {}) => ({
  kind: 'routes',
  routes: [{ method: 'DELETE', path: '/v1/models/{model}', action: 'delete', resource: { type: 'model', id: '{model}', attributes }, context: { attributes: context } }],
});

const files = (routes: object): PolicyFiles => ({
  'rules.yaml': rulesDoc([
    { id: 'no-prod-delete', effect: 'deny', actions: ['delete'], resource: { type: 'model', attributes: { env: 'production' } } },
    { id: 'needs-ticket', effect: 'deny', actions: ['delete'], resource: { type: 'model' }, when: '!context.attributes["ticket"].startsWith("INC-")' },
    { id: 'other-action', effect: 'deny', actions: ['predict'], resource: { type: 'model', attributes: { tier: 'gold' } } },
    { id: 'owners', effect: 'allow', actions: ['*'], resource: { type: 'model' }, when: 'resource.attributes.owner == principal.id' },
  ]),
  'routes.yaml': routes,
});

describe('absentAttributeWarnings', () => {
  it('is silent when every attribute a deny rule reads is set from a required value', () => {
    const loaded = loadFiles(files(deleteRoute({ env: '{header.x-model-env}' }, { ticket: '{header.x-incident-ticket}' })));
    expect(absentAttributeWarnings(loaded.policySet)).toEqual([]);
  });

  it('warns for an optional placeholder and for an attribute the route does not set, saying what happens to the deny', () => {
    const loaded = loadFiles(files(deleteRoute({ env: '{header.x-model-env?}' })));
    const warnings = absentAttributeWarnings(loaded.policySet);
    expect(warnings.map((w) => `${w.file}:${w.line}: ${w.message}`)).toEqual([
      'rules.yaml:3: warning: deny rule "no-prod-delete" reads resource.attributes.env, which the route DELETE /v1/models/{model} (routes.yaml:3) can leave out (an optional {…?} placeholder): without it the attribute match does not match, so the deny is skipped; have the route set it from a required value',
      'rules.yaml:11: warning: deny rule "needs-ticket" reads context.attributes.ticket, which the route DELETE /v1/models/{model} (routes.yaml:3) does not set: without it the condition errs, so such requests are denied by error; have the route set it from a required value',
    ]);
  });

  it('sees the attributes a deny reads through a named condition', () => {
    const loaded = loadFiles({
      'variables.yaml': { kind: 'variables', variables: [{ name: 'ticketed', expr: 'context.attributes.ticket.startsWith("INC-")' }] },
      'rules.yaml': rulesDoc([{ id: 'needs-ticket', effect: 'deny', actions: ['delete'], resource: { type: 'model' }, when: '!variables.ticketed' }]),
      'routes.yaml': deleteRoute({ env: '{header.x-model-env}' }),
    });
    expect(absentAttributeWarnings(loaded.policySet).map((w) => w.message)).toEqual([expect.stringMatching(/^warning: deny rule "needs-ticket" reads context\.attributes\.ticket, which the route .* does not set/)]);
  });

  it('finds nothing to warn about in the shipped example policies', () => {
    expect(absentAttributeWarnings(loadValid(`${ROOT}/policies`).policySet)).toEqual([]);
  });

  it('is printed by verdict validate, which still exits 0, and listed in --json', () => {
    ensureBuilt();
    const dir = writePolicyDir(files(deleteRoute({ env: '{header.x-model-env?}' }, { ticket: '{header.x-incident-ticket}' })));
    const run = spawnSync(process.execPath, [BIN, 'validate', dir], { cwd: ROOT, encoding: 'utf8' });
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/valid — 2 files/);
    expect(run.stderr.trim()).toBe(`${dir}/rules.yaml:3:1: warning: deny rule "no-prod-delete" reads resource.attributes.env, which the route DELETE /v1/models/{model} (routes.yaml:3) can leave out (an optional {…?} placeholder): without it the attribute match does not match, so the deny is skipped; have the route set it from a required value`);
    const json = spawnSync(process.execPath, [BIN, 'validate', dir, '--json'], { cwd: ROOT, encoding: 'utf8' });
    expect(json.status).toBe(0);
    expect((JSON.parse(json.stdout) as { warnings: { message: string }[] }).warnings.map((w) => w.message)).toEqual([expect.stringMatching(/^warning: deny rule "no-prod-delete"/)]);
  });
});

describe('placeholders marked optional', () => {
  it('refuses {name?} for a path parameter, which is always present', () => {
    const dir = writePolicyDir({ 'routes.yaml': { kind: 'routes', routes: [{ method: 'GET', path: '/m/{model}', action: 'read', resource: { type: 'model', id: '{model?}' } }] } });
    const run = spawnSync(process.execPath, [BIN, 'validate', dir], { cwd: ROOT, encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/routes\.yaml:\d+:\d+: \{model\?\}: a path parameter is always present; write \{model\}/);
  });

  it('reports a test case whose HTTP request the routes refuse: it never reaches the rules', () => {
    const dir = writePolicyDir({
      ...files(deleteRoute({ env: '{header.x-model-env}' }, { ticket: '{header.x-incident-ticket?}' })),
      'tests.yaml': {
        kind: 'tests',
        name: 'deletes',
        principals: { ada: { id: 'ada', roles: [], attributes: {} } },
        cases: [{ name: 'no env header', principal: 'ada', http: { method: 'DELETE', path: '/v1/models/m1' }, expect: { effect: 'deny' } }],
      },
    });
    const result = loadPolicies(dir);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringMatching(/^tests\.yaml:\d+:\d+: the routes refuse this request: the request has no x-model-env header, which the route DELETE \/v1\/models\/\{model\} requires for resource\.attributes\.env/),
    ]);
  });
});
