import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readConfigFile, readEnvironment, resolveConfig } from '../../src/server/config.js';

function configFile(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'verdict-config-')), 'verdict.yaml');
  writeFileSync(path, text);
  return path;
}

describe('the tls and authn configuration keys', () => {
  it('default to plaintext and no authentication methods', () => {
    const config = resolveConfig([]);
    expect(config.tls).toBeNull();
    expect(config.authn).toEqual({});
  });

  it('merge tls key by key across file, environment and flags', () => {
    const file = readConfigFile(configFile('tls:\n  cert: /etc/verdict/server.crt\n  clientCa: /etc/verdict/ca.crt\n'));
    const env = readEnvironment({ VERDICT_TLS_KEY: '/run/secrets/server.key', VERDICT_TLS_HTTP: 'true' });
    const config = resolveConfig([file, env, { tls: { cert: '/flags/server.crt' } }]);
    expect(config.tls).toEqual({ cert: '/flags/server.crt', key: '/run/secrets/server.key', clientCa: '/etc/verdict/ca.crt', requireClientCert: true, http: true });
  });

  it('refuse incomplete or contradictory tls', () => {
    expect(() => resolveConfig([{ tls: { cert: 'a.crt' } }])).toThrow('tls.key is missing');
    expect(() => resolveConfig([{ tls: { cert: 'a.crt', key: 'a.key', requireClientCert: true } }])).toThrow('needs tls.clientCa');
    expect(() => resolveConfig([{ tls: { cert: 'a.crt', key: 'a.key', clientCa: 'ca.crt', requireClientCert: false } }])).toThrow('is not supported');
    expect(() => readConfigFile(configFile('tls:\n  certificate: a.crt\n'))).toThrow(/tls: Unrecognized key/);
    expect(() => readEnvironment({ VERDICT_TLS_HTTP: 'maybe' })).toThrow(/environment: tls.http/);
  });

  it('read the authn section as documented in docs/authn.md', () => {
    const file = readConfigFile(
      configFile(`authn:
  jwt:
    issuer: https://id.acme.test/realms/ml
    audience: [verdict, ml-gateway]
    algorithms: [RS256, ES256]
    jwksUrl: https://id.acme.test/realms/ml/protocol/openid-connect/certs
    clockSkewSeconds: 30
    claims:
      principalId: preferred_username
      roles: realm_access.roles
      attributes:
        org: org_id
        tier: plan.tier
        tenant: ["https://acme.test/claims", tenant]
  apiKeys:
    db: /var/lib/verdict/keys.db
    header: X-API-Key
`),
    );
    const config = resolveConfig([file]);
    expect(config.authn.jwt?.claims?.attributes?.tenant).toEqual(['https://acme.test/claims', 'tenant']);
    expect(config.authn.apiKeys).toEqual({ db: '/var/lib/verdict/keys.db', header: 'x-api-key' });
  });

  it('refuse a JWT setup without issuer, with two key sources, or with an HMAC or none algorithm', () => {
    const jwt = (body: string): string => configFile(`authn:\n  jwt:\n${body}`);
    expect(() => readConfigFile(jwt('    audience: v\n    algorithms: [RS256]\n    jwksFile: j.json\n'))).toThrow(/authn.jwt.issuer/);
    expect(() => readConfigFile(jwt('    issuer: i\n    audience: v\n    algorithms: [RS256]\n    jwksFile: j.json\n    publicKeyFile: k.pem\n'))).toThrow(/exactly one of jwksFile, jwksUrl, publicKeyFile/);
    expect(() => readConfigFile(jwt('    issuer: i\n    audience: v\n    algorithms: [HS256]\n    jwksFile: j.json\n'))).toThrow(/HMAC algorithms and "none" are refused/);
    expect(() => readConfigFile(jwt('    issuer: i\n    audience: v\n    algorithms: [none]\n    jwksFile: j.json\n'))).toThrow(/refused/);
  });

  it('read authzen.peps as callers the log records, refusing a bare name that could never match', () => {
    expect(resolveConfig([]).authzen.peps).toEqual([]);
    const file = readConfigFile(configFile('authzen:\n  peps: [api-key:orders-service, "uri:spiffe://prod/sa/gw", jwt:svc]\n'));
    expect(resolveConfig([file]).authzen.peps).toEqual(['api-key:orders-service', 'uri:spiffe://prod/sa/gw', 'jwt:svc']);
    expect(() => readConfigFile(configFile('authzen:\n  peps: [orders-service]\n'))).toThrow(/authzen\.peps\.0: expected a caller as the decision log records it: api-key:<key owner>/);
    expect(() => readConfigFile(configFile('authzen:\n  pep: [api-key:a]\n'))).toThrow(/authzen: Unrecognized key/);
  });

  it('refuse a jwt: PEP when tokens of several issuers are accepted: any of them could mint its principal id', () => {
    const jwt = (issuer: string, peps: string): string =>
      configFile(`authn:\n  jwt:\n    issuer: ${issuer}\n    audience: v\n    algorithms: [EdDSA]\n    jwksFile: j.json\nauthzen:\n  peps: [${peps}]\n`);
    expect(() => resolveConfig([readConfigFile(jwt('[https://staff.example/, https://customers.example/]', 'api-key:gw, jwt:gateway-1'))])).toThrow(
      'configuration: authzen.peps lists jwt:gateway-1, but authn.jwt accepts several issuers, and a token from any of them whose principal id is "gateway-1" is that caller; accept one issuer here, or list the PEP by API key or client certificate',
    );
    // One issuer, the same issuer twice, or PEPs listed another way: nothing to mistake.
    expect(resolveConfig([readConfigFile(jwt('https://staff.example/', 'jwt:gateway-1'))]).authzen.peps).toEqual(['jwt:gateway-1']);
    expect(resolveConfig([readConfigFile(jwt('[https://staff.example/, https://staff.example/]', 'jwt:gateway-1'))]).authzen.peps).toEqual(['jwt:gateway-1']);
    expect(resolveConfig([readConfigFile(jwt('[https://staff.example/, https://customers.example/]', 'api-key:gw'))]).authzen.peps).toEqual(['api-key:gw']);
  });
});
