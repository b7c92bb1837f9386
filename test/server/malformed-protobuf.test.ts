// Bytes that are not a protobuf message, sent over a real HTTP/2 gRPC call (verdict's
// Authorization service or Envoy's ext_authz), are bad
// input like any other: answered INVALID_ARGUMENT (not INTERNAL) and recorded.
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { checkRequest, useShippedServer, verdictClient } from '../helpers/verdict-process.js';

/** Each fails protobuf decoding: an invalid wire type, a length past the end, a truncated varint, a group never closed. */
const GARBAGE: readonly (readonly [string, Buffer])[] = [
  ['invalid wire type', Buffer.from([0x0f, 0x01, 0x02])],
  ['length past the end', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x41])],
  ['truncated varint', Buffer.from([0x08, 0xff, 0xff])],
  ['random bytes', Buffer.from('fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0', 'hex')],
];

const varint = (n: number): Buffer => {
  const out: number[] = [];
  for (; n > 0x7f; n >>>= 7) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return Buffer.from(out);
};
const cat = (...parts: Buffer[]): Buffer => Buffer.concat(parts);
/** A length-delimited field (wire type 2) holding `body`. */
const ld = (field: number, body: Buffer): Buffer => cat(varint((field << 3) | 2), varint(body.length), body);
const str = (field: number, text: string): Buffer => ld(field, Buffer.from(text));
/** A length-delimited field that declares `declared` bytes but holds only `text` (a string, or a message's bytes). */
const lying = (field: number, declared: number, text: string | Buffer): Buffer => cat(varint((field << 3) | 2), varint(declared), Buffer.from(text));

function sendRaw(port: number, method: 'Check' | 'CheckBatch' | 'envoy', bytes: Buffer): Promise<{ error: grpc.ServiceError | null; trailers: grpc.Metadata | null }> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | null = null;
    const call = client.makeUnaryRequest<Buffer, Buffer>(
      method === 'envoy' ? '/envoy.service.auth.v3.Authorization/Check' : `/verdict.v1.Authorization/${method}`,
      (raw) => raw,
      (raw) => raw,
      bytes,
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (error) => {
        client.close();
        // The status (and its trailers) may arrive after the callback; wait for it.
        setImmediate(() => resolve({ error: error as grpc.ServiceError | null, trailers }));
      },
    );
    call.on('status', (status: grpc.StatusObject) => (trailers = status.metadata));
  });
}

