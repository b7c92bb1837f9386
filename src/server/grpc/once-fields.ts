// A field that is not repeated, sent twice in one message, or a map key sent twice in
// one map: proto3 decoders read the last copy of a scalar, merge two copies of a
// message, and keep the last entry of a map key, and protobufjs replaces a message
// where proto3 merges. A gateway, a WAF or a log reader that looked at the first copy
// saw another request than the one decided (`principal {id: "carl" roles: "admin"}`
// then `principal {id: "carl"}` was an admin to a merging reader and not to verdict;
// `org: "acme"` then `org: "evil"` in one Struct was evil to verdict and acme to a
// reader keeping the first). No encoder writes such bytes, so the message is refused
// whole, as a JSON body naming a member twice is on the AuthZEN API.
//
// The same walk measures verdict.v1 requests against the request limits (readWithin),
// since decoding is where a request the limits refuse would cost the most: a megabyte
// of empty list items decodes in about a tenth of a second.
//
// The bytes are walked once before they are decoded, following the message types of
// the descriptor set: tags and lengths are read as protobufjs reads them, and nothing
// is copied except the keys of a map holding more than 16 entries.

import type protobuf from 'protobufjs';
import { memberSegment } from '../../json-members.js';

interface FieldPlan {
  readonly name: string;
  /** Sent at most once per message (not repeated, not a map). */
  readonly once: boolean;
  /** The message type of a message field (or of a map's values), walked in turn. */
  readonly message: (() => Plan) | null;
  /** A map field: its entries' keys must differ. */
  readonly map: boolean;
  /** The wire types this field may be sent with, as bits (1 << wire type); for a map, its entries' (length-delimited). */
  readonly wires: number;
  /** For a map: the wire types of its key and of its value. */
  readonly keyWires: number;
  readonly valueWires: number;
  /**
   * How protobufjs reads this field's varint: `32` as its uint32 (five bytes, then five
   * more skipped unread: int32, uint32, sint32, bool, enums), `64` as a long varint (to a
   * byte below 0x80, ten at most), null when it is not a varint.
   */
  readonly varint: 32 | 64 | null;
  /** What a budget counts its elements against: `items` (a repeated message, a map's entries), `list` (a repeated scalar), or nothing. */
  readonly counts: 'items' | 'list' | null;
  /** A google.protobuf.Struct field: request attributes, measured against the request limits when a budget is given. */
  readonly attributes: boolean;
}

type Plan = ReadonlyMap<number, FieldPlan>;

const plans = new WeakMap<protobuf.Type, Plan>();
/** The plans of google.protobuf.Value and ListValue once made: the walk counts attribute values and list items by them. */
let valuePlan: Plan | null = null;
let listPlan: Plan | null = null;

/** What a type's fields are, for the walk; made once per type. */
function planOf(type: protobuf.Type): Plan {
  let plan = plans.get(type);
  if (plan !== undefined) return plan;
  const fields = new Map<number, FieldPlan>();
  plan = fields;
  plans.set(type, plan);
  for (const field of type.fieldsArray) {
    field.resolve();
    const resolved = field.resolvedType;
    const nested = resolved !== null && 'fieldsArray' in resolved ? (resolved as protobuf.Type) : null;
    fields.set(field.id, {
      name: field.name,
      once: !field.repeated && !field.map,
      message: nested === null ? null : () => planOf(nested),
      map: field.map,
      wires: field.map ? LENGTH_DELIMITED : wiresOf(field.type, nested !== null, field.repeated),
      keyWires: field.map ? wiresOf((field as unknown as { keyType: string }).keyType, false, false) : 0,
      valueWires: field.map ? wiresOf(field.type, nested !== null, false) : 0,
      counts: field.map || (field.repeated && nested !== null) ? 'items' : field.repeated ? 'list' : null,
      varint: field.map || nested !== null ? null : VARINT_32.has(field.type) || resolved !== null ? 32 : VARINT_64.has(field.type) ? 64 : null,
      attributes: nested?.fullName === '.google.protobuf.Struct',
    });
  }
  if (type.fullName === '.google.protobuf.Value') valuePlan = plan;
  if (type.fullName === '.google.protobuf.ListValue') listPlan = plan;
  return plan;
}

