import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { completeRequest } from '../engine/complete.js';
import { withoutNullMembers } from '../engine/null-members.js';
import { decideAsServed, isSchemaRefusal } from '../engine/schema-checked.js';
import { explain, type Explanation } from '../engine/explain.js';
import { formatClauses } from '../engine/clauses.js';
import { parseRequestJson } from '../engine/request.js';
import { MAX_DOCUMENT_DEPTH, nestingTooDeep } from '../policy/source.js';
import { RequestMeter } from '../decide/bounds.js';
import type { Decision, DecisionRequest } from '../types.js';
import { VerdictError, messageOf } from '../errors.js';
import { EXIT, parseFlags, type CommandIO } from './io.js';
import { loadValidPolicies } from './policies.js';

const HELP = `Usage: verdict check [--policies DIR] [--request JSON | --file FILE] [--explain] [--json]

Decides one request against the policies and prints the effect, the reason, the
deciding rules, any condition errors and the policy version. The request is JSON
(or YAML) from --request, from --file, or from standard input:

  {"principal": {"id": "dana", "roles": ["data_scientist"], "attributes": {"org": "acme"}},
   "action": "predict",
   "resource": {"type": "model", "id": "fraud-v3", "attributes": {"org": "acme"}},
   "context": {"attributes": {}}}

Options:
  --policies DIR   policy directory (default: policies)
  --request JSON   the request inline
  --file FILE      read the request from FILE ("-" for standard input)
  --explain        also show every rule considered and why it did or did not match
  --json           print the decision as JSON

The request is checked as the server checks it before deciding (the default
request limits, attribute names such as constructor and __proto__, numbers that
are not finite such as YAML's .nan): one it would refuse is reported, exit 4.

Exit codes: 0 decided (allow or deny), 2 usage error, 3 invalid policies, 4 bad request.
`;

export async function runCheck(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      help: { type: 'boolean', short: 'h' },
      policies: { type: 'string', short: 'p' },
      request: { type: 'string', short: 'r' },
      file: { type: 'string', short: 'f' },
      explain: { type: 'boolean', short: 'e' },
      json: { type: 'boolean' },
    },
    false,
  );
  if (values.help) {
    io.stdout(HELP);
    return EXIT.OK;
  }
  if (values.request !== undefined && values.file !== undefined) {
    io.stderr('verdict check: give the request with --request or --file, not both\n');
    return EXIT.USAGE;
  }
  let request: DecisionRequest;
  try {
    // An attribute given as null is absent, as the server reads it.
    const parsed = parseRequestJson(parseInput(await readRequestText(values.request, values.file, io)));
    // The checks the server makes of every request before deciding it (sizes, reserved names, finite numbers): what it refuses is refused here too.
    const refused = new RequestMeter().problem(parsed);
    if (refused !== null) throw new VerdictError('INPUT_INVALID', `the server refuses this request (DENIED_INVALID_REQUEST): ${refused}`);
    request = withoutNullMembers(parsed);
  } catch (error) {
    io.stderr(`verdict check: ${messageOf(error)}\n`);
    return error instanceof VerdictError && error.code === 'USAGE' ? EXIT.USAGE : EXIT.INPUT;
  }
  const policiesDir = values.policies ?? 'policies';
  const policies = loadValidPolicies(policiesDir, io, 'check');
  if (!policies) return EXIT.POLICY_INVALID;

  // Decided as the server decides it: the attribute schema first (refused under reject, violations shown under warn).
  const decision = decideAsServed(policies.policySet, request);
  if (values.explain) {
    const explained = explain(policies.policySet, request);
    // A refused request is never evaluated when served; what its rules would say is still shown, marked as such.
    const explanation = { ...explained, decision };
    if (values.json) io.stdout(`${JSON.stringify(explanation, null, 2)}\n`);
    else {
      const note = isSchemaRefusal(decision) ? '\nthe server refuses this request before any rule; the rules, had it fitted the schema:' : '';
      io.stdout(formatDecision(decision) + note + formatExplanation(explanation, policiesDir));
    }
    return EXIT.OK;
  }
  io.stdout(values.json ? `${JSON.stringify(decision, null, 2)}\n` : formatDecision(decision));
  return EXIT.OK;
}

