import { readFileSync } from 'node:fs';
import { fromJSON, type PackageDefinition, type ServiceDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
// Before anything is decoded: a string running past the end of its message is refused, not clipped.
import './strict-strings.js';

/**
 * The descriptor set protoc built from `proto/` (scripts/gen-descriptors.sh). It is
 * the one source of truth: the server's services are loaded from it and reflection
 * serves its files byte for byte. The path works from `src/` and from `dist/`.
 */
export const DESCRIPTOR_SET_URL = new URL('../../../proto/verdict.binpb', import.meta.url);

/**
 * How messages look in handlers. Chosen once, here, for every service:
 * - field names in lowerCamelCase (`policyVersion`), like the domain types;
 * - map fields as plain objects (`Struct.fields` is `{ key: Value }`);
 * - enums as their names (`'EFFECT_ALLOW'`), 64-bit integers as decimal strings;
 * - absent scalars and lists filled with defaults, absent messages as `null`;
 * - a oneof's member name in a virtual property (`Value.kind === 'stringValue'`).
 */
export const LOADER_OPTIONS = {
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

// proto-loader's loadFileDescriptorSetFromBuffer would be the obvious call, but the
// protobufjs Root it builds keeps protoc's snake_case names whatever `keepCase`
// says, and turns every map field into a repeated `...Entry` message (so a Struct
// decodes as `[{ key, value }]` and a map cannot be encoded from an object). The
// wire format is the same either way; we rebuild the Root with real map fields and
// camelCase names, then hand it to proto-loader.
export function loadPackageDefinition(set: Uint8Array): PackageDefinition {
  return fromJSON(normalisedJson(set), LOADER_OPTIONS);
}

/** The descriptor set's types, with real map fields and camelCase names (see loadPackageDefinition). */
function normalisedJson(set: Uint8Array): NamespaceJson {
  const root = (protobuf.Root as RootWithDescriptors).fromDescriptor(descriptor.FileDescriptorSet.decode(set));
  const json = root.toJSON() as NamespaceJson;
  normalise(json, '');
  return json;
}

// Importing protobufjs/ext/descriptor adds Root.fromDescriptor, which its typings do not declare.
type RootWithDescriptors = typeof protobuf.Root & { fromDescriptor(set: protobuf.Message): protobuf.Root };

interface FieldJson {
  rule?: string;
  type: string;
  keyType?: string;
  id: number;
  options?: Record<string, unknown>;
}

interface NamespaceJson {
  options?: Record<string, unknown>;
  nested?: Record<string, NamespaceJson>;
  fields?: Record<string, FieldJson>;
  oneofs?: Record<string, { oneof: string[]; options?: Record<string, unknown> }>;
}

function normalise(ns: NamespaceJson, fullName: string): void {
  if (ns.fields) {
    restoreMapFields(ns, fullName);
    camelCaseFields(ns);
  }
  for (const [name, child] of Object.entries(ns.nested ?? {})) {
    normalise(child, `${fullName}.${name}`);
  }
}

function restoreMapFields(type: NamespaceJson, fullName: string): void {
  const nested = type.nested;
  const fields = type.fields;
  if (!nested || !fields) return;
  for (const [entryName, entry] of Object.entries(nested)) {
    if (entry.options?.['map_entry'] !== true) continue;
    const key = entry.fields?.['key'];
    const value = entry.fields?.['value'];
    if (!key || !value) continue;
    const entryRef = `${fullName}.${entryName}`;
    for (const [name, field] of Object.entries(fields)) {
      if (field.rule !== 'repeated' || field.type !== entryRef) continue;
      fields[name] = { keyType: key.type, type: value.type, id: field.id, ...(field.options ? { options: field.options } : {}) };
    }
    delete nested[entryName];
    // protobufjs flags the parent too when it meets a map entry; the parent is not one.
    delete type.options?.['map_entry'];
  }
}

function camelCaseFields(type: NamespaceJson): void {
  const renamed: Record<string, FieldJson> = {};
  for (const [name, field] of Object.entries(type.fields ?? {})) renamed[protobuf.util.camelCase(name)] = field;
  type.fields = renamed;
  if (!type.oneofs) return;
  const oneofs: NonNullable<NamespaceJson['oneofs']> = {};
  for (const [name, oneof] of Object.entries(type.oneofs)) {
    oneofs[protobuf.util.camelCase(name)] = { ...oneof, oneof: oneof.oneof.map((member) => protobuf.util.camelCase(member)) };
  }
  type.oneofs = oneofs;
}

/** The committed descriptor set, read once. */
export const descriptorSet: Buffer = readFileSync(DESCRIPTOR_SET_URL);

/** Every message, enum and service of `proto/`, as proto-loader definitions. */
export const packageDefinition: PackageDefinition = loadPackageDefinition(descriptorSet);

/** The messages of `proto/` as protobufjs types, for reading their wire form before decoding (once-fields.ts). */
const messageRoot = protobuf.Root.fromJSON(normalisedJson(descriptorSet) as protobuf.INamespace).resolveAll();

/** The type of a fully qualified message name, e.g. `verdict.v1.CheckRequest`; null when `proto/` has none. */
export function messageType(name: string): protobuf.Type | null {
  const found = messageRoot.lookup(name);
  return found instanceof protobuf.Type ? found : null;
}

/** The service definition of a fully qualified service name, e.g. `verdict.v1.Authorization`. */
export function serviceDefinition(name: string): ServiceDefinition {
  const definition = packageDefinition[name];
  if (!definition || !isServiceDefinition(definition)) {
    throw new Error(`${name} is not a service in ${DESCRIPTOR_SET_URL.pathname}; regenerate it with scripts/gen-descriptors.sh`);
  }
  return definition;
}

function isServiceDefinition(definition: PackageDefinition[string]): definition is ServiceDefinition {
  // Message and enum definitions carry a `format`; a service is a record of methods.
  return !('format' in definition);
}