const LENGTH_DELIMITED = 1 << 2;
/** The scalar types protobufjs reads with its uint32 reader; an enum too (a resolved type that is not a message). */
const VARINT_32 = new Set(['int32', 'uint32', 'sint32', 'bool']);
const VARINT_64 = new Set(['int64', 'uint64', 'sint64']);

/** The wire types a field of `type` is encoded with (a repeated number may also be packed). */
function wiresOf(type: string, isMessage: boolean, repeated: boolean): number {
  if (isMessage || type === 'string' || type === 'bytes') return LENGTH_DELIMITED;
  let wire: number;
  switch (type) {
    case 'double':
    case 'fixed64':
    case 'sfixed64':
      wire = 1 << 1;
      break;
    case 'float':
    case 'fixed32':
    case 'sfixed32':
      wire = 1 << 5;
      break;
    default:
      // the varint types: int32, int64, uint32, uint64, sint32, sint64, bool, and enums
      wire = 1 << 0;
  }
  return repeated ? wire | LENGTH_DELIMITED : wire;
}

/** Thrown inside the walk; each message it passes through on the way out puts its field's name in front. */
class WalkStop {
  readonly path: string[];
  constructor(last: string) {
    this.path = [last];
  }
}

class GivenTwice extends WalkStop {}

/** A repeated field outside attributes with more elements than any request may hold (a batch's items, a principal's roles). */
class TooMany extends WalkStop {
  constructor(
    last: string,
    readonly problem: string,
  ) {
    super(last);
  }
}

/** Attributes with more values, or a list with more items, than a request may hold: the walk leaves them for the cut. */
class OverAttributeLimit {
  /** For a list: the keys and indexes leading to it inside the attributes, outermost first. */
  readonly segments: (string | number)[] = [];
  constructor(readonly limit: 'values' | 'list') {}
}
const OVER_VALUES = new OverAttributeLimit('values');

/** Stops the walk on bytes it cannot follow; server.ts refuses them without decoding them. */
class Unreadable {
  constructor(readonly pastEnd: boolean) {}
}
const UNREADABLE = new Unreadable(false);
/** A length or varint running past the end of its message: what protobufjs calls "index out of range". */
const PAST_END = new Unreadable(true);

/** Why a message is refused before it is decoded. */
export interface OnceRefusal {
  /**
   * `twice`: a field or map key given twice. `unfollowed`: bytes the walk cannot follow
   * (a field sent with another wire type than its own, a group closed by another
   * field's end tag, a length past its message's end); refused without decoding
   * (server.ts): the second copy of a field could hide behind them, and a decoder more
   * lenient than the walk would read whatever follows unmeasured.
   */
  readonly kind: 'twice' | 'unfollowed' | 'too_many';
  readonly reason: string;
  /** For `too_many`: the field holding too many elements, e.g. `principal.roles`. */
  readonly field?: string;
}

/**
 * The request limits a message is measured against while it is walked, so that
 * one the limits would refuse anyway is not decoded first: a megabyte of empty
 * list items or roles, which a kilobyte of gzip carries, takes a tenth of a second
 * to decode and would hold every other caller's check that long.
 */
export interface WalkBudget {
  /** requestLimits.maxValues: most values in one attributes Struct. */
  readonly maxValues: number;
  /** requestLimits.maxListLength: most items in one list of attributes, and most elements of a repeated string (roles). */
  readonly maxListLength: number;
  /** Most occurrences of a repeated message field (a batch's items), and most entries of a map. */
  readonly maxItems: number;
  /** What a refusal for more than `maxItems` says after the field's name. */
  readonly tooManyItems: string;
  /**
   * Most occurrences of repeated message fields and map entries in the whole message,
   * at any depth, outside attributes; absent: no such cap. `maxItems` holds for each
   * list alone: sixty-three lists of 4,096 nulls in 1.5 KB of gzip passed it.
   */
  readonly maxTotalItems?: number;
  /** What a refusal for more than `maxTotalItems` says after the field's name. */
  readonly tooManyTotalItems?: string;
}

