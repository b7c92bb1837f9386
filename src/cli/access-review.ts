import { accessReview, diffReviews, type AccessGrant } from '../analysis/access-review.js';
import { filesFromDirectory, filesFromGit, loadCandidate } from '../analysis/candidate.js';
import { formatDiagnostic } from '../policy/diagnostic.js';
import type { PolicySet } from '../policy/policy-set.js';
import { VerdictError } from '../errors.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';

const HELP = `verdict access-review: who can do what on which resource, and by which rule or role grant

usage: verdict access-review [--policies DIR] [--resource TYPE:ID | --principal ID] [--action A]
                             [--format table|csv|json] [--rev GIT_REV]

Every principal of the policies' principals files, every resource of their resources
files, every action the allow rules and role grants name for the resource's type.
A grant that depends on a condition reading the request's context is listed as
conditional, with the condition.

  --policies DIR   the policy directory (default: policies)
  --resource T:ID  one resource only, e.g. model:fraud-v3
  --principal ID   one principal only
  --action A       one action only
  --format F       table (default), csv or json
  --rev GIT_REV    compare: the grants DIR gives now against DIR at GIT_REV
                   (change: added or removed); exit status 0 either way
`;

const FORMATS = ['table', 'csv', 'json'] as const;

function loadSet(files: ReturnType<typeof filesFromDirectory>, io: CommandIO): PolicySet {
  const result = loadCandidate(files);
  if (!result.ok) {
    for (const d of result.diagnostics) io.stderr(`${formatDiagnostic(d)}\n`);
    throw new VerdictError('POLICY_INVALID', `${files.label} has ${result.diagnostics.length} error(s); fix them (see verdict validate)`);
  }
  return result.policies.policySet;
}

const COLUMNS = ['resource', 'principal', 'action', 'access', 'rules', 'via', 'conditions'] as const;

function cells(grant: AccessGrant): string[] {
  return [`${grant.resourceType}:${grant.resourceId}`, grant.principal, grant.action, grant.access, grant.rules.join(' '), grant.via.join(' '), grant.conditions.join('; ')];
}

const csvCell = (value: string): string => (/[",\n\r]/.test(value) || /^[=+\-@]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);

function format(grants: readonly (AccessGrant & { change?: 'added' | 'removed' })[], as: (typeof FORMATS)[number], diff: boolean): string {
  const head = diff ? ['change', ...COLUMNS] : [...COLUMNS];
  const rows = grants.map((g) => (diff ? [g.change ?? '', ...cells(g)] : cells(g)));
  if (as === 'json') return `${JSON.stringify(grants, null, 2)}\n`;
  if (as === 'csv') return [head, ...rows].map((row) => row.map(csvCell).join(',')).join('\n') + '\n';
  if (rows.length === 0) return diff ? 'no change in access\n' : 'no access granted\n';
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (row: readonly string[]): string => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n';
}

export async function runAccessReview(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      help: { type: 'boolean', short: 'h' },
      policies: { type: 'string' },
      resource: { type: 'string' },
      principal: { type: 'string' },
      action: { type: 'string' },
      format: { type: 'string' },
      rev: { type: 'string' },
    },
    false,
  );
  if (values.help) {
    io.stdout(HELP);
    return EXIT.OK;
  }
  const as = (values.format ?? 'table') as (typeof FORMATS)[number];
  if (!FORMATS.includes(as)) throw new VerdictError('USAGE', `--format is one of ${FORMATS.join(', ')}; see --help`);
  if (values.resource !== undefined && values.principal !== undefined) throw new VerdictError('USAGE', 'give --resource or --principal, not both; see --help');
  let resource: { type: string; id: string } | undefined;
  if (values.resource !== undefined) {
    const colon = values.resource.indexOf(':');
    if (colon <= 0 || colon === values.resource.length - 1) throw new VerdictError('USAGE', `--resource is TYPE:ID (e.g. model:fraud-v3), not ${JSON.stringify(values.resource)}`);
    resource = { type: values.resource.slice(0, colon), id: values.resource.slice(colon + 1) };
  }
  const filter = { principal: values.principal, resource, action: values.action };
  const dir = (values.policies ?? 'policies').replace(/(.)\/+$/, '$1');
  const now = accessReview(loadSet(filesFromDirectory(dir), io), filter);
  if (values.rev === undefined) {
    io.stdout(format(now, as, false));
    return EXIT.OK;
  }
  const warnings: string[] = [];
  const before = accessReview(loadSet(filesFromGit(dir, values.rev, warnings), io), filter);
  for (const warning of warnings) io.stderr(`warning: ${warning}\n`);
  const { added, removed } = diffReviews(before, now);
  const changes = [...removed.map((g) => ({ ...g, change: 'removed' as const })), ...added.map((g) => ({ ...g, change: 'added' as const }))].sort(
    (a, b) => cells(a).join('\u0000').localeCompare(cells(b).join('\u0000')) || (a.change === 'removed' ? -1 : 1),
  );
  io.stdout(format(changes, as, true));
  return EXIT.OK;
}