async function readRequestText(inline: string | undefined, file: string | undefined, io: CommandIO): Promise<string> {
  if (inline !== undefined) return inline;
  if (file !== undefined && file !== '-') {
    try {
      return readFileSync(file, 'utf8');
    } catch (error) {
      throw new VerdictError('INPUT_UNREADABLE', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`);
    }
  }
  if (!io.readStdin) throw new VerdictError('USAGE', 'no request given: pass --request JSON, --file FILE, or pipe JSON to standard input');
  return io.readStdin();
}

/** The longest request text read: as long as a YAML policy file may be. */
const MAX_REQUEST_TEXT = 8 * 1024 * 1024;

function parseInput(text: string): unknown {
  if (text.trim() === '') throw new VerdictError('INPUT_INVALID', 'the request is empty: pass a JSON object with principal, action and resource');
  if (text.length > MAX_REQUEST_TEXT) throw new VerdictError('INPUT_INVALID', `the request is ${text.length} characters; at most ${MAX_REQUEST_TEXT} are read (a served request is at most 1 MiB)`);
  // Before the YAML parser, which keeps about half a gigabyte per megabyte of nested brackets (8 MB ran it out of memory).
  const tooDeep = nestingTooDeep(text);
  if (tooDeep !== null) throw new VerdictError('INPUT_INVALID', `the request nests deeper than ${MAX_DOCUMENT_DEPTH} levels (at character ${tooDeep + 1}); no request needs that many`);
  try {
    return parseYaml(text, { prettyErrors: false });
  } catch (error) {
    const first = messageOf(error).split('\n')[0];
    throw new VerdictError('INPUT_INVALID', `the request is not valid JSON or YAML: ${first}`);
  }
}

const REASON_TEXT: Record<Decision['reason'], string> = {
  ALLOWED_BY_RULE: 'allowed by rule',
  DENIED_BY_RULE: 'denied by rule',
  DENIED_BY_DEFAULT: 'denied by default: no rule allows it',
  DENIED_BY_RATE_LIMIT: 'denied by rate limit',
  DENIED_BY_ERROR: 'denied because a condition could not be evaluated',
  DENIED_INVALID_REQUEST: 'denied: invalid request',
  DENIED_UNAUTHENTICATED: 'denied: the credential was missing or not accepted',
  DENIED_BY_SUSPENSION: 'denied: the principal is suspended',
};

export function formatDecision(decision: Decision): string {
  const lines = [
    `${decision.effect}  ${REASON_TEXT[decision.reason]} (${decision.reason})`,
    `  rules:    ${decision.ruleIds.length ? decision.ruleIds.join(', ') : '(none)'}`,
  ];
  if (decision.errors.length === 0) lines.push('  errors:   (none)');
  else for (const e of decision.errors) lines.push(`  error:    ${e.ruleId}: ${e.message}`);
  for (const violation of decision.schemaViolations ?? []) lines.push(`  schema:   ${violation} (enforcement: warn)`);
  lines.push(`  version:  ${decision.policyVersion}`);
  return `${lines.join('\n')}\n`;
}

/** Rule locations are printed under `dir`, so they are paths from the working directory. */
export function formatExplanation(explanation: Explanation, dir = ''): string {
  const { considered, totalRules } = explanation;
  const lines = [`\nconsidered ${considered.length} of ${totalRules} rules (the others are for other resource types or actions):`];
  if (considered.length === 0) lines.push('  (none)');
  for (const rule of considered) {
    const mark = rule.outcome === 'matched' ? 'MATCH' : rule.outcome === 'error' ? 'ERROR' : 'skip ';
    lines.push(`  ${mark} ${rule.effect.toLowerCase().padEnd(5)} ${rule.ruleId}  (${join(dir, rule.file)}:${rule.line})`);
    lines.push(`        ${rule.detail}`);
    if (rule.clauses) for (const line of formatClauses(rule.clauses)) lines.push(line);
  }
  return `${lines.join('\n')}\n`;
}