/**
 * Attributes over a limit, found by the walk and left unread: the caller cuts them out
 * of the message before decoding it (attribute-cuts.ts) and refuses what held them.
 */
export interface AttributeCut {
  /** What broke the limit: the attributes (`items[3].resource.attributes`, for values) or the list in them (`context.attributes.groups[2]`). */
  readonly field: string;
  /** Which limit, in the words the request limits use. */
  readonly problem: string;
  /** The occurrence of the top-level repeated field holding them (a batch item's index), or -1. */
  readonly item: number;
  /**
   * Where they sit: for each message from the top-level field down to the attributes
   * themselves, the offset of its length and the [from, to) of its content, as triples.
   */
  readonly frames: readonly number[];
}

/**
 * Why `message`, of `type`, cannot be read as one: a field or map key given twice, or
 * bytes the walk cannot follow; null when every field is given once.
 */
export function readOnce(message: Uint8Array, type: protobuf.Type): OnceRefusal | null {
  return readWithin(message, type, null);
}

/**
 * As readOnce, and with a budget also measures the message against the request
 * limits: a repeated field with too many elements refuses it whole (`too_many`), and
 * attributes over a limit are added to `cuts` and not walked further: the caller
 * must cut them out before decoding (attribute-cuts.ts).
 */
export function readWithin(message: Uint8Array, type: protobuf.Type, within: { readonly budget: WalkBudget; readonly cuts: AttributeCut[] } | null): OnceRefusal | null {
  bounds.budget = within?.budget ?? null;
  bounds.cuts = within?.cuts ?? null;
  bounds.items = 0;
  try {
    walk(message, 0, message.length, planOf(type), 0);
    return null;
  } catch (error) {
    if (error instanceof GivenTwice) return { kind: 'twice', reason: `${error.path.join('')} is given twice in one message; send each field, and each map key, once` };
    if (error instanceof TooMany) return { kind: 'too_many', field: error.path.join(''), reason: error.problem };
    if (error instanceof Unreadable) {
      return error.pastEnd
        ? { kind: 'unfollowed', reason: 'a field runs past the end of its message (index out of range); send a message encoded by a protobuf library' }
        : { kind: 'unfollowed', reason: 'its bytes do not follow the protobuf wire format (a field sent with another wire type than its own, or a group closed by another field); send a message encoded by a protobuf library' };
    }
    throw error;
  } finally {
    keyStack.top = 0;
    bounds.budget = null;
    bounds.cuts = null;
    bounds.inAttributes = false;
    bounds.top = 0;
  }
}

/**
 * Messages nested deeper than this are not followed (the call stack stays small): the
 * decoder refuses them past its own depth, and attributes are refused past 32 levels
 * (about 66 levels of messages) anyway.
 */
const MAX_DEPTH = 256;
/** Past this many entries in one message's maps, keys are compared through a set rather than one by one. */
const KEYS_COMPARED_PAIRWISE = 16;

// One walk at a time, on the thread that decodes. Each message walked keeps its
// cursor in a small object of its own (V8 keeps such an object in registers), and the
// map keys of the messages on the walk's path share one stack, so that a request
// walks without allocating (a map with many entries aside).

/**
 * Map entries of the messages on the walk's path, as triples (field number, key start,
 * key end) below `top`; each message owns the tail it pushed. The array never shrinks:
 * setting an array's length is a call into the runtime, on every message.
 */
const keyStack = { entries: [] as number[], top: 0 };
/** The key bytes of the map entry mapEntry last walked: set just before it returns, read at once by its caller. */
const entryKey = { from: 0, to: 0 };

