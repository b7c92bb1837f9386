import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { PolicyDiagnostic } from '../../src/policy/diagnostic.js';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { loadPolicies } from '../../src/policy/load.js';
import { loadValid, makeTempDir, removeTempDirs, writeFiles, writePolicyDir } from '../helpers/policies.js';

afterAll(removeTempDirs);

const BROKEN = resolve(import.meta.dirname, '../fixtures/broken/all-errors');

function diagnosticsOf(dir: string): readonly PolicyDiagnostic[] {
  const result = loadPolicies(dir);
  if (result.ok) throw new Error(`expected ${dir} to be invalid`);
  return result.diagnostics;
}

describe('every diagnostic kind, all reported in one run', () => {
  const diagnostics = diagnosticsOf(BROKEN);
  const find = (file: string, path: string, message: RegExp) => diagnostics.filter((d) => d.file === file && d.path === path && message.test(d.message));

  /** [kind, file, path, message, line, col] — col null where only the line is pinned. */
  const expected: [string, string, string, RegExp, number, number | null][] = [
    ['YAML syntax error', 'syntax.yaml', '', /flow sequence/i, 7, null],
    ['unknown kind', 'unknown-kind.yaml', 'kind', /unknown kind "rulez"/, 1, 7],
    ['missing kind', 'missing-kind.yaml', '', /missing "kind"/, 2, 1],
    ['unknown key', 'rules.yaml', 'rules[0].colour', /unknown key "colour"/, 6, null],
    ['missing required field', 'rules.yaml', 'rules[1].actions', /"actions" is required/, 7, 5],
    ['bad effect', 'rules.yaml', 'rules[2].effect', /effect must be allow or deny/, 10, 13],
    ['bad matcher', 'rules.yaml', 'rules[3].resource.attributes.env', /a matcher is a value/, 17, 14],
    ['duplicate rule id across files', 'rules.yaml', 'rules[4].id', /duplicate rule id "shared-id": already used at more-rules\.yaml:3:5/, 18, 9],
    ['unknown role in a rule', 'rules.yaml', 'rules[5].principal.roles[0]', /unknown role "wizard"/, 25, 15],
    ['CEL that does not parse', 'rules.yaml', 'rules[6].when', /condition does not compile/, 29, 11],
    ['CEL naming an unknown variable', 'rules.yaml', 'rules[7].when', /Unknown variable: request/, 33, 11],
    ['CEL of non-bool type', 'rules.yaml', 'rules[8].when', /must be true or false.*string/, 37, 11],
    ['CEL reading a string field as a condition', 'rules.yaml', 'rules[9].when', /must be true or false, but this one is of type string/, 41, 11],
    ['CEL naming a field the request does not have', 'rules.yaml', 'rules[10].when', /unknown field "attribute"; did you mean "attributes"\?/, 45, 11],
    ['CEL with a mistyped operation', 'rules.yaml', 'rules[11].when', /no such overload: string \+ int/, 49, 11],
    ['a field of the wrong kind, said in an author\'s words', 'rules.yaml', 'rules[12].actions', /^"actions" must be a list \(e\.g\. \[read, write\]\), not the string "read"$/, 52, 14],
    ['duplicate role', 'roles.yaml', 'roles[1].name', /duplicate role "viewer": already defined at roles\.yaml:3:5/, 7, 11],
    ['unknown inherited role', 'roles.yaml', 'roles[2].inherits[1]', /inherits unknown role "ghost"/, 12, 24],
    ['inheritance cycle', 'roles.yaml', 'roles[3].inherits', /role "chicken" inherits itself through a cycle/, 14, 15],
    ['inheritance cycle (other end)', 'roles.yaml', 'roles[4].inherits', /role "egg" inherits itself through a cycle/, 16, 15],
    ['unknown principal fixture', 'tests/cases.yaml', 'cases[0].principal', /unknown principal "bob"/, 9, 16],
    ['unknown resource fixture', 'tests/cases.yaml', 'cases[1].resource', /unknown resource "report"/, 16, 15],
    ['unknown expected rule', 'tests/cases.yaml', 'cases[2].expect.rules[0]', /expected rule "no-such-rule" does not exist/, 22, 38],
  ];

  it.each(expected)('%s: %s at %s', (_kind, file, path, message, line, col) => {
    const hits = find(file, path, message);
    expect(hits, `no diagnostic for ${file} ${path}; got:\n${diagnostics.map(formatDiagnostic).join('\n')}`).toHaveLength(1);
    expect(hits[0]!.line).toBe(line);
    if (col !== null) expect(hits[0]!.col).toBe(col);
  });

  it('reports exactly these errors, nothing more, sorted by file and position', () => {
    expect(diagnostics).toHaveLength(expected.length);
    const sorted = [...diagnostics].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
    expect(diagnostics).toEqual(sorted);
  });

  it('a CEL error says where in the condition it is', () => {
    expect(find('rules.yaml', 'rules[6].when', /./)[0]!.message).toMatch(/column \d+ of the condition/);
  });

  it('the file of a diagnostic is relative to the policy directory, with forward slashes', () => {
    for (const d of diagnostics) {
      expect(d.file.startsWith('/')).toBe(false);
      expect(d.file).not.toContain('\\');
    }
  });

  it('formats as file:line:col: message (at path)', () => {
    const d = find('rules.yaml', 'rules[2].effect', /effect/)[0]!;
    expect(formatDiagnostic(d)).toBe('rules.yaml:10:13: effect must be allow or deny (at rules[2].effect)');
  });
});

