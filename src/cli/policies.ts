import { join } from 'node:path';
import { formatDiagnostic, type PolicyDiagnostic } from '../policy/diagnostic.js';
import { loadPolicies, type LoadedPolicies } from '../policy/load.js';
import type { CommandIO } from './io.js';

/** Prints each diagnostic as `dir/file:line:col: message`, a path from the working directory. */
export function printDiagnostics(dir: string, diagnostics: readonly PolicyDiagnostic[], io: CommandIO): void {
  for (const d of diagnostics) io.stderr(`${formatDiagnostic({ ...d, file: join(dir, d.file) })}\n`);
}

/** Loads policies for a command that needs them valid; prints the errors when they are not. */
export function loadValidPolicies(dir: string, io: CommandIO, command: string): LoadedPolicies | null {
  const result = loadPolicies(dir);
  if (result.ok) return result.policies;
  printDiagnostics(dir, result.diagnostics, io);
  io.stderr(`verdict ${command}: ${dir} has ${result.diagnostics.length} error(s); fix them (see verdict validate ${dir})\n`);
  return null;
}