/**
 * The request limits of the walk under way. Outside attributes, the messages on the
 * walk's path are kept as frames (their length's offset, their content's [from, to),
 * their field's name and occurrence), so that attributes over a limit can be cut and
 * named; inside, the values of the attributes are counted.
 */
const bounds = {
  budget: null as WalkBudget | null,
  cuts: null as AttributeCut[] | null,
  inAttributes: false,
  values: 0,
  /** Repeated message fields and map entries outside attributes, in the whole message (WalkBudget.maxTotalItems). */
  items: 0,
  frames: [] as number[],
  names: [] as string[],
  occurrences: [] as number[],
  top: 0,
};
/** Outside attributes: the occurrences of each repeated field (numbers below 32) so far, 32 counters per message on the path. */
const MAX_COUNTED_FRAMES = 16;
const repeats = new Uint32Array(32 * MAX_COUNTED_FRAMES);

interface Cursor {
  pos: number;
}

/**
 * Reads a tag or a length as protobufjs does (its `uint32`): the low 32 bits, a fifth
 * byte's low four bits, and when the fifth byte goes on, five more bytes skipped
 * unread. Reading them any other way, the walk would see another field number or
 * length than the decoder, and a second copy could pass as another field.
 */
function uint32(bytes: Uint8Array, at: Cursor, end: number): number {
  let value = 0;
  for (let i = 0; i < 4; i++) {
    if (at.pos >= end) throw PAST_END;
    const byte = bytes[at.pos++]!;
    value = (value | ((byte & 0x7f) << (7 * i))) >>> 0;
    if (byte < 0x80) return value;
  }
  if (at.pos >= end) throw PAST_END;
  const fifth = bytes[at.pos++]!;
  value = (value | ((fifth & 0x0f) << 28)) >>> 0;
  if (fifth < 0x80) return value;
  at.pos += 5;
  if (at.pos > end) throw PAST_END;
  return value;
}

/** Moves past a varint value, as protobufjs skips one: up to a byte without its high bit. */
function skipVarint(bytes: Uint8Array, at: Cursor, end: number): void {
  for (;;) {
    if (at.pos >= end) throw PAST_END;
    if (bytes[at.pos++]! < 0x80) return;
  }
}

/**
 * Moves past a varint as protobufjs reads one of a known field's type: a 32-bit one as
 * its uint32 (the walk's `uint32`), a 64-bit one to a byte below 0x80 within ten bytes.
 * Skipped to the first byte below 0x80 instead, a bool sent as eleven bytes or more hid
 * from the walk what protobufjs read after its tenth byte.
 */
function skipFieldVarint(bytes: Uint8Array, at: Cursor, end: number, width: 32 | 64): void {
  if (width === 32) {
    uint32(bytes, at, end);
    return;
  }
  for (let i = 0; i < 10; i++) {
    if (at.pos >= end) throw PAST_END;
    if (bytes[at.pos++]! < 0x80) return;
  }
  throw UNREADABLE;
}

/** Whether the key bytes [from, to) equal those at [otherFrom, otherTo). */
function sameKey(bytes: Uint8Array, from: number, to: number, otherFrom: number, otherTo: number): boolean {
  if (to - from !== otherTo - otherFrom) return false;
  for (let a = from, b = otherFrom; a < to; a++, b++) if (bytes[a] !== bytes[b]) return false;
  return true;
}

/** latin1 maps each byte to one character: equal keys, equal strings. */
function keyText(bytes: Uint8Array, id: number, from: number, to: number): string {
  return `${id}:${Buffer.from(bytes.buffer, bytes.byteOffset + from, to - from).toString('latin1')}`;
}

function keyLabel(bytes: Uint8Array, from: number, to: number): string {
  return JSON.stringify(Buffer.from(bytes.buffer, bytes.byteOffset + from, to - from).toString('utf8'));
}

