// Protoc's descriptor set split into its files and indexed by name, symbol and
// extension, for server reflection.

import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';

/** One file of a descriptor set: protoc's own bytes, plus what reflection looks up. */
export interface DescriptorFile {
  readonly name: string;
  /** The serialized FileDescriptorProto exactly as protoc wrote it. */
  readonly bytes: Buffer;
  readonly dependencies: readonly string[];
}

/** Files of a descriptor set, addressable by name, symbol and extension. */
export interface DescriptorIndex {
  readonly files: ReadonlyMap<string, DescriptorFile>;
  /** Fully qualified name (no leading dot) of every service, method, message, field, enum and enum value → its file. */
  readonly symbols: ReadonlyMap<string, DescriptorFile>;
  /** `containing.Type:number` → the file declaring that extension. */
  readonly extensions: ReadonlyMap<string, DescriptorFile>;
  /** Fully qualified message name → extension numbers declared for it. */
  readonly extensionNumbers: ReadonlyMap<string, readonly number[]>;
  /** Fully qualified names of the services in the set. */
  readonly services: readonly string[];
}

// FileDescriptorSet { repeated FileDescriptorProto file = 1; } — tag 1, length-delimited.
const FILE_TAG = (1 << 3) | 2;

/**
 * Splits a FileDescriptorSet into its files without re-encoding any of them:
 * re-encoding through a decoded object can drop or reorder what the decoder does
 * not model, and tools compare what they fetch against what protoc produced.
 */
export function indexDescriptorSet(set: Uint8Array): DescriptorIndex {
  const files = new Map<string, DescriptorFile>();
  const symbols = new Map<string, DescriptorFile>();
  const extensions = new Map<string, DescriptorFile>();
  const extensionNumbers = new Map<string, number[]>();
  const services: string[] = [];
  const reader = protobuf.Reader.create(set);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag !== FILE_TAG) {
      reader.skipType(tag & 7);
      continue;
    }
    const bytes = Buffer.from(reader.bytes());
    const proto = descriptor.FileDescriptorProto.decode(bytes) as unknown as FileProto;
    const file: DescriptorFile = { name: proto.name ?? '', bytes, dependencies: proto.dependency ?? [] };
    files.set(file.name, file);
    const scope = proto.package ? `${proto.package}.` : '';
    const add = (name: string): void => void symbols.set(name, file);
    for (const service of proto.service ?? []) {
      const serviceName = scope + service.name;
      services.push(serviceName);
      add(serviceName);
      for (const method of service.method ?? []) add(`${serviceName}.${method.name}`);
    }
    for (const message of proto.messageType ?? []) indexMessage(message, scope, add);
    for (const en of proto.enumType ?? []) indexEnum(en, scope, add);
    const addExtension = (field: FieldProto): void => {
      const extendee = (field.extendee ?? '').replace(/^\./, '');
      extensions.set(`${extendee}:${field.number}`, file);
      const numbers = extensionNumbers.get(extendee) ?? [];
      numbers.push(field.number ?? 0);
      extensionNumbers.set(extendee, numbers);
    };
    for (const field of proto.extension ?? []) addExtension(field);
    forEachNestedExtension(proto.messageType ?? [], addExtension);
  }
  return { files, symbols, extensions, extensionNumbers, services };
}

function indexMessage(message: MessageProto, scope: string, add: (name: string) => void): void {
  const name = scope + message.name;
  add(name);
  for (const field of message.field ?? []) add(`${name}.${field.name}`);
  for (const field of message.extension ?? []) add(`${name}.${field.name}`);
  for (const oneof of message.oneofDecl ?? []) add(`${name}.${oneof.name}`);
  for (const nested of message.nestedType ?? []) indexMessage(nested, `${name}.`, add);
  for (const en of message.enumType ?? []) indexEnum(en, `${name}.`, add);
}

// Enum values are scoped like siblings of their enum (C++ rules), as protoc resolves them.
function indexEnum(en: EnumProto, scope: string, add: (name: string) => void): void {
  add(scope + en.name);
  for (const value of en.value ?? []) add(scope + value.name);
}

function forEachNestedExtension(messages: readonly MessageProto[], visit: (field: FieldProto) => void): void {
  for (const message of messages) {
    for (const field of message.extension ?? []) visit(field);
    forEachNestedExtension(message.nestedType ?? [], visit);
  }
}

// The parts of descriptor.proto read here, as protobufjs decodes them.
interface FieldProto {
  name?: string;
  number?: number;
  extendee?: string;
}
interface EnumProto {
  name?: string;
  value?: { name?: string }[];
}
interface MessageProto {
  name?: string;
  field?: FieldProto[];
  extension?: FieldProto[];
  oneofDecl?: { name?: string }[];
  nestedType?: MessageProto[];
  enumType?: EnumProto[];
}
interface FileProto {
  name?: string;
  package?: string;
  dependency?: string[];
  messageType?: MessageProto[];
  enumType?: EnumProto[];
  service?: { name?: string; method?: { name?: string }[] }[];
  extension?: FieldProto[];
}
