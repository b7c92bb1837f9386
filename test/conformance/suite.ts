import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Decision, DecisionRequest } from '../../src/types.js';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { loadPolicies, type PolicyTestCase } from '../../src/policy/load.js';

/**
 * The decision conformance suite: policy directories whose `kind: tests` cases say
 * what every path to a decision must answer — the engine, gRPC Check and
 * CheckBatch, Envoy ext_authz, forward-auth. Each path supplies a decider; the
 * suite runs every case through it and compares effect, reason and deciding rules.
 * A path that cannot carry a case says why, and the suite skips that case by name
 * with the reason: nothing is left out silently.
 *
 * @example
 * defineConformanceSuite('gRPC Check', async (set) => {
 *   const server = await startServerFor(set);
 *   return { decide: (testCase) => server.check(testCase.request), version: server.version, close: () => server.stop() };
 * });
 */

/** One way of reaching a decision, whatever the transport. */
export interface Decider {
  /** The decision this path reaches for the case. */
  decide(testCase: PolicyTestCase): Promise<Decision>;
  /**
   * The policy version the decisions must carry, when this decider serves something
   * other than the set's directory as it is (a copy with a routes file added).
   */
  readonly version?: string;
  close(): Promise<void>;
}

/** Builds a decider serving the conformance set. */
export type MakeDecider = (set: ConformanceSet) => Promise<Decider>;

export interface ConformanceSet {
  readonly name: string;
  /** Absolute path of the policy directory. */
  readonly dir: string;
  readonly cases: PolicyTestCase[];
  /** The version loadPolicies computes for the directory. */
  readonly version: string;
}

export interface ConformanceOptions {
  /**
   * Whether to require decision.policyVersion to equal the version loadPolicies computes
   * for the set's directory (default true). Turn off for a decider that cannot report it.
   */
  readonly checkVersion?: boolean;
  /** Why this path cannot carry the case, or null when it can. Such cases are skipped, each by name with its reason. */
  readonly cannotCarry?: (testCase: PolicyTestCase) => string | null;
}

const REPO = resolve(import.meta.dirname, '../..');
/** The fixture sets written for the suite; each is a policy directory. */
export const SETS_DIR = join(import.meta.dirname, 'sets');
/** The shipped example set runs in the suite too. */
export const EXAMPLE_SET = { name: 'example-ml-models', dir: join(REPO, 'policies') };

/** Every conformance set, loaded and validated, in a stable order. Throws if one is invalid. */
export function conformanceSets(): ConformanceSet[] {
  const dirs = [
    ...readdirSync(SETS_DIR, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => ({ name: entry.name, dir: join(SETS_DIR, entry.name) }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    EXAMPLE_SET,
  ];
  return dirs.map(({ name, dir }) => {
    const result = loadPolicies(dir);
    if (!result.ok) {
      throw new Error(`conformance set ${name} (${dir}) is invalid:\n${result.diagnostics.map(formatDiagnostic).join('\n')}`);
    }
    return { name, dir, cases: [...result.policies.tests], version: result.policies.policySet.version };
  });
}

/** Registers a describe block that runs every conformance case through the decider. */
export function defineConformanceSuite(label: string, makeDecider: MakeDecider, options: ConformanceOptions = {}): void {
  const checkVersion = options.checkVersion ?? true;
  describe(`decision conformance: ${label}`, () => {
    for (const set of conformanceSets()) {
      describe(set.name, () => {
        let decider: Decider | undefined;
        beforeAll(async () => {
          decider = await makeDecider(set);
        });
        afterAll(async () => {
          await decider?.close();
        });

        for (const testCase of set.cases) {
          const title = `${testCase.name}  (${testCase.file}:${testCase.line})`;
          const reason = options.cannotCarry?.(testCase) ?? null;
          if (reason !== null) {
            it.skip(`${title}: not carried by ${label}, ${reason}`, () => undefined);
            continue;
          }
          it(title, async () => {
            if (!decider) throw new Error(`the ${label} decider for ${set.name} did not start`);
            const decision = await decider.decide(testCase);
            assertConformant(testCase, decision, checkVersion ? (decider.version ?? set.version) : null);
          });
        }
      });
    }
  });
}

/**
 * Compares one decision with what its case expects (effect, reason, deciding rules in
 * any order) and with the invariants of every decision. Throws an assertion error.
 * `version`, when given, is the policy version the decision must carry.
 */
export function assertConformant(testCase: PolicyTestCase, decision: Decision, version: string | null): void {
  const { expect: want } = testCase;
  expect(decision.effect, 'effect').toBe(want.effect);
  if (want.reason !== null) expect(decision.reason, 'reason').toBe(want.reason);
  if (want.rules !== null) expect([...decision.ruleIds].sort(), 'deciding rules').toEqual([...want.rules].sort());
  // Invariants every path must keep, whatever the case says.
  if (decision.effect === 'ALLOW') expect(decision.reason, 'an ALLOW is allowed by rule').toBe('ALLOWED_BY_RULE');
  if (decision.reason === 'DENIED_BY_DEFAULT') expect(decision.ruleIds, 'a default deny names no rule').toEqual([]);
  if (decision.reason === 'DENIED_BY_ERROR') {
    const erring = decision.errors.map((e) => e.ruleId);
    for (const id of decision.ruleIds) expect(erring, 'a rule that denied by error lists its error').toContain(id);
  }
  if (version !== null) expect(decision.policyVersion, 'policy version').toBe(version);
}