function walk(bytes: Uint8Array, start: number, end: number, plan: Plan, depth: number): void {
  if (depth > MAX_DEPTH) throw UNREADABLE;
  const budget = bounds.budget;
  const inAttributes = bounds.inAttributes;
  if (inAttributes && plan === valuePlan && ++bounds.values > budget!.maxValues) throw OVER_VALUES;
  const maxListItems = inAttributes && plan === listPlan ? budget!.maxListLength : -1;
  let listItems = 0;
  // Outside attributes, with a budget: this message's repeated fields are counted in its own 32 counters.
  const counted = budget !== null && !inAttributes && bounds.top < MAX_COUNTED_FRAMES;
  const countersFrom = bounds.top * 32;
  if (counted) repeats.fill(0, countersFrom, countersFrom + 32);
  const at: Cursor = { pos: start };
  // Field numbers below 32 seen once, as bits; others (rare) in a set made when needed.
  let seenLow = 0;
  let seenHigh: Set<number> | null = null;
  // This message's map keys: triples on the stack from `base`, or a set once there are many.
  const base = keyStack.top;
  const entries = keyStack.entries;
  let manyKeys: Set<string> | null = null;
  while (at.pos < end) {
    const tag = uint32(bytes, at, end);
    const id = tag >>> 3;
    const wire = tag & 7;
    const field = plan.get(id);
    // protobufjs reads a known field by its declared type whatever wire type it came with; the walk would skip it by the wire type and lose step.
    if (field !== undefined && ((1 << wire) & field.wires) === 0) throw UNREADABLE;
    if (field !== undefined && field.once) {
      if (id < 32) {
        const bit = 1 << id;
        if ((seenLow & bit) !== 0) throw new GivenTwice(field.name);
        seenLow |= bit;
      } else {
        seenHigh ??= new Set();
        if (seenHigh.has(id)) throw new GivenTwice(field.name);
        seenHigh.add(id);
      }
    }
    // The walk stops at the first element past a limit: counting the rest of a megabyte of them cost six times the refusal.
    if (maxListItems >= 0 && id === 1 && ++listItems > maxListItems) throw new OverAttributeLimit('list');
    let occurrence = -1;
    if (budget !== null && !inAttributes && field !== undefined && field.counts === 'items' && budget.maxTotalItems !== undefined && ++bounds.items > budget.maxTotalItems) {
      throw new TooMany(field.name, budget.tooManyTotalItems ?? budget.tooManyItems);
    }
    if (counted && field !== undefined && field.counts !== null && id < 32) {
      occurrence = repeats[countersFrom + id]!++;
      if (field.counts === 'items' && occurrence >= budget.maxItems) throw new TooMany(field.name, budget.tooManyItems);
      if (field.counts === 'list' && occurrence >= budget.maxListLength) throw new TooMany(field.name, tooLong(budget));
    }
    if (wire === 0 && field !== undefined && field.varint !== null) {
      skipFieldVarint(bytes, at, end, field.varint);
      continue;
    }
    if (wire !== 2) {
      skip(bytes, at, end, wire, id, depth);
      continue;
    }
    const lengthAt = at.pos;
    const length = uint32(bytes, at, end);
    const from = at.pos;
    const to = from + length;
    if (to > end) throw PAST_END;
    if (field === undefined) {
      at.pos = to;
      continue;
    }
    if (field.map) {
      mapEntry(bytes, from, to, field, depth);
      const keyFrom = entryKey.from;
      const keyTo = entryKey.to;
      if (manyKeys !== null) {
        const text = keyText(bytes, id, keyFrom, keyTo);
        if (manyKeys.has(text)) throw new GivenTwice(`${field.name}[${keyLabel(bytes, keyFrom, keyTo)}]`);
        manyKeys.add(text);
      } else {
        const top = keyStack.top;
        for (let i = base; i < top; i += 3) {
          if (entries[i] === id && sameKey(bytes, keyFrom, keyTo, entries[i + 1]!, entries[i + 2]!)) throw new GivenTwice(`${field.name}[${keyLabel(bytes, keyFrom, keyTo)}]`);
        }
        entries[top] = id;
        entries[top + 1] = keyFrom;
        entries[top + 2] = keyTo;
        keyStack.top = top + 3;
        if (keyStack.top - base > KEYS_COMPARED_PAIRWISE * 3) {
          manyKeys = new Set();
          for (let i = base; i < keyStack.top; i += 3) manyKeys.add(keyText(bytes, entries[i]!, entries[i + 1]!, entries[i + 2]!));
          keyStack.top = base;
        }
      }
    } else if (field.message !== null) {
      if (budget !== null && !inAttributes) {
        walkOutside(bytes, field, lengthAt, from, to, occurrence, depth);
      } else {
        try {
          walk(bytes, from, to, field.message(), depth + 1);
        } catch (error) {
          if (error instanceof WalkStop) error.path.unshift(`${field.name}.`);
          else if (error instanceof OverAttributeLimit && error !== OVER_VALUES && maxListItems >= 0) error.segments.unshift(listItems - 1);
          throw error;
        }
      }
    }
    at.pos = to;
  }
  // On a throw the walk is over: readOnce empties the stack.
  keyStack.top = base;
}

