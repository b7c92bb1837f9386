import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';

// proto/envoy/... is a subset of Envoy's API written here. Wire compatibility is
// nothing but names and numbers, so they are pinned against Envoy's own protos
// (envoy/service/auth/v3/*.proto, envoy/config/core/v3/{base,address}.proto,
// envoy/type/v3/http_status.proto, google/rpc/status.proto).

const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : `${PROTO_DIR}/${target}`);
root.loadSync('envoy/service/auth/v3/external_auth.proto', { keepCase: true });
root.resolveAll();

const ENVOY_FIELDS: Record<string, Record<string, [number, string]>> = {
  'envoy.service.auth.v3.CheckRequest': { attributes: [1, 'AttributeContext'] },
  'envoy.service.auth.v3.AttributeContext': {
    source: [1, 'Peer'],
    destination: [2, 'Peer'],
    request: [4, 'Request'],
    context_extensions: [10, 'string'],
    metadata_context: [11, 'config.core.v3.Metadata'],
    tls_session: [12, 'TLSSession'],
    route_metadata_context: [13, 'config.core.v3.Metadata'],
  },
  'envoy.service.auth.v3.AttributeContext.Peer': {
    address: [1, 'config.core.v3.Address'],
    service: [2, 'string'],
    labels: [3, 'string'],
    principal: [4, 'string'],
    certificate: [5, 'string'],
  },
  'envoy.service.auth.v3.AttributeContext.Request': { time: [1, 'google.protobuf.Timestamp'], http: [2, 'HttpRequest'] },
  'envoy.service.auth.v3.AttributeContext.HttpRequest': {
    id: [1, 'string'],
    method: [2, 'string'],
    headers: [3, 'string'],
    path: [4, 'string'],
    host: [5, 'string'],
    scheme: [6, 'string'],
    query: [7, 'string'],
    fragment: [8, 'string'],
    size: [9, 'int64'],
    protocol: [10, 'string'],
    body: [11, 'string'],
    raw_body: [12, 'bytes'],
    header_map: [13, 'config.core.v3.HeaderMap'],
  },
  'envoy.service.auth.v3.CheckResponse': {
    status: [1, 'google.rpc.Status'],
    denied_response: [2, 'DeniedHttpResponse'],
    ok_response: [3, 'OkHttpResponse'],
    dynamic_metadata: [4, 'google.protobuf.Struct'],
  },
  'envoy.service.auth.v3.DeniedHttpResponse': {
    status: [1, 'type.v3.HttpStatus'],
    headers: [2, 'config.core.v3.HeaderValueOption'],
    body: [3, 'string'],
  },
  'envoy.service.auth.v3.OkHttpResponse': {
    headers: [2, 'config.core.v3.HeaderValueOption'],
    dynamic_metadata: [3, 'google.protobuf.Struct'],
    headers_to_remove: [5, 'string'],
    response_headers_to_add: [6, 'config.core.v3.HeaderValueOption'],
  },
  'envoy.config.core.v3.HeaderValue': { key: [1, 'string'], value: [2, 'string'], raw_value: [3, 'bytes'] },
  'envoy.config.core.v3.HeaderValueOption': {
    header: [1, 'HeaderValue'],
    append: [2, 'google.protobuf.BoolValue'],
    append_action: [3, 'HeaderAppendAction'],
    keep_empty_value: [4, 'bool'],
  },
  'envoy.config.core.v3.HeaderMap': { headers: [1, 'HeaderValue'] },
  'envoy.config.core.v3.Metadata': { filter_metadata: [1, 'google.protobuf.Struct'] },
  'envoy.config.core.v3.Address': { socket_address: [1, 'SocketAddress'], pipe: [2, 'Pipe'], envoy_internal_address: [3, 'EnvoyInternalAddress'] },
  'envoy.config.core.v3.SocketAddress': { protocol: [1, 'Protocol'], address: [2, 'string'], port_value: [3, 'uint32'], named_port: [4, 'string'] },
  'envoy.type.v3.HttpStatus': { code: [1, 'StatusCode'] },
  'google.rpc.Status': { code: [1, 'int32'], message: [2, 'string'], details: [3, 'google.protobuf.Any'] },
};

describe("the ext_authz subset keeps Envoy's names and field numbers", () => {
  it.each(Object.entries(ENVOY_FIELDS))('%s', (name, fields) => {
    const type = root.lookupType(name);
    for (const [field, [id, typeName]] of Object.entries(fields)) {
      const f = type.fields[field];
      expect(f, `${name}.${field}`).toBeDefined();
      expect([f!.id, f!.type], `${name}.${field}`).toEqual([id, typeName]);
    }
  });

  it('keeps the oneofs, maps and enums Envoy has', () => {
    expect(root.lookupType('envoy.service.auth.v3.CheckResponse').oneofs['http_response']!.oneof).toEqual(['denied_response', 'ok_response']);
    expect(root.lookupType('envoy.config.core.v3.Address').oneofs['address']!.oneof).toEqual(['socket_address', 'pipe', 'envoy_internal_address']);
    const http = root.lookupType('envoy.service.auth.v3.AttributeContext.HttpRequest');
    expect((http.fields['headers'] as unknown as protobuf.MapField).keyType).toBe('string');
    expect((root.lookupType('envoy.service.auth.v3.AttributeContext').fields['context_extensions'] as unknown as protobuf.MapField).keyType).toBe('string');
    expect(root.lookupEnum('envoy.type.v3.StatusCode').values).toMatchObject({ OK: 200, Unauthorized: 401, Forbidden: 403, TooManyRequests: 429 });
    expect(root.lookupEnum('envoy.config.core.v3.HeaderValueOption.HeaderAppendAction').values).toEqual({
      APPEND_IF_EXISTS_OR_ADD: 0,
      ADD_IF_ABSENT: 1,
      OVERWRITE_IF_EXISTS_OR_ADD: 2,
      OVERWRITE_IF_EXISTS: 3,
    });
    const check = root.lookupService('envoy.service.auth.v3.Authorization').methods['Check']!;
    expect([check.requestType, check.responseType]).toEqual(['CheckRequest', 'CheckResponse']);
  });
});
