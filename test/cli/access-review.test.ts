import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { conditionReads } from '../../src/analysis/condition-reads.js';
import { runAccessReview } from '../../src/cli/access-review.js';
import { makeTempDir } from '../helpers/policies.js';
import { ROOT } from '../helpers/verdict-process.js';

// verdict access-review over the Todo scenario's directories, plus a grant that hangs on context.

const ON_CALL = `
  - id: on-call-editors-delete
    description: An editor on call may delete any todo.
    effect: allow
    actions: [delete]
    resource: { type: todo }
    principal: { roles: [editor] }
    when: context.attributes.on_call == true
`;

function fixture(): string {
  const dir = makeTempDir('verdict-review-');
  cpSync(join(ROOT, 'test', 'fixtures', 'authzen', 'todo'), dir, { recursive: true });
  writeFileSync(join(dir, 'rules.yaml'), readFileSync(join(dir, 'rules.yaml'), 'utf8') + ON_CALL);
  return dir;
}

async function review(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runAccessReview(args, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  return { code, out, err };
}

describe('verdict access-review', () => {
  const dir = fixture();

  it('json: every grant with its rules and roles; context conditions reported as conditional, never guessed', async () => {
    const { code, out } = await review(['--policies', dir, '--format', 'json']);
    expect(code).toBe(0);
    const grants = JSON.parse(out) as { principal: string; action: string; resourceId: string; access: string; rules: string[]; via: string[]; conditions: string[] }[];
    const find = (p: string, a: string, r: string) => grants.find((g) => g.principal === p && g.action === a && g.resourceId === r);
    expect(find('rick', 'delete', 't1')).toMatchObject({ access: 'allowed', rules: ['role:admin:manage-todos'], via: ['admin'], conditions: [] });
    expect(find('rick', 'read', 't2')).toMatchObject({ access: 'allowed', via: ['admin → viewer'] });
    expect(find('morty', 'update', 't1')).toMatchObject({ access: 'allowed', rules: ['owners-change-their-todos'] });
    expect(find('morty', 'update', 't2')).toBeUndefined();
    expect(find('summer', 'delete', 't2')).toMatchObject({ access: 'conditional', rules: ['on-call-editors-delete'], conditions: ['on-call-editors-delete: context.attributes.on_call == true'] });
    expect(find('beth', 'create', 't1')).toBeUndefined();
    expect(find('jerry', 'read', 't3')).toMatchObject({ access: 'allowed', rules: ['everyone-reads-todos'], via: [] });
  });

  it('table and csv, filtered by resource, principal and action', async () => {
    const table = await review(['--policies', dir, '--resource', 'todo:t2', '--action', 'delete']);
    expect(table.out.split('\n').slice(2).filter(Boolean)).toEqual([
      expect.stringMatching(/^todo:t2 +beth +delete +allowed +owners-change-their-todos$/),
      expect.stringMatching(/^todo:t2 +morty +delete +conditional +on-call-editors-delete +editor +on-call-editors-delete: context.attributes.on_call == true$/),
      expect.stringMatching(/^todo:t2 +rick +delete +allowed +role:admin:manage-todos +admin$/),
      expect.stringMatching(/^todo:t2 +summer +delete +conditional /),
    ]);
    const csv = await review(['--policies', dir, '--principal', 'jerry', '--format', 'csv']);
    expect(csv.out).toBe('resource,principal,action,access,rules,via,conditions\ntodo:t1,jerry,read,allowed,everyone-reads-todos,,\ntodo:t2,jerry,read,allowed,everyone-reads-todos,,\ntodo:t3,jerry,read,allowed,everyone-reads-todos,,\n');
    await expect(review(['--policies', dir, '--resource', 'todo'])).rejects.toThrow(/--resource is TYPE:ID/);
    await expect(review(['--policies', dir, '--format', 'xml'])).rejects.toThrow(/--format is one of/);
  });

  it('--rev: the grants gained and lost since a git revision', async () => {
    const repo = fixture();
    const git = (...args: string[]): string => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'commit.gpgsign=false', ...args], { cwd: repo, encoding: 'utf8' });
    git('init', '-q', '-b', 'main');
    git('add', '.');
    git('commit', '-q', '-m', 'before');
    writeFileSync(join(repo, 'principals.yaml'), readFileSync(join(repo, 'principals.yaml'), 'utf8').replace('  - id: jerry\n', '  - id: jerry\n    roles: [editor]\n'));
    const { code, out } = await review(['--policies', repo, '--rev', 'HEAD', '--principal', 'jerry', '--format', 'csv']);
    expect(code).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe('change,resource,principal,action,access,rules,via,conditions');
    expect(lines.slice(1)).toEqual(
      expect.arrayContaining([
        'added,todo:t1,jerry,create,allowed,role:editor:create-todos,editor,',
        'removed,todo:t1,jerry,read,allowed,everyone-reads-todos,,',
        'added,todo:t1,jerry,read,allowed,everyone-reads-todos role:viewer:read-todos,editor → viewer,',
        'added,todo:t1,jerry,delete,conditional,on-call-editors-delete,editor,on-call-editors-delete: context.attributes.on_call == true',
      ]),
    );
    const none = await review(['--policies', repo, '--rev', 'HEAD', '--principal', 'rick']);
    expect(none.out).toBe('no change in access\n');
  });
});

