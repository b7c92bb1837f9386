import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { indexDescriptorSet } from '../../src/server/grpc/descriptor-index.js';
import { descriptorSet } from '../../src/server/grpc/descriptors.js';
import { startServer, type Harness } from './support.js';

// This client knows nothing of verdict: like grpcurl, it is built from the
// reflection protocol alone (the .proto source, not the served descriptor set)
// and learns everything else from the server.

const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));

interface ReflectionResponse {
  file_descriptor_response?: { file_descriptor_proto: Buffer[] } | null;
  list_services_response?: { service: { name: string }[] } | null;
  error_response?: { error_code: number; error_message: string } | null;
  message_response?: string;
}

class ReflectionStream {
  private readonly call: grpc.ClientDuplexStream<object, ReflectionResponse>;
  private readonly waiting: ((response: ReflectionResponse) => void)[] = [];

  constructor(client: grpc.Client) {
    const method = (client as unknown as Record<string, () => grpc.ClientDuplexStream<object, ReflectionResponse>>)['ServerReflectionInfo']!;
    this.call = method.call(client);
    this.call.on('data', (response: ReflectionResponse) => this.waiting.shift()?.(response));
  }

  ask(request: object): Promise<ReflectionResponse> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.call.write(request);
    });
  }

  end(): void {
    this.call.end();
  }
}

function reflectionClient(version: 'v1' | 'v1alpha', address: string): grpc.Client {
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    defaults: false,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: new (a: string, c: grpc.ChannelCredentials) => grpc.Client }> };
  };
  return new pkg.grpc.reflection[version]!.ServerReflection(address, grpc.credentials.createInsecure());
}

// The parts of descriptor.proto these checks read, as protobufjs decodes them.
interface FieldProto {
  name: string;
  label: number;
  type: number;
  typeName?: string;
}
interface MessageProto {
  name: string;
  field?: FieldProto[];
  nestedType?: MessageProto[];
  enumType?: { name: string }[];
  options?: { mapEntry?: boolean };
}
interface FileProto {
  name: string;
  package?: string;
  dependency?: string[];
  publicDependency?: number[];
  messageType?: MessageProto[];
  enumType?: { name: string }[];
  service?: { name: string; method?: { name: string; inputType: string; outputType: string }[] }[];
}

const LABEL_REPEATED = 3;
const TYPE_MESSAGE = 11;
const TYPE_ENUM = 14;

function decodeFile(bytes: Uint8Array): FileProto {
  return descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(bytes), { longs: Number }) as FileProto;
}

/** Fully qualified (leading-dot) names of the messages and enums a file defines. */
function definedTypes(file: FileProto): Set<string> {
  const names = new Set<string>();
  const scope = file.package ? `.${file.package}` : '';
  const walk = (message: MessageProto, prefix: string): void => {
    const name = `${prefix}.${message.name}`;
    names.add(name);
    for (const nested of message.nestedType ?? []) walk(nested, name);
    for (const en of message.enumType ?? []) names.add(`${name}.${en.name}`);
  };
  for (const message of file.messageType ?? []) walk(message, scope);
  for (const en of file.enumType ?? []) names.add(`${scope}.${en.name}`);
  return names;
}

/** Every message type of a file, nested ones included. */
function allMessages(file: FileProto): { name: string; message: MessageProto }[] {
  const out: { name: string; message: MessageProto }[] = [];
  const walk = (message: MessageProto, prefix: string): void => {
    const name = `${prefix}.${message.name}`;
    out.push({ name, message });
    for (const nested of message.nestedType ?? []) walk(nested, name);
  };
  for (const message of file.messageType ?? []) walk(message, file.package ? `.${file.package}` : '');
  return out;
}

/** What protoc lets a file use: its own types, its direct imports', and what those re-export publicly. */
function visibleTypes(file: FileProto, files: Map<string, FileProto>): Set<string> {
  const visible = new Set(definedTypes(file));
  const addImport = (name: string): void => {
    const dependency = files.get(name);
    if (!dependency) throw new Error(`${file.name}: dependency ${name} was never fetched`);
    for (const type of definedTypes(dependency)) visible.add(type);
    for (const index of dependency.publicDependency ?? []) addImport(dependency.dependency![index]!);
  };
  for (const name of file.dependency ?? []) addImport(name);
  return visible;
}

function upperCamel(name: string): string {
  return name.replace(/(?:^|_)([a-z])/g, (_, c: string) => c.toUpperCase());
}

const EXPECTED_SERVICES = [
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
  'verdict.v1.Admin',
  'verdict.v1.Authorization',
];