describe('more validation', () => {
  it('JSON files are located by line and column too', () => {
    const dir = writePolicyDir({
      'rules.json': '{\n  "kind": "rules",\n  "rules": [\n    { "id": "x", "effect": "maybe", "actions": ["read"] }\n  ]\n}\n',
    });
    expect(diagnosticsOf(dir)).toEqual([{ file: 'rules.json', line: 4, col: 28, path: 'rules[0].effect', message: 'effect must be allow or deny' }]);
  });

  it('every document of a multi-document YAML file is checked', () => {
    const dir = writePolicyDir({
      'multi.yaml': 'kind: rules\nrules:\n  - id: a\n    effect: allow\n    actions: [read]\n---\nkind: rules\nrules:\n  - id: b\n    effect: nope\n    actions: [read]\n',
    });
    const diagnostics = diagnosticsOf(dir);
    expect(diagnostics).toHaveLength(1);
    expect(diagnostics[0]).toMatchObject({ file: 'multi.yaml', line: 10, path: 'rules[0].effect' });
  });

  it('an unknown key is located at the key, even when its value is a nested block', () => {
    const dir = writePolicyDir({
      'rules.yaml': 'kind: rules\nrules:\n  - id: a\n    effect: allow\n    actions: [read]\n    conditions:\n      all: [x]\n',
    });
    // The key "conditions" is on line 6, column 5; its value starts on the next line.
    expect(diagnosticsOf(dir)).toEqual([expect.objectContaining({ file: 'rules.yaml', path: 'rules[0].conditions', line: 6, col: 5 })]);
  });

  it('a duplicate key in a mapping is an error', () => {
    const dir = writePolicyDir({ 'dup.yaml': 'kind: rules\nrules:\n  - id: a\n    effect: allow\n    effect: deny\n    actions: [read]\n' });
    const diagnostics = diagnosticsOf(dir);
    expect(diagnostics).toHaveLength(1);
    expect(diagnostics[0]).toMatchObject({ file: 'dup.yaml', line: 5 });
  });

  it('a rule id may not collide with the id a role permission compiles into', () => {
    const dir = writePolicyDir({
      'roles.yaml': 'kind: roles\nroles:\n  - name: viewer\n    permissions:\n      - id: read\n        actions: [read]\n',
      'rules.yaml': 'kind: rules\nrules:\n  - id: "role:viewer:read"\n    effect: allow\n    actions: [read]\n',
    });
    expect(diagnosticsOf(dir).map((d) => d.message)).toEqual([expect.stringMatching(/duplicate rule id "role:viewer:read"/)]);
  });

  it('a duplicate id is reported at its second use even when the first rule is malformed', () => {
    const dir = writePolicyDir({
      'a.yaml': 'kind: rules\nrules:\n  - id: r1\n    effect: alow\n    actions: [read]\n  - id: r1\n    effect: allow\n    actions: [read]\n',
    });
    const duplicate = diagnosticsOf(dir).find((d) => /duplicate rule id/.test(d.message));
    expect(duplicate).toMatchObject({ file: 'a.yaml', line: 6, col: 9, path: 'rules[1].id', message: 'duplicate rule id "r1": already used at a.yaml:3:5' });
  });

  it('a condition in a role permission is compiled and located', () => {
    const dir = writePolicyDir({
      'roles.yaml': 'kind: roles\nroles:\n  - name: viewer\n    permissions:\n      - id: read\n        actions: [read]\n        when: subject.org == "x"\n',
    });
    expect(diagnosticsOf(dir)).toEqual([
      expect.objectContaining({ file: 'roles.yaml', line: 7, col: 15, path: 'roles[0].permissions[0].when', message: expect.stringMatching(/Unknown variable: subject/) }),
    ]);
  });

  it('a document that is not a mapping is an error', () => {
    const dir = writePolicyDir({ 'list.yaml': '- just\n- a list\n' });
    expect(diagnosticsOf(dir)).toEqual([expect.objectContaining({ file: 'list.yaml', line: 1, col: 1, message: expect.stringMatching(/must be a mapping/) })]);
  });

  it('an id matcher holding a number, boolean or null is an error (ids are text: `id: 42` never matched, so the deny never fired)', () => {
    const dir = writePolicyDir({
      'ids.yaml': [
        'kind: rules',
        'rules:',
        '  - {id: deny-42, effect: deny, actions: [read], resource: {id: 42}}',
        '  - {id: deny-007, effect: deny, actions: [read], principal: {id: 007}}',
        '  - {id: deny-any, effect: deny, actions: [read], resource: {id: [42, "43"]}}',
        '  - {id: deny-eq, effect: deny, actions: [read], resource: {id: {equals: true}}}',
        '  - {id: deny-text, effect: deny, actions: [read], resource: {id: ["42", {glob: "x-*"}]}}',
        '  - {id: deny-fine, effect: deny, actions: [read], resource: {id: {anyOf: ["42", "43"]}}, principal: {id: {glob: "svc-*"}}}',
        '',
      ].join('\n'),
    });
    const found = diagnosticsOf(dir).map((d) => [d.path, d.line, /ids are text, so write "42", not 42/.test(d.message)]);
    expect(found).toEqual([
      ['rules[0].resource.id', 3, true],
      ['rules[1].principal.id', 4, true],
      ['rules[2].resource.id', 5, true],
      ['rules[3].resource.id', 6, true],
      ['rules[4].resource.id', 7, true],
    ]);
  });

  it('a YAML key that is a list or a mapping, or an integer too large to be held exactly, is an error where it is written', () => {
    const dir = writePolicyDir({
      'keys.yaml': 'kind: rules\nrules:\n  - id: r1\n    effect: deny\n    actions: [read]\n    resource:\n      attributes:\n        ? [a, b]\n        : x\n',
      'numbers.yaml': 'kind: rules\nrules:\n  - id: r2\n    effect: deny\n    actions: [read]\n    resource:\n      attributes:\n        n: 123456789012345678901234567890\n',
      'fine.yaml': 'kind: rules\nrules:\n  - id: r3\n    effect: deny\n    actions: [read]\n    resource:\n      attributes:\n        m: 9007199254740991\n',
    });
    expect(diagnosticsOf(dir).map((d) => [d.file, d.line, d.col, d.message])).toEqual([
      ['keys.yaml', 8, 11, 'a key must be a single value, not a list or a mapping; write the key as text'],
      ['numbers.yaml', 8, 12, expect.stringMatching(/^the number 1\.2345678901234568e\+29 is too large to be held exactly \(past 2\^53/)],
    ]);
  });

  it('a valid directory next to the broken one loads', () => {
    const { policySet, tests, files } = loadValid(resolve(import.meta.dirname, '../../policies'));
    expect(files.length).toBeGreaterThan(0);
    expect(policySet.rules.length).toBeGreaterThan(0);
    expect(tests.length).toBeGreaterThan(0);
  });
});

describe('each stage reports what it can, whatever earlier stages found', () => {
  it('a role with a schema error still takes part: its duplicate is reported in the same run', () => {
    const dir = writePolicyDir({
      'roles.yaml': 'kind: roles\nroles:\n  - name: viewer\n    permisions: []\n  - name: viewer\n',
    });
    expect(diagnosticsOf(dir).map((d) => [d.line, d.path, d.message])).toEqual([
      [4, 'roles[0].permisions', 'unknown key "permisions"'],
      [5, 'roles[1].name', 'duplicate role "viewer": already defined at roles.yaml:3:5'],
    ]);
  });

  it('a rule naming a role whose definition has a schema error is not told the role is unknown', () => {
    const dir = writePolicyDir({
      'roles.yaml': 'kind: roles\nroles:\n  - name: viewer\n    colour: blue\n',
      'rules.yaml': 'kind: rules\nrules:\n  - id: r\n    effect: allow\n    actions: [read]\n    principal: { roles: [viewer] }\n',
    });
    expect(diagnosticsOf(dir).map((d) => `${d.file}:${d.path}`)).toEqual(['roles.yaml:roles[0].colour']);
  });

  it('an error in a document\'s own fields does not hide the errors of its items', () => {
    const dir = writePolicyDir({
      'rules.yaml': 'kind: rules\ndescripton: typo\nrules:\n  - id: a\n    effect: alow\n    actions: [read]\n  - id: a\n    effect: allow\n    actions: [read]\n',
    });
    expect(diagnosticsOf(dir).map((d) => [d.line, d.path, d.message])).toEqual([
      [2, 'descripton', 'unknown key "descripton"'],
      [5, 'rules[0].effect', 'effect must be allow or deny'],
      [7, 'rules[1].id', 'duplicate rule id "a": already used at rules.yaml:4:5'],
    ]);
  });

  it('a malformed role\'s well-formed permissions are still checked: a bad condition and a clashing id are reported with its schema error', () => {
    const dir = writePolicyDir({
      'roles.yaml': 'kind: roles\nroles:\n  - name: viewer\n    inherits: [ghost]\n    colour: blue\n    permissions:\n      - id: read\n        actions: [read]\n        when: nope ==\n',
      'rules.yaml': 'kind: rules\nrules:\n  - id: "role:viewer:read"\n    effect: allow\n    actions: [read]\n',
    });
    expect(diagnosticsOf(dir).map((d) => `${d.file}:${d.path}: ${d.message.split(':')[0]}`)).toEqual([
      'roles.yaml:roles[0].inherits[0]: role "viewer" inherits unknown role "ghost"',
      'roles.yaml:roles[0].colour: unknown key "colour"',
      'roles.yaml:roles[0].permissions[0].id: duplicate rule id "role',
      'roles.yaml:roles[0].permissions[0].when: condition does not compile',
    ]);
  });

  it('one malformed test case does not hide another case\'s unknown fixture', () => {
    const dir = writePolicyDir({
      'rules.yaml': 'kind: rules\nrules:\n  - id: r\n    effect: allow\n    actions: [read]\n',
      'tests.yaml': [
        'kind: tests',
        'name: two cases',
        'cases:',
        '  - name: bad effect',
        '    principal: { id: a }',
        '    action: read',
        '    resource: { type: doc }',
        '    expect: { effect: maybe }',
        '  - name: unknown fixture',
        '    principal: bob',
        '    action: read',
        '    resource: { type: doc }',
        '    expect: { effect: allow }',
        '',
      ].join('\n'),
    });
    expect(diagnosticsOf(dir).map((d) => [d.line, d.path])).toEqual([
      [8, 'cases[0].expect.effect'],
      [10, 'cases[1].principal'],
    ]);
  });
});

describe('policy set version', () => {
  const rules = {
    kind: 'rules',
    rules: [
      { id: 'a', effect: 'allow', actions: ['read', 'list'], resource: { type: 'doc', attributes: { org: ['acme', 'globex'] } } },
      { id: 'b', effect: 'deny', actions: ['*'], when: 'principal.attributes.suspended == true' },
    ],
  };
  const roles = { kind: 'roles', roles: [{ name: 'viewer', permissions: [{ id: 'read', actions: ['read'] }] }] };
  const versionOf = (dir: string) => loadValid(dir).policySet.version;

  it('is sha256 of the content for a directory outside git', () => {
    expect(versionOf(writePolicyDir({ 'rules.yaml': rules, 'roles.yaml': roles }))).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('does not change with file order, file names, key order, formatting, comments or YAML vs JSON', () => {
    const reference = versionOf(writePolicyDir({ 'rules.yaml': rules, 'roles.yaml': roles }));
    const reversedKeys = (value: unknown): unknown =>
      Array.isArray(value)
        ? value.map(reversedKeys)
        : value !== null && typeof value === 'object'
          ? Object.fromEntries(Object.entries(value).reverse().map(([k, v]) => [k, reversedKeys(v)]))
          : value;
    expect(versionOf(writePolicyDir({ 'z-roles.yaml': roles, 'a/rules.json': rules }))).toBe(reference);
    expect(versionOf(writePolicyDir({ 'rules.json': reversedKeys(rules) as object, 'roles.yml': reversedKeys(roles) as object }))).toBe(reference);
    const handWritten = [
      '# the same rules, written by hand in another style',
      'rules:',
      '- {id: a, effect: allow, actions: [read, list], resource: {type: doc, attributes: {org: [acme, globex]}}}',
      '- when: "principal.attributes.suspended == true"   # a comment',
      '  actions: ["*"]',
      '  effect: deny',
      '  id: b',
      'kind: rules',
      '',
    ].join('\n');
    expect(versionOf(writePolicyDir({ 'hand.yaml': handWritten, 'roles.yaml': roles }))).toBe(reference);
  });

  it('changes when the content changes', () => {
    const reference = versionOf(writePolicyDir({ 'rules.yaml': rules, 'roles.yaml': roles }));
    const changed = structuredClone(rules);
    changed.rules[0]!.actions = ['read'];
    expect(versionOf(writePolicyDir({ 'rules.yaml': changed, 'roles.yaml': roles }))).not.toBe(reference);
    expect(versionOf(writePolicyDir({ 'rules.yaml': rules }))).not.toBe(reference);
  });

  it('does not change when test files are added, renamed or edited: tests decide nothing', () => {
    const reference = versionOf(writePolicyDir({ 'rules.yaml': rules, 'roles.yaml': roles }));
    const tests = (name: string) => ({
      kind: 'tests',
      name: 'docs',
      principals: { p: { id: 'p', roles: ['viewer'] } },
      resources: { d: { type: 'doc', id: 'd', attributes: { org: 'acme' } } },
      cases: [{ name, principal: 'p', action: 'read', resource: 'd', expect: { effect: 'allow' } }],
    });
    expect(versionOf(writePolicyDir({ 'rules.yaml': rules, 'roles.yaml': roles, 'tests/docs.yaml': tests('viewer reads') }))).toBe(reference);
    expect(versionOf(writePolicyDir({ 'rules.yaml': rules, 'roles.yaml': roles, 'tests/docs.yaml': tests('a viewer may read a doc') }))).toBe(reference);
  });

  describe('in a git work tree', () => {
    const git = (cwd: string, ...args: string[]) =>
      execFileSync('git', ['-c', 'user.name=verdict test', '-c', 'user.email=test@verdict.invalid', '-c', 'commit.gpgsign=false', ...args], {
        cwd,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }).trim();
    const repoWith = (files: Record<string, string | object>): string => {
      const repo = makeTempDir('verdict-git-');
      git(repo, 'init', '-q');
      writeFiles(repo, files);
      git(repo, 'add', '-A');
      git(repo, 'commit', '-q', '-m', 'policies');
      return repo;
    };

    it('is the commit when the directory is a clean work tree, and sha256 once it is modified', () => {
      const repo = repoWith({ 'rules.yaml': rules, 'roles.yaml': roles });
      const head = git(repo, 'rev-parse', 'HEAD');
      expect(head).toMatch(/^[0-9a-f]{40}$/);
      expect(versionOf(repo)).toBe(head);

      // A modified tracked file: the commit no longer describes the content.
      const changed = structuredClone(rules);
      changed.rules[0]!.actions = ['read'];
      writeFiles(repo, { 'rules.yaml': changed });
      const modified = versionOf(repo);
      expect(modified).toMatch(/^sha256:[0-9a-f]{64}$/);
      // ... and it is the same content hash as the same files outside git.
      expect(modified).toBe(versionOf(writePolicyDir({ 'rules.yaml': changed, 'roles.yaml': roles })));

      // Committed again: the new commit.
      git(repo, 'commit', '-q', '-a', '-m', 'change');
      expect(versionOf(repo)).toBe(git(repo, 'rev-parse', 'HEAD'));
      expect(versionOf(repo)).not.toBe(head);
    });

    it("runs no program the repository's own config names (core.fsmonitor, a clean or process filter) while asking git for the commit", () => {
      const repo = repoWith({ '.gitattributes': '*.yaml filter=evil\n', 'rules.yaml': rules, 'roles.yaml': roles });
      const marker = join(makeTempDir('verdict-git-config-'), 'ran');
      git(repo, 'config', 'core.fsmonitor', `touch ${marker}; false`);
      for (const [key, command] of [['filter.evil.clean', `touch ${marker}; cat`], ['filter.evil.process', `touch ${marker}`]] as const) {
        git(repo, 'config', key, command);
        // A file whose time changed is read again by git status, through its clean filter.
        const later = new Date(Date.now() + 60_000);
        utimesSync(join(repo, 'rules.yaml'), later, later);
        expect(versionOf(repo), key).toBe(git(repo, 'rev-parse', 'HEAD'));
        expect(existsSync(marker), key).toBe(false);
      }
    });

    it('an untracked policy file makes it fall back to sha256', () => {
      const repo = repoWith({ 'rules.yaml': rules });
      writeFiles(repo, { 'roles.yaml': roles });
      expect(versionOf(repo)).toMatch(/^sha256:/);
    });

    it('is the commit for a clean policy directory inside a larger repository', () => {
      const repo = repoWith({ 'README.md': 'hello\n', 'policies/rules.yaml': rules });
      expect(versionOf(join(repo, 'policies'))).toBe(git(repo, 'rev-parse', 'HEAD'));
    });

    it('a policy file git ignores is loaded, so the commit alone does not describe the set: fall back to sha256', () => {
      const repo = repoWith({ '.gitignore': 'local.yaml\n', 'rules.yaml': rules });
      const head = git(repo, 'rev-parse', 'HEAD');
      expect(versionOf(repo)).toBe(head);
      writeFileSync(join(repo, 'local.yaml'), 'kind: rules\nrules:\n  - id: sneaky\n    effect: allow\n    actions: ["*"]\n');
      const { policySet } = loadValid(repo);
      expect(policySet.rules.map((r) => r.id)).toContain('sneaky'); // the ignored file is part of the set...
      expect(policySet.version).not.toBe(head); // ...so the version must not claim the commit.
    });

    it('a copy of a committed directory outside git hashes its content', () => {
      const repo = repoWith({ 'rules.yaml': rules });
      const copy = makeTempDir();
      cpSync(join(repo, 'rules.yaml'), join(copy, 'rules.yaml'));
      expect(versionOf(copy)).toMatch(/^sha256:/);
    });
  });
});
