import { valueProblem, type AttributeSchemas, type PartSchema } from './attribute-schema.js';
import type { PolicyDiagnostic } from './diagnostic.js';
import { DIRECTORY_ENTRIES_PER_PAUSE, type Directory } from './directory.js';
import { runToEnd, type StageRun } from './pipeline.js';
import type { Attributes } from '../types.js';

/**
 * The attributes of directory entries that break the attribute schema, one problem per
 * attribute, located at the entry (`file:line:col`). The directory fills requests in
 * before the schema is checked, so such an entry makes every request naming it break
 * the schema: refused under `enforcement: reject` (the load reports these as errors),
 * flagged under `warn` (`verdict validate` prints them as warnings). Only the values an
 * entry gives are checked: a required attribute it leaves out may come from the request.
 */
export function directorySchemaProblems(directory: Directory, schemas: AttributeSchemas): PolicyDiagnostic[] {
  return runToEnd(checkDirectorySchema(directory, schemas));
}

/** directorySchemaProblems as a step of the directories stage: it pauses as that stage does. */
export function* checkDirectorySchema(directory: Directory, schemas: AttributeSchemas): StageRun<PolicyDiagnostic[]> {
  if (directory.empty || schemas.enforcement === 'none') return [];
  const problems: PolicyDiagnostic[] = [];
  const schema = (part: PartSchema | null, attributes: Attributes, where: { file: string; line: number; col: number }, what: string): void => {
    if (part === null) return;
    for (const key of Object.keys(attributes)) {
      const declared = part.get(key);
      const problem = declared === undefined ? null : valueProblem(declared, attributes[key]);
      if (problem === null) continue;
      const consequence = schemas.enforcement === 'reject' ? 'every request naming it is refused (enforcement: reject)' : 'every request naming it breaks the schema (enforcement: warn)';
      const prefix = schemas.enforcement === 'warn' ? 'warning: ' : '';
      problems.push({ file: where.file, line: where.line, col: where.col, path: `attributes.${key}`, message: `${prefix}${what}: attribute ${key} ${problem}, so ${consequence}; fix the entry or the schema` });
    }
  };
  let done = 0;
  for (const entry of directory.principals.values()) {
    if (++done % DIRECTORY_ENTRIES_PER_PAUSE === 0) yield;
    schema(schemas.principal, entry.attributes, entry, `principal "${entry.id}"`);
  }
  for (const [type, entries] of directory.resources) {
    const part = schemas.resources.get(type) ?? null;
    if (part === null) continue;
    for (const entry of entries.values()) {
      if (++done % DIRECTORY_ENTRIES_PER_PAUSE === 0) yield;
      schema(part, entry.attributes, entry, `resource ${type} "${entry.id}"`);
    }
  }
  return problems;
}
