import * as grpc from '@grpc/grpc-js';
import type { Decision, DecisionRequest } from '../../src/types.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { packageDefinition } from '../../src/server/grpc/descriptors.js';
import type { WatchStatus } from '../../src/server/policy-store.js';
import { RefusedRequest, RequestFieldError, refusalDecision, type CallMeta, type CheckInput, type CheckResult } from '../../src/decide/index.js';
import {
  createGrpcServer,
  type AdminHandlers,
  type AuthorizationHandlers,
  type GrpcServer,
  type GrpcServerOptions,
} from '../../src/server/grpc/index.js';

/** Both sides of the gRPC API, as a test fakes them to drive the transport alone. */
export type FakeHandlers = AuthorizationHandlers & AdminHandlers;

/** A fake engine: `read` is allowed, anything else denied; a refused input is denied as such. */
export function fakeDecision(input: CheckInput): Decision {
  if (input instanceof RefusedRequest) return refusalDecision(input.refusal, 'v-test');
  const allowed = input.action === 'read';
  return {
    effect: allowed ? 'ALLOW' : 'DENY',
    reason: allowed ? 'ALLOWED_BY_RULE' : 'DENIED_BY_DEFAULT',
    ruleIds: allowed ? ['readers'] : [],
    errors: [],
    policyVersion: 'v-test',
  };
}

export const sampleRecord: DecisionRecord = {
  decisionId: 'd-1',
  time: Date.UTC(2025, 0, 2, 3, 4, 5, 678),
  caller: '127.0.0.1:5555',
  requestId: 'r-1',
  principalId: 'alice',
  action: 'read',
  resourceType: 'model',
  resourceId: 'm1',
  effect: 'ALLOW',
  reason: 'ALLOWED_BY_RULE',
  ruleIds: ['readers'],
  errors: [{ ruleId: 'cond', message: 'no such attribute' }],
  policyVersion: 'v-test',
  request: {
    principal: { roles: ['reader'], attributes: { tier: 'gold', n: 3, tags: ['a', null, true] } },
    resource: { attributes: {} },
    context: { attributes: { ip: '10.0.0.1' } },
  },
  latencyUs: 42,
};

export interface Seen {
  readonly inputs: CheckInput[];
  readonly batches: (readonly CheckInput[])[];
  readonly metas: CallMeta[];
}

export interface Harness {
  readonly grpc: GrpcServer;
  readonly port: number;
  readonly address: string;
  readonly seen: Seen;
  close(): Promise<void>;
}

export async function startServer(overrides: Partial<FakeHandlers> = {}, options: GrpcServerOptions = {}): Promise<Harness> {
  const seen: Seen = { inputs: [], batches: [], metas: [] };
  let next = 0;
  const record = (input: CheckInput): CheckResult => ({ request: asRequest(input), decision: fakeDecision(input), decisionId: `d-${++next}` });
  const handlers: FakeHandlers = {
    async check(input, meta) {
      seen.inputs.push(input);
      seen.metas.push(meta);
      return record(input);
    },
    async checkBatch(inputs, meta) {
      seen.batches.push(inputs);
      seen.metas.push(meta);
      return inputs.map(record);
    },
    policyStatus: () => ({ version: 'v-test', loadedAt: new Date(1_700_000_000_123), ruleCount: 7, lastReloadError: null, lastReloadAttemptAt: null, lastReloadLongestBlockMs: null, watch: WATCH_OFF }),
    reload: () => ({
      outcome: { ok: false as const, error: 'policies/rules.yaml:3:5 rules[0].effect: expected allow or deny', seconds: 0.01 },
      status: { version: 'v-test', loadedAt: new Date(1_700_000_000_123), ruleCount: 7, lastReloadError: 'broken', lastReloadAttemptAt: new Date(1_700_000_100_000), lastReloadLongestBlockMs: 2.5, watch: WATCH_OFF },
    }),
    getDecision: (id) => {
      // The Admin handler admits the caller first, then refuses an empty id (server/admin.ts).
      if (id === '') throw RequestFieldError.required('decision_id');
      return id === sampleRecord.decisionId ? sampleRecord : null;
    },
    listDecisions: () => ({ decisions: [sampleRecord], nextPageToken: '' }),
    suspendPrincipal: (request) => ({ principalId: request.principalId, since: 1_700_000_000_000, until: 1_700_000_000_000 + (request.durationMs() ?? 0), alertId: '', alertType: 'manual', note: request.note }),
    listSuspensions: () => ({ suspensions: [], nextPageToken: '' }),
    liftSuspension: () => null,
    ...overrides,
  };
  const grpcServer = createGrpcServer({ authorization: handlers, admin: handlers }, { shutdownTimeoutMs: 2000, ...options });
  const port = await grpcServer.start('127.0.0.1', 0);
  return { grpc: grpcServer, port, address: `127.0.0.1:${port}`, seen, close: () => grpcServer.shutdown() };
}

type ClientConstructor = new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;

const WATCH_OFF: WatchStatus = { mode: 'off', pollMs: null, lastError: null, failures: 0 };

const loaded = grpc.loadPackageDefinition(packageDefinition);

/** A client for a service of the descriptor set, e.g. `verdict.v1.Authorization`. */
export function clientFor(service: string, address: string): grpc.Client {
  let node: unknown = loaded;
  for (const part of service.split('.')) node = (node as Record<string, unknown>)[part];
  const Constructor = node as ClientConstructor;
  return new Constructor(address, grpc.credentials.createInsecure());
}

export interface CallOutcome<T> {
  readonly error: grpc.ServiceError | null;
  readonly response: T | undefined;
}

/** Calls a unary method and resolves with its error or response (never rejects). */
export function unary<T>(
  client: grpc.Client,
  method: string,
  request: unknown,
  metadata: grpc.Metadata = new grpc.Metadata(),
  options: grpc.CallOptions = {},
): Promise<CallOutcome<T>> {
  const fn = (client as unknown as Record<string, Function>)[method]!;
  return new Promise((resolve) => {
    fn.call(client, request, metadata, options, (error: grpc.ServiceError | null, response?: T) => resolve({ error, response }));
  });
}

/** A request with every part filled in. */
export function checkRequest(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    principal: {
      id: 'alice',
      roles: ['reader'],
      attributes: { fields: { tier: { stringValue: 'gold' }, level: { numberValue: 3 } } },
    },
    action: 'read',
    resource: { type: 'model', id: 'm1', attributes: { fields: { owner: { stringValue: 'bob' } } } },
    context: { attributes: { fields: { ip: { stringValue: '10.0.0.1' } } } },
    requestId: 'req-1',
    ...overrides,
  };
}

export function asRequest(input: CheckInput | undefined): DecisionRequest {
  if (!input) throw new Error('the handler saw no input');
  return input instanceof RefusedRequest ? input.request : input;
}
