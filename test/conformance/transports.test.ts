import type * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import type { PolicyTestCase } from '../../src/policy/load.js';
import type { Decision } from '../../src/types.js';
import type { VerdictClient } from '../helpers/verdict-process.js';
import { conformanceSets, defineConformanceSuite, type ConformanceSet } from './suite.js';
import {
  authzenEvaluate,
  authzenEvaluations,
  cannotCarryOverAuthZen,
  cannotCarryOverHttp,
  envoyClient,
  envoyCheck,
  forwardAuthCheck,
  grpcCheck,
  grpcCheckBatches,
  grpcClient,
  serveSet,
  type SetServer,
} from './transports.js';

// The same fixtures and the same expected answers as the engine (engine.test.ts),
// through a real `verdict serve` on real sockets, each way a decision can be asked
// for. One server per set serves all six paths; they stop when this file ends.

const servers = new Map<string, Promise<SetServer>>();
const serverFor = (set: ConformanceSet): Promise<SetServer> => {
  let server = servers.get(set.name);
  if (!server) servers.set(set.name, (server = serveSet(set)));
  return server;
};
afterAll(async () => {
  await Promise.all([...servers.values()].map(async (server) => (await server).stop()));
}, 60_000);

defineConformanceSuite('gRPC Check', async (set) => {
  const server = await serverFor(set);
  const client: VerdictClient = grpcClient(server);
  return { version: server.version, decide: (testCase) => grpcCheck(client, testCase.request), close: async () => client.close() };
});

defineConformanceSuite('gRPC CheckBatch', async (set) => {
  const server = await serverFor(set);
  const client: VerdictClient = grpcClient(server);
  let batched: Promise<Map<PolicyTestCase, Decision>> | null = null;
  return {
    version: server.version,
    decide: async (testCase) => {
      // Every case of the set goes out on the first call, batched by shared principal and context.
      batched ??= grpcCheckBatches(client, set.cases);
      const decision = (await batched).get(testCase);
      if (!decision) throw new Error(`no batch answered ${testCase.name}`);
      return decision;
    },
    close: async () => client.close(),
  };
});

defineConformanceSuite(
  'Envoy ext_authz',
  async (set) => {
    const server = await serverFor(set);
    const client: grpc.Client = envoyClient(server);
    return { version: server.version, decide: (testCase) => envoyCheck(client, server, testCase), close: async () => client.close() };
  },
  { cannotCarry: cannotCarryOverHttp },
);

defineConformanceSuite(
  'forward-auth',
  async (set) => {
    const server = await serverFor(set);
    return { version: server.version, decide: (testCase) => forwardAuthCheck(server, testCase), close: async () => undefined };
  },
  { cannotCarry: cannotCarryOverHttp },
);

defineConformanceSuite(
  'AuthZEN evaluation',
  async (set) => {
    const server = await serverFor(set);
    return { version: server.version, decide: (testCase) => authzenEvaluate(server, testCase), close: async () => undefined };
  },
  { cannotCarry: cannotCarryOverAuthZen },
);

defineConformanceSuite(
  'AuthZEN evaluations',
  async (set) => {
    const server = await serverFor(set);
    let answered: Promise<Map<PolicyTestCase, Decision>> | null = null;
    return {
      version: server.version,
      decide: async (testCase) => {
        // Every case the set can carry goes out in one call, on the first case asked.
        answered ??= authzenEvaluations(server, set.cases.filter((c) => cannotCarryOverAuthZen(c) === null));
        const decision = (await answered).get(testCase);
        if (!decision) throw new Error(`no evaluation answered ${testCase.name}`);
        return decision;
      },
      close: async () => undefined,
    };
  },
  { cannotCarry: cannotCarryOverAuthZen },
);

/** The cases a route cannot carry, with why: a resource attribute that is a nested map (the rule reads `labels.team`). */
const NOT_OVER_HTTP = [
  'globs-and-any-of: a nested attribute matches and an absent one satisfies exists false',
  'globs-and-any-of: exists false fails when the attribute is present',
  'globs-and-any-of: a nested attribute with another value',
  'globs-and-any-of: notAnyOf denies a value outside the list',
  'globs-and-any-of: notAnyOf does not deny a listed value',
];

describe('the HTTP paths', () => {
  it('carry every conformance case but a short list, each skipped with its reason', () => {
    const sets = conformanceSets();
    const skipped = sets.flatMap((set) => set.cases.filter((c) => cannotCarryOverHttp(c) !== null).map((c) => `${set.name}: ${c.name}`));
    expect(skipped).toEqual(NOT_OVER_HTTP);
    const total = sets.reduce((n, set) => n + set.cases.length, 0);
    expect(skipped.length).toBeLessThanOrEqual(total / 10);
  });
});
