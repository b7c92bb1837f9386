import { describe, expect, it } from 'vitest';
import { decodeCheckedFile, encodeCheckedFile } from '../../src/policy/checked-codec.js';
import { lookupKey, lookupNode } from '../../src/policy/source.js';
import { checkFile } from '../../src/policy/stages/schema.js';

// A checked file crosses from the policy load thread as bytes, each item decoded when a
// stage reads it; an item's positions travel packed (sorted paths in one string) and are
// searched where asked. Every position asked of the decoded item must be the one the
// file's own tables give: a rule's line, a problem's line and column.

/** Every path into a value, and under each a path that is not there (answered by its nearest ancestor). */
function pathsOf(value: unknown, path: PropertyKey[] = []): PropertyKey[][] {
  const out: PropertyKey[][] = [path, [...path, 'absent'], [...path, 99]];
  if (Array.isArray(value)) value.forEach((item, i) => out.push(...pathsOf(item, [...path, i])));
  else if (value !== null && typeof value === 'object') for (const [key, item] of Object.entries(value)) out.push(...pathsOf(item, [...path, key]));
  return out;
}

const ROLES = `kind: roles
roles:
  - name: viewer
    permissions:
      - id: read
        actions: [read, list]
        resources: [doc, "odd, key"]
        when: resource.attributes.org == principal.attributes.org
  - name: editor
    inherits: [viewer]
    permissions:
      - { id: write, actions: [write], resources: [doc] }
      - id: "quoted \\"id\\""
        actions:
          - delete
  - name: broken
    permissions: 7
    unknown: yes
`;

describe('a checked file across threads', () => {
  it('answers every position of every item as the file itself does, present or not', () => {
    const original = checkFile('roles.yaml', ROLES);
    const { encoded } = encodeCheckedFile(original);
    const decoded = decodeCheckedFile(structuredClone(encoded));
    const before = original.documents[0]!.content!.items;
    const after = decoded.documents[0]!.content!.items;
    expect(after.length).toBe(3);
    let asked = 0;
    for (let i = 0; i < before.length; i++) {
      const item = before.at(i)!;
      const arrived = after.at(i)!;
      expect(arrived.checked).toEqual(item.checked);
      for (const path of pathsOf(item.checked.spec ?? item.checked.raw)) {
        expect(lookupNode(arrived.positions, path), `node ${String(path)}`).toEqual(lookupNode(item.positions, path));
        expect(lookupKey(arrived.positions, path), `key ${String(path)}`).toEqual(lookupKey(item.positions, path));
        asked++;
      }
    }
    expect(asked).toBeGreaterThan(60);
    // The table itself, not only its fallbacks: a nested node and a key have their own lines.
    expect(lookupNode(after.at(1)!.positions, ['permissions', 1, 'actions', 0])).toEqual({ line: 15, col: 13 });
    expect(lookupKey(after.at(2)!.positions, ['unknown'])).toEqual({ line: 18, col: 5 });
  });
});
