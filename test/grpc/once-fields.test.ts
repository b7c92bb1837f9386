import { describe, expect, it } from 'vitest';
import { messageType } from '../../src/server/grpc/descriptors.js';
import { readOnce } from '../../src/server/grpc/once-fields.js';

/** The reason a field was given twice; null when none was (or the walk could not follow the bytes). */
const fieldGivenTwice = (bytes: Uint8Array, type: Parameters<typeof readOnce>[1]): string | null => {
  const once = readOnce(bytes, type);
  return once?.kind === 'twice' ? once.reason : null;
};

// The wire walk behind "given twice" (once-fields.ts), on bytes built by hand: what it
// refuses, what it leaves to proto3, and that hostile shapes cost it linear work.

const varint = (n: number): Buffer => {
  const out: number[] = [];
  for (; n > 0x7f; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return Buffer.from(out);
};
const cat = (...parts: Buffer[]): Buffer => Buffer.concat(parts);
const ld = (field: number, body: Buffer): Buffer => cat(varint(field * 8 + 2), varint(body.length), body);
const str = (field: number, text: string): Buffer => ld(field, Buffer.from(text));
const entry = (key: string, value: string): Buffer => ld(1, cat(str(1, key), ld(2, str(3, value))));
/** An unknown field 50 as a group (wire types 3 and 4) holding a string and a nested group. */
const group = cat(varint(50 * 8 + 3), str(1, 'x'), varint(51 * 8 + 3), varint(51 * 8 + 4), varint(50 * 8 + 4));

const checkRequest = messageType('verdict.v1.CheckRequest')!;
const struct = messageType('google.protobuf.Struct')!;

describe('fields given twice', () => {
  it('finds a field after an unknown group, and a key among many (past the pairwise comparisons)', () => {
    expect(fieldGivenTwice(cat(str(2, 'read'), group, str(2, 'write')), checkRequest)).toMatch(/^action is given twice/);
    const keys = Array.from({ length: 40 }, (_, i) => entry(`k${i}`, 'v'));
    expect(fieldGivenTwice(cat(...keys), struct)).toBeNull();
    expect(fieldGivenTwice(cat(...keys, entry('k3', 'w')), struct)).toBe('fields["k3"] is given twice in one message; send each field, and each map key, once');
    expect(fieldGivenTwice(cat(entry('k3', 'v'), entry('k3', 'w')), struct)).toMatch(/^fields\["k3"\] is given twice/);
  });

  it('tells keys apart by their bytes: a key that is a prefix of another, and equal lengths', () => {
    expect(fieldGivenTwice(cat(entry('org', 'a'), entry('orga', 'b'), entry('orb', 'c')), struct)).toBeNull();
  });

  it('a map entry naming its key twice is refused too', () => {
    expect(fieldGivenTwice(ld(1, cat(str(1, 'a'), str(1, 'b'), ld(2, str(3, 'v')))), struct)).toMatch(/^fields key is given twice/);
  });

  it('leaves malformed bytes to the decoder', () => {
    expect(fieldGivenTwice(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x41]), checkRequest)).toBeNull();
    expect(fieldGivenTwice(cat(varint(50 * 8 + 3), str(1, 'x')), checkRequest)).toBeNull();
  });

  it('walks 10,000 distinct keys, and 10,000 nested structs, without failing', () => {
    const many = cat(...Array.from({ length: 10_000 }, (_, i) => entry(`key-${i}`, 'v')));
    expect(fieldGivenTwice(many, struct)).toBeNull();
    expect(fieldGivenTwice(cat(many, entry('key-9999', 'w')), struct)).toMatch(/^fields\["key-9999"\] is given twice/);
    let nested = entry('leaf', 'v');
    for (let i = 0; i < 10_000; i++) nested = ld(1, cat(str(1, 'n'), ld(2, ld(5, nested))));
    expect(fieldGivenTwice(nested, struct)).toBeNull();
  });
});