// Grants and denies that read the request only through a named condition, or through a
// principal attribute the directory does not define (so the request supplies it).
const THROUGH_NAMES = {
  'variables.yaml': `kind: variables
variables:
  - name: paged
    expr: has(context.attributes.pager) && context.attributes.pager == "primary"
  - name: frozen
    expr: has(context.attributes.freeze) && context.attributes.freeze == true
`,
  'named.yaml': `kind: rules
rules:
  - id: paged-delete
    description: whoever is paged may delete
    effect: allow
    actions: [delete]
    resource: { type: todo }
    when: variables.paged
  - id: freeze-no-update
    description: nothing is updated during a change freeze
    effect: deny
    actions: [update]
    resource: { type: todo }
    when: variables.frozen
  - id: cleared-archive
    description: principals with clearance archive
    effect: allow
    actions: [archive]
    resource: { type: todo }
    when: principal.attributes["clearance"] == "high"
  - id: pinned-archive
    description: pinned principals archive
    effect: allow
    actions: [archive]
    resource: { type: todo }
    principal: { attributes: { pinned: true } }
`,
};

describe('verdict access-review: what a grant reads of the request, named conditions put in', () => {
  const dir = fixture();
  for (const [name, text] of Object.entries(THROUGH_NAMES)) writeFileSync(join(dir, name), text);

  async function grants(args: string[]): Promise<{ principal: string; action: string; resourceId: string; access: string; rules: string[]; conditions: string[] }[]> {
    const { code, out } = await review(['--policies', dir, '--format', 'json', ...args]);
    expect(code).toBe(0);
    return JSON.parse(out) as { principal: string; action: string; resourceId: string; access: string; rules: string[]; conditions: string[] }[];
  }

  it('an allow reading context through variables.* is conditional, with the condition as it runs', async () => {
    const jerry = (await grants(['--action', 'delete', '--resource', 'todo:t1'])).find((g) => g.principal === 'jerry');
    expect(jerry).toMatchObject({ access: 'conditional', rules: ['paged-delete'], conditions: ['paged-delete: (has(context.attributes.pager) && context.attributes.pager == "primary")'] });
  });

  it('a deny reading context through variables.* makes an allow conditional instead of being taken as holding', async () => {
    const rick = (await grants(['--action', 'update', '--resource', 'todo:t1'])).find((g) => g.principal === 'rick');
    expect(rick).toMatchObject({ access: 'conditional', rules: ['role:admin:manage-todos'], conditions: ['unless freeze-no-update: (has(context.attributes.freeze) && context.attributes.freeze == true)'] });
  });

  it('an allow reading a principal attribute the directory leaves to the request is conditional, not left out', async () => {
    const archive = await grants(['--action', 'archive', '--resource', 'todo:t2']);
    expect(archive.map((g) => g.principal)).toEqual(['beth', 'jerry', 'morty', 'rick', 'summer']);
    expect(archive[0]).toMatchObject({
      access: 'conditional',
      rules: ['cleared-archive', 'pinned-archive'],
      conditions: ['cleared-archive: principal.attributes["clearance"] == "high"', expect.stringMatching(/^pinned-archive: principal\.attributes\.pinned /)],
    });
  });

  it('what a condition reads is asked of its parsed expression, not its text', () => {
    expect(conditionReads('"context" == resource.attributes.name')).toEqual({ context: false, principalAttributes: new Set() });
    expect(conditionReads('(has(context.attributes.pager)) && principal.attributes.org == resource.attributes.org')).toEqual({ context: true, principalAttributes: new Set(['org']) });
    expect(conditionReads('principal.attributes[resource.attributes.key] == 1').principalAttributes).toBe('all');
    expect(conditionReads('"org" in principal.attributes').principalAttributes).toBe('all');
  });
});