describe('malformed protobuf on Check, CheckBatch and Envoy ext_authz Check', () => {
  const shipped = useShippedServer();

  it.each(['Check', 'CheckBatch'] as const)('%s: answered INVALID_ARGUMENT naming the message type, recorded as an invalid request', async (method) => {
    for (const [what, bytes] of GARBAGE) {
      const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
      const { error, trailers } = await sendRaw(shipped.server.grpcPort, method, bytes);
      expect(error?.code, what).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error?.details, what).toContain(`are not a valid verdict.v1.${method}Request protobuf message`);
      const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
      expect(recorded.length, what).toBe(before + 1);
      expect(recorded[0]!.effect).toBe('DENY');
      expect(recorded[0]!.errors[0]!.message).toContain(`not a valid verdict.v1.${method}Request`);
      expect(trailers?.get('verdict-decision-id')[0]).toBe(recorded[0]!.decisionId);
    }
  });

  it('Envoy ext_authz Check: answered INVALID_ARGUMENT (not INTERNAL), recorded as an invalid request', async () => {
    for (const [what, bytes] of GARBAGE) {
      const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
      const { error, trailers } = await sendRaw(shipped.server.grpcPort, 'envoy', bytes);
      expect(error?.code, what).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error?.details, what).toContain('are not a valid envoy.service.auth.v3.CheckRequest protobuf message');
      const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
      expect(recorded.length, what).toBe(before + 1);
      expect(recorded[0]!.effect).toBe('DENY');
      expect(recorded[0]!.errors[0]!.message).toContain('not a valid envoy.service.auth.v3.CheckRequest');
      expect(trailers?.get('verdict-decision-id')[0]).toBe(recorded[0]!.decisionId);
    }
  });

  // A string whose declared length runs past the end of its message was clipped and decided (e.g. `action: "predict"`
  // declaring 100 bytes with 7 present). Each message here is honest but for one string, at a different depth.
  const org = ld(1, cat(str(1, 'org'), ld(2, str(3, 'acme')))); // a Struct's fields entry: "org" → string_value "acme"
  const resource = ld(3, cat(str(1, 'model'), str(2, 'fraud-v3'), ld(3, org)));
  const TRUNCATED: readonly (readonly ['Check' | 'CheckBatch' | 'envoy', string, Buffer])[] = [
    ['Check', 'the action, last in the message', cat(ld(1, cat(str(1, 'dana'), str(2, 'data_scientist'))), resource, lying(2, 100, 'predict'))],
    ['Check', 'principal.id, inside the principal', cat(ld(1, cat(str(2, 'data_scientist'), lying(1, 50, 'dana'))), str(2, 'predict'), resource)],
    ['Check', 'an attribute name, inside a Struct entry', cat(ld(1, cat(str(1, 'dana'), ld(3, ld(1, cat(lying(1, 40, 'org'), ld(2, str(3, 'acme'))))))), str(2, 'read'), resource)],
    ['Check', 'an attribute value, inside a Struct Value', cat(ld(1, cat(str(1, 'dana'), ld(3, ld(1, cat(str(1, 'org'), ld(2, lying(3, 30, 'acme'))))))), str(2, 'read'), resource)],
    ['CheckBatch', 'an item action', cat(ld(1, str(1, 'dana')), ld(4, cat(ld(2, cat(str(1, 'model'), str(2, 'm'))), lying(1, 60, 'read'))))],
    ['envoy', 'the HTTP path', ld(1, ld(4, ld(2, cat(str(2, 'GET'), lying(4, 90, '/v1/models/fraud-v3')))))],
  ];

  it.each(TRUNCATED)('%s with a string running past the end of its message (%s): INVALID_ARGUMENT, recorded, never decided', async (method, _what, bytes) => {
    const type = method === 'envoy' ? 'envoy.service.auth.v3.CheckRequest' : `verdict.v1.${method}Request`;
    const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    const { error, trailers } = await sendRaw(shipped.server.grpcPort, method, bytes);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toContain(`are not a valid ${type} protobuf message`);
    expect(error?.details).toMatch(/runs past the end of its message/);
    const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
    expect(recorded.length).toBe(before + 1);
    expect(trailers?.get('verdict-decision-id')[0]).toBe(recorded[0]!.decisionId);
  });

  // The same truncation in fields that are not strings: a nested message, a map entry, an unknown field, a
  // bytes field. protobufjs refuses these itself (it narrows its reader to each nested message and checks each
  // length against it); these rows keep that so, at each depth, whatever version of it is installed.
  const TRUNCATED_OTHER: readonly (readonly ['Check' | 'CheckBatch' | 'envoy', string, Buffer])[] = [
    ['Check', 'principal.attributes, a Struct running past the principal', cat(ld(1, cat(str(1, 'dana'), lying(3, 80, ld(1, cat(str(1, 'org'), ld(2, str(3, 'acme'))))))), str(2, 'read'), resource)],
    ['Check', 'a Struct entry running past its Struct', cat(ld(1, cat(str(1, 'dana'), ld(3, lying(1, 70, cat(str(1, 'org'), ld(2, str(3, 'acme'))))))), str(2, 'read'), resource)],
    ['Check', 'an unknown field inside the principal', cat(ld(1, cat(str(1, 'dana'), lying(15, 60, 'xx'))), str(2, 'read'), resource)],
    ['Check', 'the resource, last in the message', cat(ld(1, str(1, 'dana')), str(2, 'read'), lying(3, 90, cat(str(1, 'model'), str(2, 'fraud-v3'))))],
    ['CheckBatch', 'an item, last in the message', cat(ld(1, str(1, 'dana')), lying(4, 50, cat(ld(2, cat(str(1, 'model'), str(2, 'm'))), str(1, 'read'))))],
    ['envoy', 'the HTTP raw_body (bytes)', ld(1, ld(4, ld(2, cat(str(2, 'POST'), str(4, '/v1/models/fraud-v3'), lying(12, 90, '{"a":1}')))))],
  ];

  it.each(TRUNCATED_OTHER)('%s with a field running past the end of its message (%s): INVALID_ARGUMENT, recorded, never decided', async (method, _what, bytes) => {
    const type = method === 'envoy' ? 'envoy.service.auth.v3.CheckRequest' : `verdict.v1.${method}Request`;
    const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    const { error, trailers } = await sendRaw(shipped.server.grpcPort, method, bytes);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toContain(`are not a valid ${type} protobuf message`);
    expect(error?.details).toMatch(/index out of range/);
    const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
    expect(recorded.length).toBe(before + 1);
    expect(recorded[0]!.effect).toBe('DENY');
    expect(trailers?.get('verdict-decision-id')[0]).toBe(recorded[0]!.decisionId);
  });

  it('a Struct key __proto__, which copied into the attributes would become a prototype that no key lists: INVALID_ARGUMENT naming it, recorded', async () => {
    const client = verdictClient(shipped.server.grpcPort);
    try {
      // `owner` under __proto__ would have been read by nothing, and the row would not have shown it was sent.
      const cases: [string, { resource: { type: string; id: string; attributes?: Record<string, unknown> }; context?: Record<string, unknown> }, string][] = [
        ['resource', { resource: { type: 'model', id: 'fraud-v3', attributes: JSON.parse('{"org": "acme", "__proto__": {"owner": "dana"}}') as Record<string, unknown> } }, 'resource.attributes.__proto__'],
        ['nested in context', { resource: { type: 'model', id: 'fraud-v3' }, context: { a: JSON.parse('{"__proto__": {"b": 1}}') as Record<string, unknown> } }, 'context.attributes.a.__proto__'],
      ];
      for (const [where, request, field] of cases) {
        const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
        const refused = await client
          .call('Authorization', 'Check', checkRequest({ principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } }, action: 'read', ...request }))
          .then(() => null, (error: unknown) => error as grpc.ServiceError);
        expect(refused?.code, where).toBe(grpc.status.INVALID_ARGUMENT);
        expect(refused?.details, where).toBe(`${field}: cannot be an attribute name (send it under another name)`);
        const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
        expect(recorded.length, where).toBe(before + 1);
        expect(recorded[0]!.errors[0]!.message).toBe(refused?.details);
      }
    } finally {
      client.close();
    }
  });

  // proto3 reads the last member of a oneof on the wire; the decoder kept both and reported the first declared,
  // so carl's `classification` was read as `true`, not "restricted", and the employees-only deny never matched.
  it('a Value with two members of its oneof (bool then string): INVALID_ARGUMENT naming the attribute, recorded, never decided either way', async () => {
    const entry = (key: string, value: Buffer): Buffer => ld(1, cat(str(1, key), ld(2, value)));
    const text = (value: string): Buffer => str(3, value);
    const boolThenString = cat(Buffer.from([4 << 3, 1]), str(3, 'restricted'));
    const principal = ld(1, cat(str(1, 'carl'), str(2, 'data_scientist'), ld(3, cat(entry('org', text('acme')), entry('employment', text('contractor'))))));
    const resource = ld(3, cat(str(1, 'model'), str(2, 'pricing-x'), ld(3, cat(entry('org', text('acme')), entry('classification', boolThenString)))));
    const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    const { error } = await sendRaw(shipped.server.grpcPort, 'Check', cat(principal, str(2, 'predict'), resource));
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toBe('resource.attributes.classification: a value with more than one kind set (send one of null, number, string, bool, struct or list)');
    const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
    expect(recorded.length).toBe(before + 1);
    expect(recorded[0]).toMatchObject({ principalId: 'carl', effect: 'DENY' });
  });

  // A field that is not repeated, or a map key, given twice: proto3 readers keep the last scalar, merge two
  // messages and keep a map key's last entry, protobufjs replaced a message; a reader that checked the first
  // copy saw another request than the one decided. Refused whole, as AuthZEN refuses a JSON member given twice.
  const TWICE_ENTRY = (key: string, value: Buffer): Buffer => ld(1, cat(str(1, key), ld(2, value)));
  const TWICE_TEXT = (value: string): Buffer => str(3, value);
  const TWICE_RESOURCE = ld(3, cat(str(1, 'model'), str(2, 'pricing-x'), ld(3, TWICE_ENTRY('org', TWICE_TEXT('acme')))));
  const GIVEN_TWICE: readonly (readonly ['Check' | 'CheckBatch' | 'envoy', string, Buffer])[] = [
    ['Check', 'principal', cat(ld(1, cat(str(1, 'carl'), str(2, 'admin'))), str(2, 'predict'), TWICE_RESOURCE, ld(1, str(1, 'carl')))],
    ['Check', 'action', cat(ld(1, str(1, 'carl')), str(2, 'read'), TWICE_RESOURCE, str(2, 'predict'))],
    ['Check', 'principal.attributes.fields["employment"]', cat(ld(1, cat(str(1, 'carl'), ld(3, cat(TWICE_ENTRY('employment', TWICE_TEXT('employee')), TWICE_ENTRY('org', TWICE_TEXT('acme')), TWICE_ENTRY('employment', TWICE_TEXT('contractor')))))), str(2, 'predict'), TWICE_RESOURCE)],
    ['Check', 'resource.attributes.fields["meta"].structValue.fields["tier"]', cat(ld(1, str(1, 'carl')), str(2, 'predict'), ld(3, cat(str(1, 'model'), ld(3, TWICE_ENTRY('meta', ld(5, cat(TWICE_ENTRY('tier', TWICE_TEXT('gold')), TWICE_ENTRY('tier', TWICE_TEXT('free')))))))))],
    ['CheckBatch', 'items[0].resource', cat(ld(1, str(1, 'carl')), ld(4, cat(str(1, 'predict'), ld(2, cat(str(1, 'model'), str(2, 'a'))), ld(2, cat(str(1, 'model'), str(2, 'b'))))))],
    ['envoy', 'attributes.request.http.headers["x-model-tier"]', ld(1, ld(4, ld(2, cat(str(2, 'GET'), str(4, '/v1/models/fraud-v3'), ld(3, cat(str(1, 'x-model-tier'), str(2, 'lite'))), ld(3, cat(str(1, 'x-model-tier'), str(2, 'gold')))))))],
  ];

  it.each(GIVEN_TWICE)('%s giving %s twice: INVALID_ARGUMENT naming it, recorded, never decided', async (method, path, sent) => {
    const type = method === 'envoy' ? 'envoy.service.auth.v3.CheckRequest' : `verdict.v1.${method}Request`;
    const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    const decidedBefore = queryDecisions(shipped.db, { limit: 1000 }).length;
    const { error, trailers } = await sendRaw(shipped.server.grpcPort, method, sent);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toContain(`are not a valid ${type} protobuf message (${path} is given twice in one message; send each field, and each map key, once)`);
    const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
    expect(recorded.length).toBe(before + 1);
    expect(queryDecisions(shipped.db, { limit: 1000 }).length).toBe(decidedBefore + 1);
    expect(trailers?.get('verdict-decision-id')[0]).toBe(recorded[0]!.decisionId);
  });

  // A second copy hidden where the walk and protobufjs read the bytes differently: protobufjs does not match a group's
  // end tag, reads a tag's fifth byte by its low four bits and skips five more, and reads a known field by its
  // declared type whatever wire type it came with. Each was decided on the last copy.
  const PRINCIPAL = ld(1, cat(str(1, 'dana'), str(2, 'viewer')));
  const HIDDEN: readonly (readonly [string, Buffer, RegExp])[] = [
    ['an unknown group closed by another field', cat(str(2, 'delete'), varint((50 << 3) | 3), str(1, 'x'), varint((51 << 3) | 4), str(2, 'read'), PRINCIPAL, TWICE_RESOURCE), /do not follow the protobuf wire format/],
    ["a tag whose fifth byte sets bit 32", cat(str(2, 'delete'), Buffer.from([0x92, 0x80, 0x80, 0x80, 0x10]), varint(4), Buffer.from('read'), PRINCIPAL, TWICE_RESOURCE), /action is given twice/],
    ['the first copy sent with wire type 0', cat(Buffer.from([(2 << 3) | 0]), varint(6), Buffer.from('delete'), str(2, 'read'), PRINCIPAL, TWICE_RESOURCE), /do not follow the protobuf wire format/],
  ];

  it.each(HIDDEN)('a second action hidden behind %s: INVALID_ARGUMENT, recorded, never decided', async (_what, sent, reason) => {
    const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    const { error } = await sendRaw(shipped.server.grpcPort, 'Check', sent);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toMatch(reason);
    expect(queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length).toBe(before + 1);
  });

  it('bytes the walk cannot follow are refused before anything is decoded: the walk names them, not a decoder error past them', async () => {
    // action with wire type 0, which protobufjs reads anyway; behind it, a principal id that is not UTF-8, which decoding would refuse.
    const sent = cat(Buffer.from([(2 << 3) | 0]), varint(4), Buffer.from('read'), ld(1, cat(varint((1 << 3) | 2), varint(2), Buffer.from([0xff, 0xfe]))), TWICE_RESOURCE);
    const { error } = await sendRaw(shipped.server.grpcPort, 'Check', sent);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toMatch(/do not follow the protobuf wire format/);
    expect(error?.details).not.toMatch(/UTF-8/);
  });

  it('a repeated field in several entries, and an unknown field twice, are read as proto3 reads them: decided', async () => {
    // roles in two entries; field 99 (unknown) twice; a second map entry under another key.
    const principal = ld(1, cat(str(1, 'dana'), str(2, 'viewer'), str(2, 'data_scientist'), ld(3, cat(TWICE_ENTRY('org', TWICE_TEXT('acme')), TWICE_ENTRY('employment', TWICE_TEXT('employee'))))));
    const resource = ld(3, cat(str(1, 'model'), str(2, 'fraud-v3'), ld(3, cat(TWICE_ENTRY('org', TWICE_TEXT('acme')), TWICE_ENTRY('env', TWICE_TEXT('production')), TWICE_ENTRY('owner', TWICE_TEXT('dana'))))));
    const { error } = await sendRaw(shipped.server.grpcPort, 'Check', cat(principal, str(2, 'read'), resource, str(99, 'x'), str(99, 'y')));
    expect(error).toBeNull();
    expect(queryDecisions(shipped.db, { limit: 1 })[0]).toMatchObject({ principalId: 'dana', effect: 'ALLOW' });
  });

  it('an attribute map entry sent without its value: INVALID_ARGUMENT saying so (not the decoder\'s own TypeError), recorded', async () => {
    const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    // principal.attributes (field 3, a Struct) holding one entry (field 1) with a key (1) and no value (2).
    const principal = ld(1, cat(str(1, 'dana'), str(2, 'data_scientist'), ld(3, ld(1, str(1, 'org')))));
    const { error } = await sendRaw(shipped.server.grpcPort, 'Check', cat(principal, str(2, 'read'), ld(3, cat(str(1, 'model'), str(2, 'fraud-v3')))));
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toMatch(/are not a valid verdict\.v1\.CheckRequest protobuf message \(a field holds nothing where a value must be, such as an attribute map entry sent without its google\.protobuf\.Value\)/);
    expect(error?.details).not.toMatch(/Cannot read properties/);
    expect(queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length).toBe(before + 1);
  });

  // protobufjs replaced bytes that are not UTF-8 with U+FFFD: `carl\xff` and `carl\xfe` were decided, limited and
  // recorded as one principal, `carl\uFFFD`, and nothing showed what had been sent.
  const bytes = (field: number, ...parts: (string | number[])[]): Buffer => ld(field, cat(...parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))));
  const NOT_UTF8: readonly (readonly ['Check' | 'CheckBatch' | 'envoy', string, Buffer])[] = [
    ['Check', 'principal.id', cat(ld(1, cat(bytes(1, 'carl', [0xff]), str(2, 'data_scientist'))), str(2, 'predict'), resource)],
    ['Check', 'an attribute name', cat(ld(1, cat(str(1, 'carl'), ld(3, ld(1, cat(bytes(1, 'or', [0xc3]), ld(2, str(3, 'acme'))))))), str(2, 'predict'), resource)],
    ['Check', 'an attribute value (a lone surrogate, CESU-8)', cat(ld(1, cat(str(1, 'carl'), ld(3, ld(1, cat(str(1, 'org'), ld(2, bytes(3, [0xed, 0xa0, 0x80]))))))), str(2, 'predict'), resource)],
    ['CheckBatch', 'an item action', cat(ld(1, str(1, 'carl')), ld(4, cat(ld(2, cat(str(1, 'model'), str(2, 'm'))), bytes(1, 'pred', [0xfe], 'ict'))))],
    ['envoy', 'a header value', ld(1, ld(4, ld(2, cat(str(2, 'GET'), str(4, '/v1/models/fraud-v3'), ld(3, cat(str(1, 'x-model-tier'), bytes(2, [0xe9], 'lite')))))))],
    // encode_raw_headers: the value is a bytes field (header_map.headers[].raw_value), which protobufjs does not check.
    ['envoy', 'a raw_value header (encode_raw_headers)', ld(1, ld(4, ld(2, cat(str(2, 'GET'), str(4, '/v1/models/fraud-v3'), ld(13, ld(1, cat(str(1, 'x-model-tier'), bytes(3, [0xe9], 'lite'))))))))],
  ];

  it.each(NOT_UTF8)('%s with bytes that are not UTF-8 in %s: INVALID_ARGUMENT, recorded, never decided', async (method, _what, sent) => {
    const type = method === 'envoy' ? 'envoy.service.auth.v3.CheckRequest' : `verdict.v1.${method}Request`;
    const before = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 }).length;
    const decidedBefore = queryDecisions(shipped.db, { limit: 1000 }).length;
    const { error, trailers } = await sendRaw(shipped.server.grpcPort, method, sent);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toContain(`are not a valid ${type} protobuf message`);
    expect(error?.details).toMatch(/is not valid UTF-8/);
    const recorded = queryDecisions(shipped.db, { reason: 'DENIED_INVALID_REQUEST', limit: 1000 });
    expect(recorded.length).toBe(before + 1);
    expect(queryDecisions(shipped.db, { limit: 1000 }).length).toBe(decidedBefore + 1);
    expect(recorded[0]!.principalId).not.toContain('\uFFFD');
    expect(trailers?.get('verdict-decision-id')[0]).toBe(recorded[0]!.decisionId);
  });

  it('a string that holds U+FFFD itself, sent as UTF-8, is data like any other: decided and recorded as sent', async () => {
    const client = verdictClient(shipped.server.grpcPort);
    try {
      const answer = await client.call<{ reason: string; decisionId: string }>(
        'Authorization',
        'Check',
        checkRequest({ principal: { id: 'carl\uFFFD', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } }, action: 'read', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme' } } }),
      );
      expect(answer.reason).not.toBe('REASON_DENIED_INVALID_REQUEST');
      expect(queryDecisions(shipped.db, { limit: 1 })[0]).toMatchObject({ decisionId: answer.decisionId, principalId: 'carl\uFFFD' });
    } finally {
      client.close();
    }
  });

  it('keeps serving valid checks afterwards', async () => {
    const client = verdictClient(shipped.server.grpcPort);
    try {
      const ok = await client.call<{ effect: string }>('Authorization', 'Check', checkRequest({ principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } }, action: 'read', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } } }));
      expect(ok.effect).toBe('EFFECT_ALLOW');
    } finally {
      client.close();
    }
  });
});
