import { loadPolicies } from '../policy/load.js';
import { absentAttributeWarnings } from '../policy/route-warnings.js';
import { directorySchemaProblems } from '../policy/directory-schema.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { printDiagnostics } from './policies.js';

const HELP = `Usage: verdict validate [DIR] [--json]

Checks every policy file under DIR (default: policies): its syntax, the schema of
its kind, and the cross-file checks (duplicate ids, unknown roles, conditions that
do not compile). Prints every error as file:line:col: message. Warns (without
failing) when a deny rule reads a resource or context attribute that a route it
applies to does not set or may leave out ({header.x?}): a gateway request without
it would skip the deny (attribute match) or be denied by error (condition).
Under an attribute schema with enforcement: warn, also warns of directory entries
whose attributes break it (under reject they are errors).

Exit codes: 0 valid, 1 errors found, 2 usage error, 3 directory missing.
`;

export async function runValidate(argv: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseFlags(argv, { help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } }, true);
  if (values.help) {
    io.stdout(HELP);
    return EXIT.OK;
  }
  if (positionals.length > 1) {
    io.stderr(`verdict validate: expected at most one directory, got ${positionals.length}\n`);
    return EXIT.USAGE;
  }
  // Without trailing slashes, so locations print as dir/file, not dir//file.
  const dir = positionals[0] ?? 'policies';
  const result = loadPolicies(dir);
  if (!result.ok) {
    if (values.json) io.stdout(`${JSON.stringify({ valid: false, errors: result.diagnostics })}\n`);
    else printDiagnostics(dir, result.diagnostics, io);
    io.stderr(`${result.diagnostics.length} error${result.diagnostics.length === 1 ? '' : 's'} in ${dir}\n`);
    return EXIT.FAILED;
  }
  const { policySet, files, tests } = result.policies;
  // Under enforcement: warn a directory entry breaking the schema loads (under reject it is an error): said here.
  const schemaWarnings = policySet.attributeSchemas?.enforcement === 'warn' ? directorySchemaProblems(policySet.directory, policySet.attributeSchemas) : [];
  const warnings = [...absentAttributeWarnings(policySet), ...schemaWarnings];
  if (values.json) {
    io.stdout(`${JSON.stringify({ valid: true, version: policySet.version, files: files.length, rules: policySet.rules.length, roles: policySet.roles.size, tests: tests.length, warnings })}\n`);
  } else {
    printDiagnostics(dir, warnings, io);
    io.stdout(`${dir}: valid — ${files.length} files, ${policySet.rules.length} rules, ${policySet.roles.size} roles, ${policySet.limits.length} limits, ${tests.length} test cases; version ${policySet.version}\n`);
  }
  return EXIT.OK;
}
