import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { decodeCheckedFile, decodeLargeItems, encodeCheckedFile, type EncodedFile } from '../../src/policy/checked-codec.js';
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

  it('sends a role of 6,000 permissions in pieces, transferred, decoded between pauses to the same item and positions', () => {
    const permissions = Array.from({ length: 6_000 }, (_, i) => `      - { id: p${i}, actions: [act-${i}], resources: [model] }`);
    // Keys past ASCII, in the BMP and beyond it, so the packed paths are searched as strings sort.
    const odd = ['"é-key": 1', '"\\U0001F600": 2', '"\\uFFFD": 3', '"Z": 4'].map((line) => `    ${line}`);
    const text = `kind: roles\nroles:\n  - name: huge\n    permissions:\n${permissions.join('\n')}\n  - name: odd\n${odd.join('\n')}\n`;
    const original = checkFile('roles.yaml', text);
    const { encoded, transfer } = encodeCheckedFile(original);
    // Across a real channel with the transfer list: the position tables move, they are not copied.
    const { port1, port2 } = new MessageChannel();
    port1.postMessage(encoded, transfer);
    const arrivedMessage = receiveMessageOnPort(port2)!.message as EncodedFile;
    port1.close();
    expect(transfer.length).toBeGreaterThan(2);
    expect(transfer.every((buffer) => buffer.byteLength === 0)).toBe(true);
    const decoded = decodeCheckedFile(arrivedMessage);
    const run = decodeLargeItems(decoded);
    let pauses = 0;
    for (let next = run.next(); !next.done; next = run.next()) pauses++;
    expect(pauses).toBeGreaterThan(5);
    const before = original.documents[0]!.content!.items;
    const after = decoded.documents[0]!.content!.items;
    // Decoded once and kept: read twice, the same object.
    expect(after.at(0)).toBe(after.at(0));
    for (let i = 0; i < before.length; i++) {
      const item = before.at(i)!;
      const arrived = after.at(i)!;
      expect(arrived.checked).toStrictEqual(item.checked);
      const paths = pathsOf(item.checked.spec ?? item.checked.raw);
      for (const path of paths.filter((_, k) => k % 7 === 0 || k > paths.length - 40)) {
        expect(lookupNode(arrived.positions, path), `node ${String(path)}`).toEqual(lookupNode(item.positions, path));
        expect(lookupKey(arrived.positions, path), `key ${String(path)}`).toEqual(lookupKey(item.positions, path));
      }
    }
    expect(lookupNode(after.at(0)!.positions, ['permissions', 5999, 'actions', 0])).toEqual({ line: 6004, col: 32 });
    expect(lookupKey(after.at(1)!.positions, ['\u{1F600}'])).toEqual({ line: 6007, col: 5 });
  });

  it('decodes an item sent in pieces when read, if it was not decoded on arrival', () => {
    const permissions = Array.from({ length: 3_000 }, (_, i) => `      - { id: p${i}, actions: [act-${i}, read], resources: [model] }`);
    const original = checkFile('roles.yaml', `kind: roles\nroles:\n  - name: huge\n    permissions:\n${permissions.join('\n')}\n`);
    const decoded = decodeCheckedFile(structuredClone(encodeCheckedFile(original).encoded));
    const item = decoded.documents[0]!.content!.items.at(0)!;
    expect(item.checked).toStrictEqual(original.documents[0]!.content!.items.at(0)!.checked);
    // Kept: decoding on arrival now has nothing left to do.
    const run = decodeLargeItems(decoded);
    expect(run.next().done).toBe(true);
  });
});
