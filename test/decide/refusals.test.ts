import { describe, expect, it } from 'vitest';
import {
  AUTHN_RULE_ID,
  InvalidRequest,
  ROUTE_RULE_ID,
  RequestFieldError,
  invalidRequest,
  noRoute,
  refusalDecision,
  unauthenticated,
  unroutable,
} from '../../src/decide/index.js';
import { toCheckResponse } from '../../src/server/grpc/convert/verdict.js';
import { request } from '../helpers/policies.js';

describe('refusals: one Decision shape, a DENY naming no rule with the refusal as its only error', () => {
  it.each([
    ['an invalid request', invalidRequest('principal.id is required'), 'DENIED_INVALID_REQUEST', '', 'principal.id is required'],
    [
      'a failed authentication',
      unauthenticated({ reason: 'EXPIRED', message: 'token expired at 2025-01-01T00:00:00.000Z' }),
      'DENIED_UNAUTHENTICATED',
      AUTHN_RULE_ID,
      'EXPIRED: token expired at 2025-01-01T00:00:00.000Z',
    ],
    ['an unroutable path', unroutable('the path has an encoded slash'), 'DENIED_INVALID_REQUEST', ROUTE_RULE_ID, 'the path has an encoded slash'],
    ['no route', noRoute('GET', '/x'), 'DENIED_BY_DEFAULT', ROUTE_RULE_ID, 'no route matches GET /x'],
  ] as const)('%s', (_kind, refusal, reason, ruleId, message) => {
    expect(refusalDecision(refusal, 'sha256:abc')).toEqual({ effect: 'DENY', reason, ruleIds: [], errors: [{ ruleId, message }], policyVersion: 'sha256:abc' });
  });

  it('an invalid request carries its field error and refuses with its message', () => {
    const error = RequestFieldError.required('resource.type');
    const input = new InvalidRequest(error, request());
    expect(input.error.field).toBe('resource.type');
    expect(input.refusal).toEqual({ reason: 'DENIED_INVALID_REQUEST', ruleId: '', message: 'resource.type is required' });
  });

  it('a failed authentication goes over gRPC as REASON_DENIED_UNAUTHENTICATED', () => {
    const decision = refusalDecision(unauthenticated({ reason: 'REVOKED', message: 'API key x was revoked' }), 'v1');
    expect(toCheckResponse({ decision, decisionId: 'd1' }, null)).toMatchObject({ effect: 'EFFECT_DENY', reason: 'REASON_DENIED_UNAUTHENTICATED' });
  });
});