/**
 * Walks a message field outside attributes, with a budget: its frame is kept while
 * it is walked, and attributes over a limit are put in the cuts rather than refusing
 * the message (a batch answers the item holding them, and the log keeps the rest).
 */
function walkOutside(bytes: Uint8Array, field: FieldPlan, lengthAt: number, from: number, to: number, occurrence: number, depth: number): void {
  const top = bounds.top;
  bounds.frames[top * 3] = lengthAt;
  bounds.frames[top * 3 + 1] = from;
  bounds.frames[top * 3 + 2] = to;
  bounds.names[top] = field.name;
  bounds.occurrences[top] = occurrence;
  bounds.top = top + 1;
  const keysTop = keyStack.top;
  try {
    if (field.attributes) {
      bounds.inAttributes = true;
      bounds.values = 0;
    }
    walk(bytes, from, to, field.message!(), depth + 1);
  } catch (error) {
    if (error instanceof OverAttributeLimit && field.attributes) {
      keyStack.top = keysTop;
      cut(error);
      return;
    }
    if (error instanceof WalkStop) error.path.unshift(occurrence >= 0 ? `${field.name}[${occurrence}].` : `${field.name}.`);
    throw error;
  } finally {
    bounds.inAttributes = false;
    bounds.top = top;
  }
}

/** Why a list (or roles) is refused, in the words the request limits use. */
function tooLong(budget: WalkBudget): string {
  return `more than ${budget.maxListLength} items, over the limit of ${budget.maxListLength} (requestLimits.maxListLength)`;
}

/** Records the attributes whose frame is on top as a cut, with the frames above them. */
function cut(over: OverAttributeLimit): void {
  const budget = bounds.budget!;
  const top = bounds.top;
  let field = '';
  for (let i = 0; i < top; i++) field += `${i === 0 ? '' : '.'}${bounds.names[i]}${bounds.occurrences[i]! >= 0 ? `[${bounds.occurrences[i]}]` : ''}`;
  // Worded as the request limits word it for a decoded request (decide/bounds.ts).
  let problem: string;
  if (over.limit === 'values') {
    problem = `more than ${budget.maxValues} values, over the limit (requestLimits.maxValues)`;
  } else {
    for (const segment of over.segments) field += typeof segment === 'number' ? `[${segment}]` : memberSegment(segment);
    problem = tooLong(budget);
  }
  bounds.cuts!.push({ field, problem, item: bounds.occurrences[0]!, frames: bounds.frames.slice(0, top * 3) });
}

