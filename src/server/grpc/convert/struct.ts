import type { AttributeValue, Attributes } from '../../../types.js';
import { PROTO_KEY_PROBLEM, RequestFieldError } from '../../../decide/index.js';
import type { ListValue__Output } from '../generated/google/protobuf/ListValue.js';
import type { Struct, Struct__Output } from '../generated/google/protobuf/Struct.js';
import type { Value, Value__Output } from '../generated/google/protobuf/Value.js';

// google.protobuf.Struct and plain JSON, both ways: request attributes come in as
// Structs (verdict.v1) and Envoy's dynamic metadata and the admin API's stored
// requests go out as them. It runs on every Check, so it shares empty values and
// only builds error paths once something is wrong.

const EMPTY_ATTRIBUTES: Attributes = Object.freeze({});

/** Deep enough for any sane attribute document, shallow enough to never threaten the stack. */
export const MAX_ATTRIBUTE_DEPTH = 32;

class AttributeProblem extends Error {
  readonly path: (string | number)[] = [];
}

/**
 * A google.protobuf.Struct as plain JSON attributes. Throws RequestFieldError
 * naming the offending attribute under `field` (e.g. `principal.attributes.tier`).
 */
export function structToAttributes(struct: Struct__Output | null | undefined, field: string): Attributes {
  if (!struct) return EMPTY_ATTRIBUTES;
  try {
    return structToJson(struct, 0);
  } catch (error) {
    if (!(error instanceof AttributeProblem)) throw error;
    throw RequestFieldError.invalid(field + error.path.map(pathSegment).join(''), error.message);
  }
}

function structToJson(struct: Struct__Output, depth: number): Attributes {
  if (depth > MAX_ATTRIBUTE_DEPTH) throw new AttributeProblem(`nested deeper than ${MAX_ATTRIBUTE_DEPTH} levels`);
  const fields = struct.fields;
  const keys = Object.keys(fields);
  if (keys.length === 0) return EMPTY_ATTRIBUTES;
  const out: Record<string, AttributeValue> = {};
  let key = '';
  try {
    for (key of keys) {
      // Assigned, `__proto__` would replace out's prototype: no key would list it, and the
      // request would be decided and recorded as if it had not been sent.
      if (key === '__proto__') throw new AttributeProblem(PROTO_KEY_PROBLEM);
      out[key] = valueToJson(fields[key]!, depth);
    }
  } catch (error) {
    if (error instanceof AttributeProblem) error.path.unshift(key);
    throw error;
  }
  return out;
}

function listToJson(list: ListValue__Output, depth: number): AttributeValue[] {
  if (depth > MAX_ATTRIBUTE_DEPTH) throw new AttributeProblem(`nested deeper than ${MAX_ATTRIBUTE_DEPTH} levels`);
  const values = list.values;
  const out = new Array<AttributeValue>(values.length);
  let i = 0;
  try {
    for (; i < values.length; i++) out[i] = valueToJson(values[i]!, depth);
  } catch (error) {
    if (error instanceof AttributeProblem) error.path.unshift(i);
    throw error;
  }
  return out;
}

/**
 * Whether a Value arrived with more than one member of its `kind` oneof. The
 * protobuf rule is that the last one on the wire counts; the decoder keeps them
 * all and reports the first declared, so `bool_value: true` then `string_value:
 * "restricted"` would be read as `true`. Refused rather than guessed at.
 */
function kinds(value: Value__Output): number {
  return (
    (value.nullValue !== undefined ? 1 : 0) +
    (value.numberValue !== undefined ? 1 : 0) +
    (value.stringValue !== undefined ? 1 : 0) +
    (value.boolValue !== undefined ? 1 : 0) +
    (value.structValue !== undefined ? 1 : 0) +
    (value.listValue !== undefined ? 1 : 0)
  );
}

function valueToJson(value: Value__Output, depth: number): AttributeValue {
  if (kinds(value) > 1) throw new AttributeProblem('a value with more than one kind set (send one of null, number, string, bool, struct or list)');
  switch (value.kind) {
    case 'stringValue':
      return value.stringValue ?? '';
    case 'numberValue': {
      const n = value.numberValue ?? 0;
      if (!Number.isFinite(n)) throw new AttributeProblem('number must be finite (NaN and Infinity are not JSON)');
      return n;
    }
    case 'boolValue':
      return value.boolValue ?? false;
    case 'nullValue':
      return null;
    case 'structValue':
      return value.structValue ? structToJson(value.structValue, depth + 1) : EMPTY_ATTRIBUTES;
    case 'listValue':
      return value.listValue ? listToJson(value.listValue, depth + 1) : [];
    default:
      throw new AttributeProblem('no value set (send null_value for null)');
  }
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function pathSegment(segment: string | number): string {
  if (typeof segment === 'number') return `[${segment}]`;
  return IDENTIFIER.test(segment) ? `.${segment}` : `[${JSON.stringify(segment)}]`;
}

// ---------------------------------------------------------------- JSON → Struct

/** JSON-ready data as a google.protobuf.Struct (a non-object becomes an empty Struct). */
export function jsonToStruct(data: unknown): Struct {
  const fields: Record<string, Value> = {};
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return { fields };
  for (const [key, value] of Object.entries(data)) {
    // Assigning `__proto__` would replace the prototype instead of adding a field.
    Object.defineProperty(fields, key, { value: jsonToValue(value), enumerable: true, writable: true, configurable: true });
  }
  return { fields };
}

function jsonToValue(value: unknown): Value {
  switch (typeof value) {
    case 'string':
      return { stringValue: value };
    case 'number':
      return Number.isFinite(value) ? { numberValue: value } : { nullValue: 'NULL_VALUE' };
    case 'boolean':
      return { boolValue: value };
    case 'bigint':
      return { stringValue: value.toString() };
    case 'object':
      if (value === null) return { nullValue: 'NULL_VALUE' };
      if (Array.isArray(value)) return { listValue: { values: value.map(jsonToValue) } };
      return { structValue: jsonToStruct(value) };
    default:
      // undefined, functions and symbols have no JSON form; JSON.stringify drops them too.
      return { nullValue: 'NULL_VALUE' };
  }
}

