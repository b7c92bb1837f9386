import { describe, expect, it } from 'vitest';
import { certificateIdentity, grpcCallerOf, parseSubjectAltName } from '../../src/authn/mtls.js';

describe('parseSubjectAltName', () => {
  it('splits Node\'s subjectaltname text, quoted values included', () => {
    expect(parseSubjectAltName('DNS:gw.acme.test, URI:spiffe://prod/ns/edge/sa/gw, IP Address:10.0.0.1')).toEqual([
      { type: 'DNS', value: 'gw.acme.test' },
      { type: 'URI', value: 'spiffe://prod/ns/edge/sa/gw' },
      { type: 'IP Address', value: '10.0.0.1' },
    ]);
    expect(parseSubjectAltName('URI:"http://a.test/x,y", DNS:b.test')).toEqual([
      { type: 'URI', value: 'http://a.test/x,y' },
      { type: 'DNS', value: 'b.test' },
    ]);
    expect(parseSubjectAltName(undefined)).toEqual([]);
  });
});

describe('certificateIdentity: URI SAN, else DNS SAN, else CN', () => {
  const subject = { CN: 'gateway-1' } as never;
  it('prefers the first URI SAN', () => {
    expect(certificateIdentity({ subject, subjectaltname: 'DNS:gw.test, URI:spiffe://a/b, URI:spiffe://c/d' })).toBe('uri:spiffe://a/b');
  });
  it('then the first DNS SAN', () => {
    expect(certificateIdentity({ subject, subjectaltname: 'IP Address:10.0.0.1, DNS:gw.test' })).toBe('dns:gw.test');
  });
  it('then the CN (the first, if several)', () => {
    expect(certificateIdentity({ subject, subjectaltname: undefined as never })).toBe('cn:gateway-1');
    expect(certificateIdentity({ subject: { CN: ['a', 'b'] } as never, subjectaltname: undefined as never })).toBe('cn:a');
  });
  it('stands for no one when its name holds a control character: neither forged log lines nor another name once they are dropped', () => {
    expect(certificateIdentity({ subject: { CN: 'evil\n{"level":50}' } as never, subjectaltname: undefined as never })).toBeNull();
    expect(certificateIdentity({ subject: { CN: 'ops-admin\u0007' } as never, subjectaltname: undefined as never })).toBeNull();
    expect(certificateIdentity({ subject, subjectaltname: 'URI:"spiffe://verdict/admin\\u0000"' })).toBeNull();
    expect(certificateIdentity({ subject, subjectaltname: 'URI:spiffe://verdict/admin' })).toBe('uri:spiffe://verdict/admin');
  });
  it('is null without any name', () => {
    expect(certificateIdentity({ subject: {} as never, subjectaltname: undefined as never })).toBeNull();
  });
});

describe('grpcCallerOf', () => {
  it('falls back to the peer address without a verified certificate', () => {
    expect(grpcCallerOf({ getAuthContext: () => ({}), getPeer: () => '127.0.0.1:5000' })).toBe('127.0.0.1:5000');
    expect(grpcCallerOf({ getAuthContext: () => ({ transportSecurityType: 'ssl', sslPeerCertificate: { subject: { CN: 'gw' } } as never }), getPeer: () => 'x' })).toBe('cn:gw');
  });
});