const EXPECTED_FILES: Record<string, string> = {
  'verdict.v1.Authorization': 'verdict/v1/authorization.proto',
  'verdict.v1.Admin': 'verdict/v1/admin.proto',
  'grpc.health.v1.Health': 'grpc/health/v1/health.proto',
  'grpc.reflection.v1.ServerReflection': 'grpc/reflection/v1/reflection.proto',
  'grpc.reflection.v1alpha.ServerReflection': 'grpc/reflection/v1alpha/reflection.proto',
};

describe.each(['v1', 'v1alpha'] as const)('server reflection %s, used the way grpcurl uses it', (version) => {
  let harness: Harness;
  let client: grpc.Client;
  let stream: ReflectionStream;

  beforeAll(async () => {
    harness = await startServer();
    client = reflectionClient(version, harness.address);
    stream = new ReflectionStream(client);
  });
  afterAll(async () => {
    stream.end();
    client.close();
    await harness.close();
  });

  it('lists every service, describes each from real descriptors, and calls Check with them alone', async () => {
    const listed = await stream.ask({ list_services: '' });
    const services = listed.list_services_response!.service.map((s) => s.name);
    expect(services).toEqual(expect.arrayContaining(EXPECTED_SERVICES));

    const raw = new Map<string, Buffer>();
    const files = new Map<string, FileProto>();
    const keep = (response: ReflectionResponse): FileProto => {
      expect(response.error_response ?? null).toBeNull();
      const protos = response.file_descriptor_response!.file_descriptor_proto;
      for (const bytes of protos) {
        const file = decodeFile(bytes);
        raw.set(file.name, bytes);
        files.set(file.name, file);
      }
      return decodeFile(protos[0]!);
    };

    for (const service of services) {
      const file = keep(await stream.ask({ file_containing_symbol: service }));
      if (EXPECTED_FILES[service]) expect(file.name).toBe(EXPECTED_FILES[service]);
      const [pkg, name] = [service.slice(0, service.lastIndexOf('.')), service.slice(service.lastIndexOf('.') + 1)];
      expect(file.package).toBe(pkg);
      expect(file.service?.map((s) => s.name)).toContain(name);
    }

    // Follow every declared dependency by name, the way a client that caches
    // nothing would, until the closure is complete.
    const pending = [...files.values()].flatMap((f) => f.dependency ?? []);
    const followed = new Set<string>();
    for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
      if (followed.has(name)) continue;
      followed.add(name);
      const file = keep(await stream.ask({ file_by_filename: name }));
      expect(file.name).toBe(name);
      pending.push(...(file.dependency ?? []));
    }

    expect(files.get('verdict/v1/authorization.proto')!.dependency).toEqual(['google/protobuf/duration.proto', 'google/protobuf/struct.proto']);
    expect(files.get('verdict/v1/admin.proto')!.dependency).toEqual([
      'google/protobuf/duration.proto',
      'google/protobuf/struct.proto',
      'google/protobuf/timestamp.proto',
      'verdict/v1/authorization.proto',
    ]);
    expect([...files.keys()].sort()).toEqual([
      'google/protobuf/duration.proto',
      'google/protobuf/struct.proto',
      'google/protobuf/timestamp.proto',
      'grpc/health/v1/health.proto',
      'grpc/reflection/v1/reflection.proto',
      'grpc/reflection/v1alpha/reflection.proto',
      'verdict/v1/admin.proto',
      'verdict/v1/authorization.proto',
    ]);

    // Byte for byte what protoc wrote.
    const committed = indexDescriptorSet(descriptorSet).files;
    for (const [name, bytes] of raw) expect(Buffer.compare(bytes, committed.get(name)!.bytes), name).toBe(0);

    // Every type a field or method names resolves within the file and its declared imports.
    let checked = 0;
    for (const file of files.values()) {
      const visible = visibleTypes(file, files);
      for (const { name, message } of allMessages(file)) {
        for (const field of message.field ?? []) {
          if (field.type !== TYPE_MESSAGE && field.type !== TYPE_ENUM) continue;
          expect(visible.has(field.typeName!), `${file.name}: ${name}.${field.name} names ${field.typeName}`).toBe(true);
          checked++;
          const entry = (message.nestedType ?? []).find((nested) => `${name}.${nested.name}` === field.typeName);
          if (entry?.options?.mapEntry) {
            expect(field.label).toBe(LABEL_REPEATED);
            expect(entry.name).toBe(`${upperCamel(field.name)}Entry`);
          }
        }
      }
      for (const service of file.service ?? []) {
        for (const method of service.method ?? []) {
          expect(visible.has(method.inputType), `${file.name}: ${service.name}.${method.name} input ${method.inputType}`).toBe(true);
          expect(visible.has(method.outputType), `${file.name}: ${service.name}.${method.name} output ${method.outputType}`).toBe(true);
          checked += 2;
        }
      }
    }
    expect(checked).toBeGreaterThan(50);
    const mapEntries = [...files.values()].flatMap(allMessages).filter((m) => m.message.options?.mapEntry).map((m) => m.name);
    expect(mapEntries.sort()).toEqual(['.google.protobuf.Struct.FieldsEntry', '.grpc.health.v1.HealthListResponse.StatusesEntry']);

    // A Check encoded and decoded with nothing but the fetched descriptors.
    const set = protobuf.Writer.create();
    for (const bytes of raw.values()) set.uint32((1 << 3) | 2).bytes(bytes);
    const root = (protobuf.Root as typeof protobuf.Root & { fromDescriptor(b: Uint8Array): protobuf.Root }).fromDescriptor(set.finish());
    const CheckRequest = root.lookupType('verdict.v1.CheckRequest');
    const CheckResponse = root.lookupType('verdict.v1.CheckResponse');
    const method = root.lookupService('verdict.v1.Authorization').methods['Check']!;
    expect(method.resolvedRequestType).toBe(CheckRequest);
    // protobufjs keeps protoc's names and models a map as its repeated entries.
    const body = CheckRequest.encode(
      CheckRequest.fromObject({
        principal: { id: 'reflected', roles: ['reader'], attributes: { fields: [{ key: 'tier', value: { string_value: 'gold' } }] } },
        action: 'read',
        resource: { type: 'model', id: 'm7' },
        request_id: `via-${version}`,
      }),
    ).finish();
    const raw_client = new grpc.Client(harness.address, grpc.credentials.createInsecure());
    const identity = (b: Buffer): Buffer => b;
    const reply = await new Promise<Buffer>((resolve, reject) =>
      raw_client.makeUnaryRequest('/verdict.v1.Authorization/Check', identity, identity, Buffer.from(body), (error, value) =>
        error ? reject(error) : resolve(value!),
      ),
    );
    raw_client.close();
    const decoded = CheckResponse.toObject(CheckResponse.decode(reply), { enums: String });
    expect(decoded).toMatchObject({
      effect: 'EFFECT_ALLOW',
      reason: 'REASON_ALLOWED_BY_RULE',
      rule_ids: ['readers'],
      policy_version: 'v-test',
      request_id: `via-${version}`,
    });
    expect(decoded['decision_id']).toMatch(/^d-\d+$/);
    const seen = harness.seen.inputs.at(-1) as { principal: { id: string; attributes: unknown } };
    expect(seen.principal).toMatchObject({ id: 'reflected', attributes: { tier: 'gold' } });
  });

  it('finds methods, nested messages, enums and fields by symbol', async () => {
    const cases: [string, string][] = [
      ['verdict.v1.Authorization.Check', 'verdict/v1/authorization.proto'],
      ['verdict.v1.CheckRequest', 'verdict/v1/authorization.proto'],
      ['verdict.v1.Reason', 'verdict/v1/authorization.proto'],
      ['verdict.v1.CheckRequest.principal', 'verdict/v1/authorization.proto'],
      ['verdict.v1.Admin.ListDecisions', 'verdict/v1/admin.proto'],
      ['verdict.v1.DecisionRecord', 'verdict/v1/admin.proto'],
      ['grpc.health.v1.HealthCheckResponse.ServingStatus', 'grpc/health/v1/health.proto'],
      ['grpc.health.v1.HealthListResponse.StatusesEntry', 'grpc/health/v1/health.proto'],
      ['google.protobuf.Struct.FieldsEntry', 'google/protobuf/struct.proto'],
      ['google.protobuf.Timestamp', 'google/protobuf/timestamp.proto'],
      ['.verdict.v1.CheckResponse', 'verdict/v1/authorization.proto'],
    ];
    for (const [symbol, fileName] of cases) {
      const response = await stream.ask({ file_containing_symbol: symbol });
      expect(response.error_response ?? null, symbol).toBeNull();
      expect(decodeFile(response.file_descriptor_response!.file_descriptor_proto[0]!).name, symbol).toBe(fileName);
    }
  });

  it('answers unknown symbols, files and extensions with NOT_FOUND and keeps the stream open', async () => {
    const requests = [
      { file_containing_symbol: 'verdict.v1.Nope' },
      { file_by_filename: 'verdict_v1.proto' },
      { file_containing_extension: { containing_type: 'verdict.v1.CheckRequest', extension_number: 100 } },
      { all_extension_numbers_of_type: 'verdict.v1.Nope' },
    ];
    for (const request of requests) {
      const response = await stream.ask(request);
      expect(response.message_response).toBe('error_response');
      expect(response.error_response!.error_code).toBe(grpc.status.NOT_FOUND);
    }
    const extensions = await stream.ask({ all_extension_numbers_of_type: 'verdict.v1.CheckRequest' });
    expect(extensions.message_response).toBe('all_extension_numbers_response');
    const still = await stream.ask({ list_services: '*' });
    expect(still.list_services_response!.service.length).toBe(EXPECTED_SERVICES.length);
  });
});
