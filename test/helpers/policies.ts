import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import type { DecisionRequest } from '../../src/types.js';
import { formatDiagnostic } from '../../src/policy/diagnostic.js';
import { loadPolicies, type LoadedPolicies } from '../../src/policy/load.js';

/**
 * Helpers to build policy sets the way users do: files in a directory, loaded by
 * loadPolicies. A file's content is either text (written as is) or data, written as
 * YAML, or as JSON when the file name ends in `.json`.
 */
export type PolicyFiles = Record<string, string | object>;

const created: string[] = [];

/** A fresh directory under the OS temp dir (never inside a git work tree). */
export function makeTempDir(prefix = 'verdict-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Writes `files` (relative paths; sub-directories are created) into `dir`. */
export function writeFiles(dir: string, files: PolicyFiles): string {
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    mkdirSync(dirname(path), { recursive: true });
    const text = typeof content === 'string' ? content : name.endsWith('.json') ? JSON.stringify(content, null, 2) : stringify(content);
    writeFileSync(path, text);
  }
  return dir;
}

/** Writes the files into a new temp directory and returns its path. */
export function writePolicyDir(files: PolicyFiles): string {
  return writeFiles(makeTempDir(), files);
}

/** Loads a directory that must be valid; throws listing every diagnostic otherwise. */
export function loadValid(dir: string): LoadedPolicies {
  const result = loadPolicies(dir);
  if (!result.ok) {
    throw new Error(`expected ${dir} to be valid, got:\n${result.diagnostics.map(formatDiagnostic).join('\n')}`);
  }
  return result.policies;
}

/** Writes the files into a new temp directory and loads them; they must be valid. */
export function loadFiles(files: PolicyFiles): LoadedPolicies {
  return loadValid(writePolicyDir(files));
}

/** A `kind: rules` document. */
export function rulesDoc(rules: readonly object[]): object {
  return { kind: 'rules', rules };
}

/** A `kind: roles` document. */
export function rolesDoc(roles: readonly object[]): object {
  return { kind: 'roles', roles };
}

/** Removes every directory these helpers created. Call from afterAll. */
export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export interface RequestSpec {
  principal?: { id?: string; roles?: string[]; attributes?: Record<string, unknown> };
  action?: string;
  resource?: { type?: string; id?: string; attributes?: Record<string, unknown> };
  context?: Record<string, unknown>;
}

/** A complete decision request with defaults for every part not given. */
export function request(spec: RequestSpec = {}): DecisionRequest {
  return {
    principal: { id: spec.principal?.id ?? 'alice', roles: spec.principal?.roles ?? [], attributes: spec.principal?.attributes ?? {} },
    action: spec.action ?? 'read',
    resource: { type: spec.resource?.type ?? 'document', id: spec.resource?.id ?? 'doc-1', attributes: spec.resource?.attributes ?? {} },
    context: { attributes: spec.context ?? {} },
  } as DecisionRequest;
}
