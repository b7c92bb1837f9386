import type { DecisionRequest, Effect, Reason } from '../types.js';
import type { PolicyDiagnostic } from './diagnostic.js';
import type { PolicySet } from './policy-set.js';
import type { HttpTestRequest } from './schema.js';

/** One case of a policy test file, with fixtures resolved into a full request. */
export interface PolicyTestCase {
  readonly suite: string;
  readonly name: string;
  readonly file: string;
  readonly line: number;
  readonly request: DecisionRequest;
  readonly expect: { readonly effect: Effect; readonly reason: Reason | null; readonly rules: readonly string[] | null };
  /** For a case written as an HTTP request: that request (the routes made `request` of it). */
  readonly http?: HttpTestRequest;
}

export interface LoadedPolicies {
  readonly policySet: PolicySet;
  readonly tests: readonly PolicyTestCase[];
  readonly files: readonly string[];
}

export type LoadResult =
  | { readonly ok: true; readonly policies: LoadedPolicies }
  | { readonly ok: false; readonly diagnostics: readonly PolicyDiagnostic[] };
