import { execFileSync } from 'node:child_process';
import { symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Policy files written to hurt the loader, each with what the loader must answer:
 * the file, and a pattern for the diagnostic (`file:line:col: message`) that names it.
 * `write` puts the files into `dir`; `files` names what to delete afterwards.
 */
export interface HostileCase {
  readonly name: string;
  readonly files: readonly string[];
  write(dir: string): void;
  readonly diagnostic: RegExp;
}

const RULE_HEAD = 'kind: rules\nrules:\n  - id: hostile\n    effect: allow\n    actions: [read]\n';

/** A file of `bytes` that takes no disk space and no time to write (a hole): only its size is ever looked at. */
function sparse(path: string, bytes: number): void {
  writeFileSync(path, '');
  truncateSync(path, bytes);
}

export const HOSTILE_CASES: readonly HostileCase[] = [
  {
    name: 'a YAML alias bomb (ten anchors of ten aliases each: 10^10 nodes once expanded)',
    files: ['bomb.yaml'],
    write: (dir) => {
      const anchors = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'];
      for (let i = 1; i < 10; i++) anchors.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]`);
      writeFileSync(join(dir, 'bomb.yaml'), `kind: rules\n${anchors.join('\n')}\nrules:\n  - id: bomb\n    effect: allow\n    actions: *a9\n    resource: {type: model}\n`);
    },
    diagnostic: /bomb\.yaml:3:\d+: YAML aliases expand too far to be read/,
  },
  {
    name: 'YAML nested 100 levels',
    files: ['deep.yaml'],
    write: (dir) => writeFileSync(join(dir, 'deep.yaml'), `${RULE_HEAD}    resource: {type: model, attributes: {x: ${'['.repeat(100)}${']'.repeat(100)}}}\n`),
    diagnostic: /deep\.yaml:6:\d+: nested deeper than 64 levels/,
  },
  {
    name: 'YAML nested 100,000 levels (deeper than the parser can recurse)',
    files: ['deeper.yaml'],
    write: (dir) => writeFileSync(join(dir, 'deeper.yaml'), `${RULE_HEAD}    resource: {type: model, attributes: {x: ${'['.repeat(100_000)}${']'.repeat(100_000)}}}\n`),
    diagnostic: /deeper\.yaml:6:\d+: nested deeper than 64 levels/,
  },
  {
    // The YAML parser, which reads a JSON file JSON.parse will not take, kept about 4 GB for these 8 MB and ran the load out of memory.
    name: 'JSON nested 4,000,000 levels (8 MB, under the size limit)',
    files: ['deepest.json'],
    write: (dir) => writeFileSync(join(dir, 'deepest.json'), `{"kind":"rules","rules":${'['.repeat(4_000_000)}${']'.repeat(4_000_000)}}`),
    diagnostic: /deepest\.json:1:88: nested deeper than 64 levels/,
  },
  {
    name: 'JSON nested 600 levels',
    files: ['deep.json'],
    write: (dir) =>
      writeFileSync(join(dir, 'deep.json'), `{"kind": "rules", "rules": [{"id": "deep", "effect": "allow", "actions": ["read"], "resource": {"type": "model", "attributes": {"x": ${'['.repeat(600)}${']'.repeat(600)}}}}]}`),
    diagnostic: /deep\.json:1:\d+: nested deeper than 64 levels/,
  },
  {
    name: 'a condition of 50,000 terms joined by && (the CEL parser nests one level per operator)',
    files: ['chain.yaml'],
    write: (dir) => writeFileSync(join(dir, 'chain.yaml'), `${RULE_HEAD}    resource: {type: model}\n    when: '${Array.from({ length: 50_000 }, () => 'true').join(' && ')}'\n`),
    diagnostic: /chain\.yaml:7:11: condition does not compile: too long a chain of operators to compile/,
  },
  {
    name: 'a __proto__ key in a rule\'s attributes (read into an object, its members would match and show nowhere)',
    files: ['proto.yaml'],
    write: (dir) => writeFileSync(join(dir, 'proto.yaml'), `${RULE_HEAD}    resource: {type: model, attributes: {__proto__: {env: staging}}}\n`),
    diagnostic: /proto\.yaml:6:42: "__proto__" cannot be a key or a value in a policy document/,
  },
  {
    name: 'a __proto__ key in JSON',
    files: ['proto.json'],
    write: (dir) => writeFileSync(join(dir, 'proto.json'), '{"kind": "roles", "roles": [{"name": "x", "__proto__": {"inherits": ["admin"]}}]}'),
    diagnostic: /proto\.json:1:43: "__proto__" cannot be a key or a value in a policy document/,
  },
  {
    name: 'a __proto__ key in JSON spelled with an escape (its matcher would be empty: the rule would match everyone)',
    files: ['escaped.json'],
    write: (dir) =>
      writeFileSync(join(dir, 'escaped.json'), '{"kind": "rules", "rules": [{"id": "admins-only", "effect": "allow", "actions": ["delete"], "resource": {"type": "model"}, "principal": {"attributes": {"\\u005f_proto__": {"role": "superuser"}}}}]}'),
    diagnostic: /escaped\.json:1:\d+: "__proto__" cannot be a key or a value in a policy document/,
  },
  {
    name: 'a link to /etc/passwd named as a policy file',
    files: ['passwd.yaml'],
    write: (dir) => symlinkSync('/etc/passwd', join(dir, 'passwd.yaml')),
    diagnostic: /passwd\.yaml:1:1: cannot read file: it is a symbolic link to \/etc\/passwd, outside the policy directory/,
  },
  {
    name: 'a link to / (walked, it would list the whole machine)',
    files: ['everything'],
    write: (dir) => symlinkSync('/', join(dir, 'everything')),
    diagnostic: /everything:1:1: cannot read file: it is a symbolic link to \/, outside the policy directory/,
  },
  {
    name: 'a 9 MiB YAML file',
    files: ['huge.yaml'],
    write: (dir) => sparse(join(dir, 'huge.yaml'), 9 * 1024 * 1024),
    diagnostic: /huge\.yaml:1:1: cannot read file: it holds 9437184 bytes, over the 8 MiB a YAML policy file may hold/,
  },
  {
    name: 'a 65 MiB JSON file',
    files: ['huge.json'],
    write: (dir) => sparse(join(dir, 'huge.json'), 65 * 1024 * 1024),
    diagnostic: /huge\.json:1:1: cannot read file: it holds 68157440 bytes, over the 64 MiB a JSON policy file may hold/,
  },
  {
    name: 'five 60 MiB JSON files (each within its limit, 300 MiB together)',
    files: ['bulk-1.json', 'bulk-2.json', 'bulk-3.json', 'bulk-4.json', 'bulk-5.json'],
    write: (dir) => {
      for (let i = 1; i <= 5; i++) sparse(join(dir, `bulk-${i}.json`), 60 * 1024 * 1024);
    },
    diagnostic: /bulk-5\.json:1:1: cannot read file: the policy set passes 256 MiB with this file/,
  },
  {
    name: 'a chain of 5,000 roles, each inheriting the one before (12.5 million inherited roles to hold)',
    files: ['chain.yaml'],
    write: (dir) => {
      const roles = Array.from({ length: 5000 }, (_, i) => (i === 0 ? '  - name: r0\n' : `  - name: r${i}\n    inherits: [r${i - 1}]\n`));
      writeFileSync(join(dir, 'chain.yaml'), `kind: roles\nroles:\n${roles.join('')}`);
    },
    // r33 heads a chain of 33 levels; its inherits are on line 5 + 2 × 32.
    diagnostic: /chain\.yaml:69:\d+: role "r33" inherits through more than 32 levels of roles: flatten the hierarchy/,
  },
  {
    name: 'thirty layers of fifty roles, each inheriting the whole layer below',
    files: ['dense.yaml'],
    write: (dir) => {
      const roles: string[] = [];
      for (let layer = 0; layer < 30; layer++) {
        for (let i = 0; i < 50; i++) {
          const below = layer === 0 ? '' : `\n    inherits: [${Array.from({ length: 50 }, (_, j) => `d${layer - 1}x${j}`).join(', ')}]`;
          roles.push(`  - name: d${layer}x${i}${below}\n`);
        }
      }
      writeFileSync(join(dir, 'dense.yaml'), `kind: roles\nroles:\n${roles.join('')}`);
    },
    diagnostic: /dense\.yaml:\d+:\d+: the roles inherit too densely: resolving them went past 2000000 inherited roles and inheritances/,
  },
];

/** A named pipe with a policy file's name: reading it would wait for a writer for ever. */
export function writeFifo(path: string): void {
  execFileSync('mkfifo', [path]);
}
