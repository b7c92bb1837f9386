import { VerdictError } from '../errors.js';
import { formatDiagnostic } from '../policy/diagnostic.js';
import { loadPolicies, type LoadedPolicies } from '../policy/load.js';
import type { CommandIO } from './io.js';

/** Loads policies for a command that needs them valid; prints the errors when they are not. */
export function loadValidPolicies(dir: string, io: CommandIO, command: string): LoadedPolicies | null {
  const result = loadPolicies(dir);
  if (result.ok) return result.policies;
  for (const d of result.diagnostics) io.stderr(`${dir}/${formatDiagnostic(d)}\n`);
  io.stderr(`verdict ${command}: ${dir} has ${result.diagnostics.length} error(s); fix them (see verdict validate ${dir})\n`);
  return null;
}

export function isPolicyDirMissing(error: unknown): boolean {
  return error instanceof VerdictError && error.code === 'POLICY_DIR_MISSING';
}