/** Walks one map entry (key = 1, value = 2), and leaves where its key's bytes are in `entryKey`. */
function mapEntry(bytes: Uint8Array, start: number, end: number, field: FieldPlan, depth: number): void {
  const at: Cursor = { pos: start };
  let keyFrom = start;
  let keyTo = start;
  let keySeen = false;
  let valueSeen = false;
  while (at.pos < end) {
    const tag = uint32(bytes, at, end);
    const id = tag >>> 3;
    const wire = tag & 7;
    if (id === 1 || id === 2) {
      if (((1 << wire) & (id === 1 ? field.keyWires : field.valueWires)) === 0) throw UNREADABLE;
      if (id === 1 ? keySeen : valueSeen) throw new GivenTwice(`${field.name}${id === 1 ? ' key' : ' value'}`);
      if (id === 1) keySeen = true;
      else valueSeen = true;
    }
    if (wire !== 2) {
      const from = at.pos;
      skip(bytes, at, end, wire, id, depth);
      // A key of another type than string is compared by its encoded bytes.
      if (id === 1) {
        keyFrom = from;
        keyTo = at.pos;
      }
      continue;
    }
    const length = uint32(bytes, at, end);
    const from = at.pos;
    const to = from + length;
    if (to > end) throw PAST_END;
    if (id === 1) {
      keyFrom = from;
      keyTo = to;
    } else if (id === 2 && field.message !== null) {
      // Outside attributes, with a budget, the value counts its repeated fields in counters of its own, not its map's holder's.
      const top = bounds.top;
      if (bounds.budget !== null && !bounds.inAttributes) {
        // No frame a cut could use: attributes over a limit inside a map's value refuse the message whole (attribute-cuts.ts finds it does not nest).
        bounds.frames[top * 3] = bounds.frames[top * 3 + 1] = bounds.frames[top * 3 + 2] = -1;
        bounds.names[top] = field.name;
        bounds.occurrences[top] = -1;
        bounds.top = top + 1;
      }
      try {
        walk(bytes, from, to, field.message(), depth + 1);
      } catch (error) {
        if (error instanceof WalkStop) error.path.unshift(`${field.name}[${keyLabel(bytes, keyFrom, keyTo)}].`);
        else if (error instanceof OverAttributeLimit && error !== OVER_VALUES) error.segments.unshift(entryKeyText(bytes, start, end));
        throw error;
      } finally {
        bounds.top = top;
      }
    }
    at.pos = to;
  }
  entryKey.from = keyFrom;
  entryKey.to = keyTo;
}

/** The key of the map entry at [start, end) as text, wherever it falls in the entry ('' when it has none, as a decoder reads it). */
function entryKeyText(bytes: Uint8Array, start: number, end: number): string {
  const at: Cursor = { pos: start };
  let key = '';
  try {
    while (at.pos < end) {
      const tag = uint32(bytes, at, end);
      if ((tag & 7) !== 2) {
        skip(bytes, at, end, tag & 7, tag >>> 3, 0);
        continue;
      }
      const length = uint32(bytes, at, end);
      if ((tag >>> 3) === 1) key = Buffer.from(bytes.buffer, bytes.byteOffset + at.pos, Math.min(length, end - at.pos)).toString('utf8');
      at.pos += length;
    }
  } catch {
    // The entry was followed this far by the walk; bytes it could not follow leave the key read so far.
  }
  return key;
}

/** Moves past a field that is not length-delimited; a group is walked to its end. */
function skip(bytes: Uint8Array, at: Cursor, end: number, wire: number, id: number, depth: number): void {
  switch (wire) {
    case 0:
      skipVarint(bytes, at, end);
      return;
    case 1:
      at.pos += 8;
      break;
    case 5:
      at.pos += 4;
      break;
    case 3: {
      if (depth > MAX_DEPTH) throw UNREADABLE;
      for (;;) {
        const tag = uint32(bytes, at, end);
        if ((tag & 7) === 4) {
          if ((tag >>> 3) !== id) throw UNREADABLE;
          return;
        }
        if ((tag & 7) === 2) {
          // Read before adding: `at.pos += uint32(bytes, at, end)` would add to the position the length started at.
          const length = uint32(bytes, at, end);
          at.pos += length;
          if (at.pos > end) throw PAST_END;
        } else {
          skip(bytes, at, end, tag & 7, tag >>> 3, depth + 1);
        }
      }
    }
    default:
      throw UNREADABLE;
  }
  if (at.pos > end) throw PAST_END;
}
