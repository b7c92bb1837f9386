// Encoding the benchmark's CheckRequest as a gRPC frame, and checking once, with a
// raw HTTP/2 request, that a server answers it with grpc-status 0 and EFFECT_ALLOW.
import http2 from 'node:http2';
import path from 'node:path';
import protobuf from 'protobufjs';

/** Loads verdict.v1 from the .proto files; google/protobuf/struct.proto comes bundled with protobufjs. */
export function loadProtos(protoDir) {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => path.join(protoDir, target);
  root.loadSync('verdict/v1/authorization.proto', { keepCase: false });
  return {
    CheckRequest: root.lookupType('verdict.v1.CheckRequest'),
    CheckResponse: root.lookupType('verdict.v1.CheckResponse'),
    Effect: root.lookupEnum('verdict.v1.Effect'),
    Reason: root.lookupEnum('verdict.v1.Reason'),
  };
}

/** A plain JSON object as google.protobuf.Struct in protobufjs's object form. */
export function toStruct(object) {
  const fields = {};
  for (const [key, value] of Object.entries(object)) fields[key] = toValue(value);
  return { fields };
}

function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 0 };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

/** 1 byte 0 (uncompressed), 4-byte big-endian length, then the message. */
export function grpcFrame(messageBytes) {
  const frame = Buffer.alloc(5 + messageBytes.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(messageBytes.length, 1);
  Buffer.from(messageBytes).copy(frame, 5);
  return frame;
}

/**
 * A verdict.v1 CheckRequest for `request` (plain JSON: principal, action, resource and,
 * when it has attributes, context), framed: what every benchmark sends to Check.
 */
export function checkRequestFrame(protos, request) {
  const contextAttributes = request.context?.attributes ?? {};
  return grpcFrame(
    encodeMessage(protos.CheckRequest, {
      principal: { id: request.principal.id, roles: request.principal.roles, attributes: toStruct(request.principal.attributes) },
      action: request.action,
      resource: { type: request.resource.type, id: request.resource.id, attributes: toStruct(request.resource.attributes) },
      ...(Object.keys(contextAttributes).length > 0 ? { context: { attributes: toStruct(contextAttributes) } } : {}),
    }),
  );
}

export function encodeMessage(type, object) {
  const error = type.verify(type.fromObject(object));
  if (error) throw new Error(`bad ${type.name}: ${error}`);
  return Buffer.from(type.encode(type.fromObject(object)).finish());
}

/**
 * Posts `body` (an already framed gRPC request) once over HTTP/2 prior knowledge.
 * Resolves { httpStatus, grpcStatus, grpcMessage, message (Buffer | null) }.
 */
export function rawUnaryCall(host, port, methodPath, body, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${host}:${port}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no answer from ${host}:${port}${methodPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (fn) => {
      clearTimeout(timer);
      session.close();
      fn();
    };
    session.on('error', (error) => finish(() => reject(error)));
    const stream = session.request({
      ':method': 'POST',
      ':path': methodPath,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let headers = {};
    let trailers = {};
    const chunks = [];
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('error', (error) => finish(() => reject(error)));
    stream.on('end', () =>
      finish(() => {
        const data = Buffer.concat(chunks);
        let message = null;
        if (data.length >= 5) {
          if (data.readUInt8(0) !== 0) return reject(new Error('response frame is compressed; expected uncompressed'));
          const length = data.readUInt32BE(1);
          message = data.subarray(5, 5 + length);
        }
        // A trailers-only response carries grpc-status in the headers.
        const grpcStatus = trailers['grpc-status'] ?? headers['grpc-status'];
        resolve({
          httpStatus: headers[':status'],
          grpcStatus: grpcStatus === undefined ? null : Number(grpcStatus),
          grpcMessage: trailers['grpc-message'] ?? headers['grpc-message'] ?? '',
          message,
        });
      }),
    );
    stream.end(body);
  });
}

/** Fails unless the answer is HTTP 200, grpc-status 0 and a CheckResponse with EFFECT_ALLOW. Returns the decoded response. */
export async function verifyAllow(protos, host, port, methodPath, body) {
  const answer = await rawUnaryCall(host, port, methodPath, body);
  if (answer.httpStatus !== 200) throw new Error(`verification: HTTP status ${answer.httpStatus}, expected 200`);
  if (answer.grpcStatus !== 0)
    throw new Error(`verification: grpc-status ${answer.grpcStatus} (${decodeURIComponent(answer.grpcMessage)}), expected 0`);
  if (!answer.message) throw new Error('verification: grpc-status 0 but no response message');
  const response = protos.CheckResponse.decode(answer.message);
  const effect = protos.Effect.valuesById[response.effect];
  if (effect !== 'EFFECT_ALLOW') throw new Error(`verification: effect ${effect}, expected EFFECT_ALLOW`);
  return { response, bytes: answer.message, reason: protos.Reason.valuesById[response.reason] };
}
