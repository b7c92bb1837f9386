// gRPC server reflection (v1 and v1alpha) answered from protoc's own descriptors.

import { status, type Server, type ServerDuplexStream } from '@grpc/grpc-js';
import type { DescriptorFile, DescriptorIndex } from './descriptor-index.js';
import { serviceDefinition } from './descriptors.js';
import type { ServerReflectionRequest__Output } from './generated/grpc/reflection/v1/ServerReflectionRequest.js';
import type { ServerReflectionResponse } from './generated/grpc/reflection/v1/ServerReflectionResponse.js';

/** Both reflection protocols grpcurl and friends may speak; their messages are identical. */
export const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'] as const;

// v1alpha's messages are v1's, field for field, so one set of types serves both.
type ReflectionRequest = ServerReflectionRequest__Output;
type ReflectionResponse = ServerReflectionResponse;

/**
 * Registers server reflection (v1 and v1alpha) answering from protoc's own
 * descriptors, so tools see the real file names, imports and map entry types.
 * `services` are the names to list: those the server actually serves.
 */
export function addReflection(server: Server, index: DescriptorIndex, services: readonly string[]): void {
  for (const name of services) {
    if (!index.symbols.has(name)) throw new Error(`service ${name} has no descriptor in the descriptor set`);
  }
  const listed = [...services, ...REFLECTION_SERVICES].sort().map((name) => ({ name }));
  const implementation = {
    ServerReflectionInfo: (call: ServerDuplexStream<ReflectionRequest, ReflectionResponse>): void => {
      // Per stream, like the reference servers: a dependency already sent on this
      // stream is not sent again, but the file asked for always is.
      const sent = new Set<string>();
      call.on('data', (request: ReflectionRequest) => call.write(answer(index, listed, sent, request)));
      call.on('end', () => call.end());
      // A client that goes away mid-stream is not an error worth surfacing.
      call.on('error', () => undefined);
    },
  };
  for (const name of REFLECTION_SERVICES) server.addService(serviceDefinition(name), implementation);
}

function answer(
  index: DescriptorIndex,
  listed: { name: string }[],
  sent: Set<string>,
  request: ReflectionRequest,
): ReflectionResponse {
  const response: ReflectionResponse = { validHost: request.host, originalRequest: request };
  switch (request.messageRequest) {
    case 'listServices':
      response.listServicesResponse = { service: listed };
      return response;
    case 'fileByFilename': {
      const file = index.files.get(request.fileByFilename ?? '');
      return file ? withFiles(response, index, file, sent) : notFound(response, `file not found: ${request.fileByFilename}`);
    }
    case 'fileContainingSymbol': {
      const symbol = (request.fileContainingSymbol ?? '').replace(/^\./, '');
      const file = index.symbols.get(symbol);
      return file ? withFiles(response, index, file, sent) : notFound(response, `symbol not found: ${symbol}`);
    }
    case 'fileContainingExtension': {
      const wanted = request.fileContainingExtension;
      const type = (wanted?.containingType ?? '').replace(/^\./, '');
      const file = index.extensions.get(`${type}:${wanted?.extensionNumber ?? 0}`);
      return file
        ? withFiles(response, index, file, sent)
        : notFound(response, `extension not found: ${type} field ${wanted?.extensionNumber ?? 0}`);
    }
    case 'allExtensionNumbersOfType': {
      const type = (request.allExtensionNumbersOfType ?? '').replace(/^\./, '');
      if (!index.symbols.has(type)) return notFound(response, `type not found: ${type}`);
      response.allExtensionNumbersResponse = { baseTypeName: type, extensionNumber: [...(index.extensionNumbers.get(type) ?? [])] };
      return response;
    }
    default:
      response.errorResponse = { errorCode: status.INVALID_ARGUMENT, errorMessage: 'the request asks for nothing' };
      return response;
  }
}

function withFiles(response: ReflectionResponse, index: DescriptorIndex, file: DescriptorFile, sent: Set<string>): ReflectionResponse {
  const out: Buffer[] = [file.bytes];
  sent.add(file.name);
  const pending = [...file.dependencies];
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    if (sent.has(name)) continue;
    const dependency = index.files.get(name);
    if (!dependency) continue;
    sent.add(name);
    out.push(dependency.bytes);
    pending.push(...dependency.dependencies);
  }
  response.fileDescriptorResponse = { fileDescriptorProto: out };
  return response;
}

function notFound(response: ReflectionResponse, message: string): ReflectionResponse {
  response.errorResponse = { errorCode: status.NOT_FOUND, errorMessage: message };
  return response;
}
