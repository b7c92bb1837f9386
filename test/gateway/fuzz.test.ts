import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDecision } from '../../src/decisions/query.js';
import { evaluate } from '../../src/engine/evaluate.js';
import { prepareCheck } from '../../src/gateway/prepare-check.js';
import { loadPolicies } from '../../src/policy/load.js';
import type { PolicySet } from '../../src/policy/policy-set.js';
import { RefusedRequest } from '../../src/decide/index.js';
import type { AuthnResult } from '../../src/authn/types.js';
import type { StoredDecision } from '../../src/decisions/query.js';
import type { GatewayRequest } from '../../src/gateway/types.js';
import type { Attributes } from '../../src/types.js';
import { EXAMPLE_POLICIES, NGINX, startGatewayVerdict, startModelServer, startNginx, type GatewayVerdict, type RunningNginx } from './support.js';

// The fuzzing gate for the gateway path: random requests, sent through the real NGINX
// configured as docs/gateways.md says, must be decided exactly as the policy set
// decides the facts NGINX forwards (the method and raw URI the model server receives,
// the model headers NGINX's maps set), and a request reaches the model server only
// when that decision is an allow.

const METHODS = ['GET', 'HEAD', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS'];
const MODELS = ['fraud-detector-v3', 'globex-ranker', 'churn-v1', 'pricing-v9'];
// Spellings that have turned a deny into an allow elsewhere: encodings, dot segments, doubled slashes.
const TRICKS = ['', '%67', '%2F', '%2f', '%2e', '%2E%2E', '..', '.', '/', '//', '%00', '%25', ';x', '%20', 'é', '*'];
const SUFFIXES = ['', '/predict', '/predict/', '//predict', '/./predict', '/../predict', '/predict/..', '/%70redict'];
const CLIENT_HEADERS = ['x-original-method', 'x-original-uri', 'x-forwarded-method', 'x-forwarded-uri', 'x-model-org', 'x-model-env', 'x-model-classification', 'x-incident-ticket', 'x-verdict-principal', 'x-http-method-override'];
const HEADER_VALUES = ['GET', 'DELETE', '/v1/models/fraud-detector-v3', 'acme', 'globex', 'staging', 'production', 'internal', 'restricted', 'INC-4711', 'ada', 'production, staging'];
const PRINCIPAL_KEYS = ['dana', 'carl', 'vic', 'ada', 'none', 'revoked'] as const;

/** Mostly requests a client would really send, with a spelling trick or a forged header now and then. */
const often = <T>(usual: fc.Arbitrary<T>, rare: fc.Arbitrary<T>): fc.Arbitrary<T> => fc.oneof({ weight: 3, arbitrary: usual }, { weight: 1, arbitrary: rare });
const requestArb = fc.record({
  method: often(fc.constantFrom('GET', 'POST', 'DELETE'), fc.constantFrom(...METHODS)),
  model: fc.constantFrom(...MODELS),
  trick: often(fc.constant(''), fc.constantFrom(...TRICKS)),
  trickAt: fc.nat(20),
  // Percent-encode one character of the model's name (`%67lobex-…`): the same name to a decoder, another to a prefix match.
  encodeAt: often(fc.constant(-1), fc.nat(12)),
  suffix: often(fc.constantFrom('', '/predict'), fc.constantFrom(...SUFFIXES)),
  query: often(fc.constant(''), fc.constantFrom('?x=1', '?x=1&x=2', '?model=globex-ranker', '?%3F=%26')),
  headers: often(fc.constant([] as [string, string][]), fc.uniqueArray(fc.tuple(fc.constantFrom(...CLIENT_HEADERS), fc.constantFrom(...HEADER_VALUES)), { maxLength: 3, selector: ([name]) => name })),
  who: often(fc.constantFrom('dana', 'carl', 'vic', 'ada'), fc.constantFrom(...PRINCIPAL_KEYS)),
});

/** NGINX's maps in the documented config: what it tells verdict about a model, from the raw request URI. */
function modelHeaders(uri: string): Record<string, string> {
  return {
    'x-model-org': uri.startsWith('/v1/models/globex-') ? 'globex' : 'acme',
    'x-model-env': uri.startsWith('/v1/models/churn-') ? 'staging' : 'production',
    'x-model-classification': uri.startsWith('/v1/models/pricing-') ? 'restricted' : 'internal',
  };
}

/**
 * The request as a model server acts on it: dot segments resolved, each path segment
 * percent-decoded, then spelled canonically (only what must be encoded is), so the
 * decision on it is the decision on what the model server will do.
 */
function upstreamView(rawUrl: string): string {
  const q = rawUrl.indexOf('?');
  const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
  let resolved = rawPath;
  try {
    resolved = new URL(rawPath, 'http://upstream').pathname;
  } catch {
    // Not a URL path at all: taken as sent.
  }
  const decoded = resolved
    .split('/')
    .map((segment) => {
      try {
        return encodeURIComponent(decodeURIComponent(segment));
      } catch {
        return segment;
      }
    })
    .join('/');
  return q === -1 ? decoded : `${decoded}${rawUrl.slice(q)}`;
}

function gatewayRequest(method: string, uri: string, headers: Record<string, string>): GatewayRequest {
  return { method, uri, headers, source: { address: '127.0.0.1', principal: null }, extensions: {}, requestId: null };
}

/** The principal a recorded gateway decision authenticated. */
function authnOf(row: StoredDecision): AuthnResult {
  const principal = { id: row.principalId, roles: row.request.principal.roles, attributes: row.request.principal.attributes as Attributes };
  return { ok: true, principal, method: 'api-key', credentialId: null };
}

/** The policies' effect on one HTTP request, decided in this process. */
function decideDirectly(policySet: PolicySet, method: string, uri: string, headers: Record<string, string>, row: StoredDecision): 'ALLOW' | 'DENY' {
  const input = prepareCheck(policySet, gatewayRequest(method, uri, headers), authnOf(row));
  return input instanceof RefusedRequest ? 'DENY' : evaluate(policySet, input).effect;
}

describe.skipIf(NGINX === null)('fuzzing gate: random requests through NGINX decide as the forwarded facts do', () => {
  let verdict: GatewayVerdict;
  let upstream: Awaited<ReturnType<typeof startModelServer>>;
  let nginx: RunningNginx;
  let policySet: PolicySet;

  beforeAll(async () => {
    verdict = await startGatewayVerdict();
    upstream = await startModelServer();
    nginx = await startNginx(verdict.verdict.httpPort, upstream.port);
    const loaded = loadPolicies(EXAMPLE_POLICIES);
    if (!loaded.ok) throw new Error('the example policies do not load');
    policySet = loaded.policies.policySet;
  });

  afterAll(async () => {
    await nginx?.stop();
    await new Promise<void>((resolve) => (upstream ? upstream.server.close(() => resolve()) : resolve()));
    await verdict?.stop();
  });

  it('never lets a request the forwarded facts deny reach the model server, and records each decision as those facts decide', async () => {
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        const name = r.encodeAt < 0 ? r.model : `${r.model.slice(0, r.encodeAt)}%${r.model.charCodeAt(r.encodeAt).toString(16)}${r.model.slice(r.encodeAt + 1)}`;
        const at = Math.min(r.trickAt, name.length);
        const path = `/v1/models/${name.slice(0, at)}${r.trick}${name.slice(at)}${r.suffix}${r.query}`;
        const headers: Record<string, string> = Object.fromEntries(r.headers);
        if (r.who === 'revoked') headers['x-api-key'] = verdict.revokedKey;
        else if (r.who !== 'none') headers['x-api-key'] = verdict.keys[r.who];
        const before = upstream.seen.length;
        const response = await nginx.send(r.method, path, headers);
        const reached = upstream.seen.slice(before);
        const decisionId = response.headers['x-verdict-decision-id'];

        // Only an allow reaches the model server, and it reaches it with the URI verdict decided on.
        if (response.status === 200 && decisionId) {
          expect(reached).toHaveLength(1);
          expect(reached[0]!.method).toBe(r.method);
          const row = getDecision(verdict.db, String(reached[0]!.headers['x-verdict-decision-id']))!;
          expect(row.effect).toBe('ALLOW');
          expect(row.details).toMatchObject({ http: { method: r.method, path: reached[0]!.url.split('?')[0] } });
          // And the model server, which decodes what it got, must be acting on a request the policies allow.
          const acted = upstreamView(reached[0]!.url);
          const truth = decideDirectly(policySet, r.method, acted, modelHeaders(acted), row);
          expect(truth, `NGINX let ${r.method} ${path} through; the model server acts on ${acted}`).toBe('ALLOW');
        } else {
          expect(reached).toEqual([]);
        }
        // NGINX refused it itself (a malformed request line): verdict was not asked, nothing to compare.
        if (!decisionId) {
          expect(response.status).not.toBe(200);
          return;
        }
        const row = getDecision(verdict.db, decisionId);
        expect(row, `no decision ${decisionId} in the log`).not.toBeNull();
        if (row!.effect === 'ALLOW') expect(response.status).toBe(200);

        // The same facts, decided directly: the method and raw URI NGINX forwards, its model headers, the caller's own headers.
        const forwarded = { ...Object.fromEntries(r.headers), ...modelHeaders(path) };
        const clientFamily = r.headers.some(([name]) => name === 'x-forwarded-method' || name === 'x-forwarded-uri' || name === 'x-http-method-override');
        if (row!.reason === 'DENIED_UNAUTHENTICATED' || clientFamily) {
          // Refused before any rule: the credential failed, or the client sent a header only a gateway may.
          expect(row!.effect).toBe('DENY');
          return;
        }
        const input = prepareCheck(policySet, gatewayRequest(r.method, path, forwarded), authnOf(row!));
        if (input instanceof RefusedRequest) {
          expect(row!.effect).toBe('DENY');
          return;
        }
        const direct = evaluate(policySet, input);
        expect({ action: row!.action, type: row!.resourceType, id: row!.resourceId }).toEqual({ action: input.action, type: input.resource.type, id: input.resource.id });
        // A rate limit may refuse what the rules allow; nothing else may differ.
        if (row!.reason === 'DENIED_BY_RATE_LIMIT') expect(direct.effect).toBe('ALLOW');
        else expect({ effect: row!.effect, reason: row!.reason }).toEqual({ effect: direct.effect, reason: direct.reason });
      }),
      { numRuns: 150, seed: Number(process.env.VERDICT_FUZZ_SEED ?? 20261204) },
    );
  });
});
